"""Metric functions over plain arrays: correlation (scipy), classification (scikit-learn), ranking (ranx), ECE.

They are thin wrappers so every evaluator, benchmark and CLI command reports the same numbers under the same
names. Only the expected calibration error is computed here (neither scipy nor scikit-learn provides it).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from crossencoder.errors import require_extra


def correlation_metrics(predictions: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation between predicted and gold scores (scipy).

    Args:
        predictions: Model scores, one per pair.
        gold: Gold similarity scores, same length.

    Returns:
        ``{"pearson": float, "spearman": float}``.

    Raises:
        ValueError: the inputs differ in length or hold fewer than 2 values.

    Example:
        >>> correlation_metrics([0.1, 0.5, 0.9], [0.0, 2.5, 5.0])
        {'pearson': 0.99..., 'spearman': 1.0}
    """
    require_extra("scipy", feature="Correlation metrics")
    from scipy.stats import pearsonr, spearmanr

    pred = np.asarray(predictions, dtype=np.float64).ravel()
    true = np.asarray(gold, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"Got {pred.size} predictions for {true.size} gold scores.")
    if pred.size < 2:
        raise ValueError("Correlation needs at least 2 pairs.")
    with warnings.catch_warnings():
        # A constant input gives NaN with a warning; NaN in the result says the same thing.
        warnings.simplefilter("ignore")
        return {"pearson": float(pearsonr(pred, true)[0]), "spearman": float(spearmanr(pred, true)[0])}


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], scores: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Accuracy and macro-F1; for binary tasks also F1 of class 1 and, given scores, average precision (sklearn).

    Args:
        y_true: Gold class ids.
        y_pred: Predicted class ids.
        scores: For binary tasks, the score of class 1 for each pair (probability or logit); enables
            ``average_precision``.
        num_classes: Classes of the task (a model's, so the metric names do not depend on what it predicted);
            None: binary when every gold and predicted id is 0 or 1.

    Returns:
        ``{"accuracy", "macro_f1"[, "f1", "average_precision"]}``.

    Raises:
        ValueError: the inputs differ in length or are empty, or a score is NaN or infinite (the message names the
            first, e.g. ``scores[3]``).

    Example:
        >>> classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], scores=[0.1, 0.9, 0.4, 0.2])
        {'accuracy': 0.75, 'macro_f1': 0.733..., 'f1': 0.666..., 'average_precision': 1.0}
    """
    require_extra("sklearn", feature="Classification metrics")
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score

    true = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"Got {pred.size} predictions for {true.size} gold labels.")
    if true.size == 0:
        raise ValueError("Classification metrics need at least one pair.")
    if scores is not None:
        score_array = np.asarray(scores, dtype=np.float64).ravel()
        if score_array.shape != true.shape:
            raise ValueError(f"Got {score_array.size} scores for {true.size} gold labels; pass one score (of class 1) "
                             "per pair.")
        # scikit-learn refuses these without saying where; a model that overflowed (float16) produces them.
        bad = np.flatnonzero(~np.isfinite(score_array))
        if bad.size:
            raise ValueError(f"scores[{bad[0]}] is {score_array[bad[0]]}, not a finite number ({bad.size} of "
                             f"{score_array.size} scores are NaN or infinite): average precision needs finite scores.")
    out = {
        "accuracy": float(accuracy_score(true, pred)),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
    }
    if num_classes is None:
        binary = set(np.unique(true)) <= {0, 1} and set(np.unique(pred)) <= {0, 1}
    else:
        binary = num_classes == 2
    names = classification_metric_names(true, binary=binary, scored=scores is not None)
    if "f1" in names:
        out["f1"] = float(f1_score(true, pred, pos_label=1, average="binary", zero_division=0))
    if "average_precision" in names:
        out["average_precision"] = float(average_precision_score(true, score_array))
    return out


def classification_metric_names(y_true: Sequence[int], binary: bool, scored: bool) -> list[str]:
    """The keys :func:`classification_metrics` returns, without computing them.

    Args:
        y_true: Gold class ids.
        binary: Whether the task has two classes (0 and 1).
        scored: Whether scores of class 1 are given.

    Returns:
        ``accuracy`` and ``macro_f1``; for a binary task also ``f1``, and ``average_precision`` when scored and the
        gold labels hold both classes (it is undefined over one).
    """
    names = ["accuracy", "macro_f1"]
    if binary:
        names.append("f1")
        if scored and len(np.unique(np.asarray(y_true))) == 2:
            names.append("average_precision")
    return names


def ranking_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k: int = 10,
    recall_at: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """MRR@k, NDCG@k, MAP and Recall@k of a run against relevance judgments (ranx; averaged over queries).

    Args:
        qrels: ``{query_id: {doc_id: relevance}}`` with integer relevance (> 0 is relevant; graded NDCG gains).
        run: ``{query_id: {doc_id: score}}``, the scores of the candidates of each query.
        k: Cut-off of MRR and NDCG.
        recall_at: Cut-offs of Recall.

    Returns:
        ``{"mrr@10", "ndcg@10", "map", "recall@1", "recall@5", "recall@10"}`` (names follow ``k``/``recall_at``).
        Queries without any relevant document are left out (they have no defined MRR/NDCG). Documents with equal
        scores are ranked lowest grade first (the pessimistic order), so a scorer that gives every candidate the same
        score is not credited with the order of its input; a NaN score ranks last. To evaluate a ranking that
        breaks its own ties, pass scores that decrease along it.

    Raises:
        ValueError: no query has a relevant document, a relevance is not an integer, or a cut-off is not a positive
            integer.

    Example:
        >>> ranking_metrics({"q1": {"d1": 1}}, {"q1": {"d1": 0.2, "d2": 0.9}})["mrr@10"]
        0.5
    """
    check_cutoffs(k, recall_at)
    require_extra("ranx", feature="Ranking metrics")
    from ranx import Qrels, Run, evaluate

    for q, docs in qrels.items():
        for d, r in docs.items():
            if not float(r).is_integer():
                # Truncated, 0.5 would be a judged document of grade 0: its query would count as a miss.
                raise ValueError(f"query {q!r}, document {d!r}: relevance {r!r} is not an integer grade.")
    judged = {q: {d: int(r) for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    if not judged:
        raise ValueError("Ranking metrics need at least one query with a relevant document.")
    # ranx rejects queries that are missing from the run; an empty candidate list scores 0 on every metric.
    scored = {q: _strict_scores(run.get(q, {}), judged[q]) or {"__none__": 0.0} for q in judged}
    names = [f"mrr@{k}", f"ndcg@{k}", "map"] + [f"recall@{c}" for c in recall_at]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from inside ranx
        values = evaluate(Qrels(judged), Run(scored), names, make_comparable=True)
    return {name: float(values[name]) for name in names}


def check_cutoffs(k: int, recall_at: Sequence[int], names: tuple[str, str] = ("k", "recall_at")) -> None:
    """Refuse a ranking cut-off that is not a positive integer (ranx reads 0 as "no cut-off", so MRR@0 would be the
    full-list MRR and Recall@0 the full-list recall, and fails on a negative one with a bare assertion).

    Args:
        k: Cut-off of MRR and NDCG.
        recall_at: Cut-offs of Recall.
        names: What the message calls ``k`` and ``recall_at`` (a caller's own argument names).

    Raises:
        ValueError: ``k`` or an item of ``recall_at`` is not a positive integer.
    """
    def bad(value: object) -> bool:
        return isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1

    if bad(k):
        raise ValueError(f"{names[0]} must be a positive integer, got {k!r}.")
    for cutoff in recall_at:
        if bad(cutoff):
            raise ValueError(f"{names[1]} must hold positive integers, got {cutoff!r}.")


def _strict_scores(scores: Mapping[str, float], relevance: Mapping[str, int]) -> dict[str, float]:
    """Scores without ties, lowest grade first among equal scores. ranx orders ties as its sort leaves them (input
    order in short lists), which put the positive that ``(query, positive, negatives...)`` lists first on top of a
    constant scorer's ranking."""
    def key(doc: str) -> tuple[float, int]:
        score = float(scores[doc])
        return (math.inf if math.isnan(score) else -score, relevance.get(doc, 0))

    order = sorted(scores, key=key)
    return {doc: float(len(order) - rank) for rank, doc in enumerate(order)}


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[int], n_bins: int = 15) -> float:
    """Expected calibration error of binary probabilities: the bin-size-weighted gap between confidence and accuracy.

    Predictions are grouped into ``n_bins`` equal-width bins of the predicted probability of class 1; ECE is
    ``sum_b |B|/n * |mean(label in B) - mean(prob in B)|`` (Naeini et al., 2015; the reliability-diagram form).

    Args:
        probabilities: Predicted probability that each pair is positive, in [0, 1].
        labels: Gold 0/1 labels.
        n_bins: Number of equal-width bins.

    Returns:
        ECE in [0, 1]; 0 is perfectly calibrated.

    Example:
        >>> expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0], n_bins=10)
        0.25
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    probs = np.asarray(probabilities, dtype=np.float64).ravel()
    true = np.asarray(labels, dtype=np.float64).ravel()
    if probs.shape != true.shape or probs.size == 0:
        raise ValueError(f"Need as many labels as probabilities (got {true.size} and {probs.size}, at least 1).")
    if np.any((probs < 0) | (probs > 1)) or np.any(np.isnan(probs)):
        raise ValueError("Probabilities must lie in [0, 1]; pass sigmoid(logit), not raw logits.")
    # Bin i holds (i/n, (i+1)/n]; 0 goes to the first bin.
    bins = np.clip(np.ceil(probs * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(true[mask].mean() - probs[mask].mean())
    return float(ece)


def format_metrics(metrics: Mapping[str, float], title: str | None = None) -> str:
    """Render metrics as a two-column text table (used by the CLI and the benchmarks)."""
    width = max([len(name) for name in metrics] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append(f"{'-' * width}  ------")
    for name, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else str(value)
        lines.append(f"{name:<{width}}  {shown}")
    return "\n".join(lines)
