"""Evaluators: score a held-out set with a model and return a dict of metrics.

Each evaluator is a callable ``evaluator(model) -> dict[str, float]`` with a ``primary_metric`` (what the trainer
keeps the best checkpoint by unless told otherwise) and a ``metric_names(model)`` method that says, without scoring,
which keys the call returns for that model and refuses a model it cannot evaluate (the trainer calls it before the
first step). Build one from the same tuples/dicts the trainer takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crossencoder.evaluation.metrics import (
    check_cutoffs,
    classification_metric_names,
    classification_metrics,
    correlation_metrics,
    ranking_metrics,
)
from crossencoder.evaluation.samples import ranking_samples, to_labelled_pair

if TYPE_CHECKING:
    from crossencoder import CrossEncoder


def _logits(model: CrossEncoder, pairs: list[tuple[str, str]], batch_size: int, show_progress_bar: bool | None,
            symmetric: bool = False):
    """Raw logits ``[n, num_labels]`` (no activation), so decisions do not depend on the model's activation."""
    out = model.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress_bar,
                        activation_fn=torch.nn.Identity(), convert_to_numpy=True, symmetric=symmetric)
    return np.asarray(out, dtype=np.float64).reshape(len(pairs), model.num_labels)


class CorrelationEvaluator:
    """Pearson / Spearman correlation between a 1-label model's scores and gold similarity scores (e.g. STSb).

    Args:
        data: ``(text_a, text_b, score)`` tuples or dicts (see :mod:`crossencoder.evaluation.samples`).
        name: Shown in logs and model cards, e.g. ``"sts-dev"``.
        batch_size: Pairs per batch when scoring.
        show_progress_bar: As in ``CrossEncoder.predict``.
        symmetric: Score each pair in both orders and average (``CrossEncoder.predict(symmetric=True)``).

    Example:
        >>> evaluator = CorrelationEvaluator([("A man eats.", "A man is eating.", 4.8), ...], name="sts-dev")
        >>> evaluator(model)
        {'pearson': 0.89, 'spearman': 0.88}
    """

    primary_metric = "spearman"

    def __init__(self, data: Sequence[Any], name: str = "", batch_size: int = 32,
                 show_progress_bar: bool | None = None, symmetric: bool = False) -> None:
        examples = [to_labelled_pair(x, i) for i, x in enumerate(data)]
        if len(examples) < 2:
            raise ValueError("CorrelationEvaluator needs at least 2 pairs.")
        try:
            self.scores = [float(x.label) for x in examples]
        except (TypeError, ValueError):
            raise ValueError("CorrelationEvaluator needs numeric gold scores.") from None
        self.pairs = [(x.text_a, x.text_b) for x in examples]
        self.name, self.batch_size, self.show_progress_bar = name, batch_size, show_progress_bar
        self.symmetric = symmetric

    def metric_names(self, model: CrossEncoder) -> list[str]:
        """The keys ``self(model)`` returns, without scoring.

        Raises:
            ValueError: ``model`` has more than one label.
        """
        if model.num_labels != 1:
            raise ValueError(f"CorrelationEvaluator needs a 1-label model; this one has {model.num_labels} labels.")
        return ["pearson", "spearman"]

    def __call__(self, model: CrossEncoder) -> dict[str, float]:
        self.metric_names(model)
        logits = _logits(model, self.pairs, self.batch_size, self.show_progress_bar, self.symmetric)[:, 0]
        return correlation_metrics(logits, self.scores)


class ClassificationEvaluator:
    """Accuracy and macro-F1 of a pair classifier; for binary tasks also F1 and average precision.

    A 1-label model is read as a binary classifier (positive when its logit is > 0, i.e. sigmoid > 0.5); a
    multi-label model predicts the arg-max class.

    Args:
        data: ``(text_a, text_b, label)`` tuples or dicts; labels are class ids or names from the model's
            ``id2label`` (matched case-insensitively).
        name: Shown in logs and model cards.
        batch_size: Pairs per batch when scoring.
        show_progress_bar: As in ``CrossEncoder.predict``.
        primary_metric: The metric the trainer selects checkpoints by (``"accuracy"``, ``"macro_f1"``, ``"f1"``...).
        symmetric: Score each pair in both orders and average, for order-free tasks such as paraphrase (not NLI).

    Example:
        >>> ClassificationEvaluator([("A man eats.", "Nobody eats.", "contradiction"), ...])(nli_model)
        {'accuracy': 0.86, 'macro_f1': 0.85}
    """

    def __init__(self, data: Sequence[Any], name: str = "", batch_size: int = 32,
                 show_progress_bar: bool | None = None, primary_metric: str = "accuracy",
                 symmetric: bool = False) -> None:
        examples = [to_labelled_pair(x, i) for i, x in enumerate(data)]
        if not examples:
            raise ValueError("ClassificationEvaluator needs at least one pair.")
        self.pairs = [(x.text_a, x.text_b) for x in examples]
        self.labels = [x.label for x in examples]
        self.name, self.batch_size, self.show_progress_bar = name, batch_size, show_progress_bar
        self.primary_metric, self.symmetric = primary_metric, symmetric

    def metric_names(self, model: CrossEncoder) -> list[str]:
        """The keys ``self(model)`` returns, without scoring: ``accuracy`` and ``macro_f1``; for a binary model
        (1 or 2 labels) also ``f1``, and ``average_precision`` when the gold labels hold both classes.

        Raises:
            ValueError: a label that is not one of ``model``'s classes (the message names ``data[i]``).
        """
        # As __call__ does: 1- and 2-label models are binary tasks, scored.
        binary = model.num_labels <= 2
        return classification_metric_names(label_ids(self.labels, model), binary=binary, scored=binary)

    def __call__(self, model: CrossEncoder) -> dict[str, float]:
        y_true = label_ids(self.labels, model)
        logits = _logits(model, self.pairs, self.batch_size, self.show_progress_bar, self.symmetric)
        if model.num_labels == 1:
            return classification_metrics(y_true, (logits[:, 0] > 0).astype(int), scores=logits[:, 0], num_classes=2)
        binary_scores = logits[:, 1] - logits[:, 0] if model.num_labels == 2 else None
        return classification_metrics(y_true, logits.argmax(axis=1), scores=binary_scores,
                                      num_classes=model.num_labels)


def label_ids(labels: Sequence[Any], model: CrossEncoder, start: int = 0) -> list[int]:
    """Map class names (via the model's ``label2id``, case-insensitive) or integral labels to class ids.

    Args:
        labels: Class names or ids.
        model: The classifier whose ``id2label`` names the classes.
        start: Position of ``labels[0]`` in the user's data, for the ``data[i]`` of error messages.

    Raises:
        ValueError: a name the model does not know, or an id outside ``range(num_labels)`` (2 classes for 1 label).
    """
    names = {str(v).lower(): int(k) for k, v in model.id2label.items()}
    n_classes = max(model.num_labels, 2)
    out: list[int] = []
    for i, label in enumerate(labels, start=start):
        if isinstance(label, str):
            key = label.strip().lower()
            if key in names:
                out.append(names[key])
                continue
            if not key.lstrip("-").isdigit():
                raise ValueError(f"data[{i}]: label {label!r} is not one of the model's labels: "
                                 f"{', '.join(sorted(names))}.")
            label = int(key)
        if isinstance(label, float) and not float(label).is_integer():
            raise ValueError(f"data[{i}]: label {label!r} is not a class id (scores need a correlation evaluation).")
        if not 0 <= int(label) < n_classes:
            raise ValueError(f"data[{i}]: label {label!r} is outside 0..{n_classes - 1}.")
        out.append(int(label))
    return out


class RerankingEvaluator:
    """MRR@k, NDCG@k, MAP and Recall@k of re-ranking each query's candidate list (ranx).

    Labels are graded relevance: any label > 0 is relevant (MRR, MAP, Recall), and NDCG's gains keep the labels'
    order. Integer labels (0, 1, 2...) are the gains themselves; when some label is fractional (soft labels, or
    BEIR grades written as grade / max_grade by ``crossencoder mine --group-size``), the distinct positive labels of
    the whole data set become gains 1, 2, 3... in increasing order, so 0.5 and 1.0 are gains 1 and 2.

    Args:
        data: Ranking samples: ``(query, positive, negative_1, ...)``, ``(query, [documents], [labels])`` or dicts
            (see :mod:`crossencoder.evaluation.samples`), or labelled pairs ``(query, document, label)``, grouped by
            query; labels <= 0 are not relevant.
        at_k: Cut-off of MRR and NDCG.
        recall_at: Cut-offs of Recall.
        name: Shown in logs and model cards.
        batch_size: Pairs per batch when scoring.
        show_progress_bar: As in ``CrossEncoder.predict``.

    Raises:
        ValueError: no sample has a relevant document, or ``at_k`` / ``recall_at`` is not a positive integer.

    Example:
        >>> RerankingEvaluator([("what is python", "Python is a language.", "A python is a snake.")])(model)
        {'mrr@10': 1.0, 'ndcg@10': 1.0, 'map': 1.0, 'recall@1': 1.0, 'recall@5': 1.0, 'recall@10': 1.0}
    """

    def __init__(self, data: Sequence[Any], at_k: int = 10, recall_at: Sequence[int] = (1, 5, 10), name: str = "",
                 batch_size: int = 32, show_progress_bar: bool | None = None) -> None:
        # Checked here, not at the first evaluation (mid-training, after scoring every pair).
        check_cutoffs(at_k, recall_at, names=("at_k", "recall_at"))
        self.samples = ranking_samples(data)
        if not any(max(s.labels) > 0 for s in self.samples):
            raise ValueError("RerankingEvaluator needs at least one sample with a relevant document (a label > 0).")
        self.gains = _relevance_gains([s.labels for s in self.samples])
        self.at_k, self.recall_at = at_k, tuple(recall_at)
        self.name, self.batch_size, self.show_progress_bar = name, batch_size, show_progress_bar
        self.primary_metric = f"ndcg@{at_k}"

    def metric_names(self, model: CrossEncoder) -> list[str]:
        """The keys ``self(model)`` returns, without scoring, e.g. ``mrr@10, ndcg@10, map, recall@1, recall@5``
        (one ``recall@k`` per distinct cut-off).

        Raises:
            ValueError: ``model`` has more than one label.
        """
        if model.num_labels != 1:
            raise ValueError(f"RerankingEvaluator needs a 1-label model; this one has {model.num_labels} labels.")
        names = [f"mrr@{self.at_k}", f"ndcg@{self.at_k}", "map", *(f"recall@{c}" for c in self.recall_at)]
        return list(dict.fromkeys(names))

    def __call__(self, model: CrossEncoder) -> dict[str, float]:
        self.metric_names(model)
        pairs = [(s.query, d) for s in self.samples for d in s.documents]
        scores = _logits(model, pairs, self.batch_size, self.show_progress_bar)[:, 0]
        qrels: dict[str, dict[str, int]] = {}
        run: dict[str, dict[str, float]] = {}
        start = 0
        for i, sample in enumerate(self.samples):
            n = len(sample.documents)
            qrels[f"q{i}"] = {f"d{j}": gain for j, gain in enumerate(self.gains[i])}
            run[f"q{i}"] = {f"d{j}": float(s) for j, s in enumerate(scores[start:start + n])}
            start += n
        return ranking_metrics(qrels, run, k=self.at_k, recall_at=self.recall_at)


def _relevance_gains(labels: Sequence[Sequence[float]]) -> list[list[int]]:
    """Integer relevance grades for ranking metrics, keeping every label > 0 relevant and the labels' order.

    Args:
        labels: Each query's document labels.

    Returns:
        The same nesting of grades: labels <= 0 become 0; integer labels stay as they are when all labels are
        integers; otherwise the distinct positive labels (over all queries) map to 1, 2, 3... in increasing order.

    Example:
        >>> _relevance_gains([[1.0, 0.5, 0.0], [0.5]])
        [[2, 1, 0], [1]]
    """
    flat = [float(y) for row in labels for y in row]
    if all(y.is_integer() for y in flat):
        grades = {y: max(int(y), 0) for y in flat}
    else:
        # int(round(y)) would turn 0.5 (BEIR grade 1 of 2) into 0, i.e. not relevant.
        grades = {y: rank for rank, y in enumerate(sorted({y for y in flat if y > 0}), start=1)}
    return [[grades.get(float(y), 0) for y in row] for row in labels]
