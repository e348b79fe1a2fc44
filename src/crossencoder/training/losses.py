"""Training losses for cross-encoders.

A loss turns a batch of user examples into the pairs to score (``prepare``) and the model's logits for those
pairs into a scalar (``compute``). The :class:`~crossencoder.training.Trainer` does the tokenizing and the
forward pass in between, so a loss never touches the model; ``compute`` is a pure function of tensors, which
keeps every loss testable by hand.

=============================  =========================================  ======================================
loss                           examples                                   use it for
=============================  =========================================  ======================================
``BinaryCrossEntropyLoss``     ``(a, b, label in [0, 1])``                re-rankers (hard labels), STS (soft)
``CrossEntropyLoss``           ``(a, b, class id or name)``               NLI, paraphrase (2+ classes)
``MSELoss``                    ``(a, b, teacher score or logit list)``    distillation from a teacher
``MarginMSELoss``              ``(query, pos, neg, teacher margin)``      distillation of score differences
``MultipleNegativesRanking``   ``(query, pos, hard negs...)``             retrieval data, in-batch negatives
``ListNetLoss``                ``(query, [docs], [labels])``              graded relevance lists (listwise)
=============================  =========================================  ======================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from crossencoder.evaluation.evaluators import label_ids
from crossencoder.evaluation.samples import LabelledPair, RankingSample, to_labelled_pair, to_ranking_sample

if TYPE_CHECKING:
    from crossencoder import CrossEncoder

Pairs = list[tuple[str, str]]

logger = logging.getLogger(__name__)


class Loss:
    """Base class: ``check_model`` -> ``normalize`` each example once -> per batch ``prepare`` -> ``compute``."""

    name = "loss"

    def check_model(self, model: CrossEncoder) -> None:
        """Raise ValueError if the model's head does not fit this loss (called once by the trainer)."""
        if model.num_labels != 1:
            raise ValueError(f"{type(self).__name__} needs a 1-label model, this one has {model.num_labels} labels: "
                             "load it with CrossEncoder(path, num_labels=1).")

    def normalize(self, example: Any, index: int) -> Any:
        """Validate one training example and return it in the form ``prepare`` expects."""
        raise NotImplementedError

    def check_data(self, examples: Sequence[Any], batch_size: int) -> None:
        """Raise ValueError when the normalised ``examples``, in batches of ``batch_size``, can never give a
        gradient (called once by the trainer, after ``normalize``)."""

    def prepare(self, batch: Sequence[Any]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        """Return the pairs to score for a batch of normalised examples and the target tensors."""
        raise NotImplementedError

    def compute(self, logits: torch.Tensor, **targets: torch.Tensor) -> torch.Tensor:
        """The loss value from the logits ``[n_pairs, num_labels]`` of the prepared pairs."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Hyper-parameters of the loss, for the model card."""
        return {}


def _float_label(pair: LabelledPair, index: int) -> float:
    try:
        return float(pair.label)
    except (TypeError, ValueError):
        raise ValueError(f"data[{index}] needs a numeric label, got {pair.label!r}.") from None


def _finite(values: Sequence[float], index: int, what: str = "label") -> None:
    """Refuse NaN / infinite targets before training: they would make the first step's loss NaN."""
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"data[{index}] {what} {value} is not a finite number.")


def _ranking_sample(example: Any, index: int) -> RankingSample:
    sample = to_ranking_sample(example, index)
    _finite(sample.labels, index)
    return sample


def _check_setting(name: str, value: float | None, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}.")


class BinaryCrossEntropyLoss(Loss):
    """Sigmoid binary cross-entropy on the single logit; labels are 0/1 (hard) or any value in [0, 1] (soft).

    Soft labels turn a similarity score into a target probability, e.g. STSb's 0..5 divided by 5.

    Args:
        pos_weight: Weight of positive examples (e.g. ``n_negatives / n_positives`` for imbalanced data).

    Example:
        >>> Trainer(model, [("q", "relevant passage", 1), ("q", "other passage", 0)], loss=BinaryCrossEntropyLoss(),
        ...         args=TrainingArguments("runs/reranker")).train()
    """

    name = "BinaryCrossEntropyLoss"

    def __init__(self, pos_weight: float | None = None) -> None:
        _check_setting("pos_weight", pos_weight, pos_weight is None or 0 < pos_weight < math.inf, "a number > 0")
        self.pos_weight = pos_weight

    def normalize(self, example: Any, index: int) -> LabelledPair:
        pair = to_labelled_pair(example, index)
        label = _float_label(pair, index)
        if not 0.0 <= label <= 1.0:
            raise ValueError(f"data[{index}] label {label} is outside [0, 1]: scale scores first (e.g. STS / 5).")
        return LabelledPair(pair.text_a, pair.text_b, label)

    def prepare(self, batch: Sequence[LabelledPair]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        return [(x.text_a, x.text_b) for x in batch], {"labels": torch.tensor([x.label for x in batch])}

    def compute(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits), pos_weight=weight)

    def config(self) -> dict[str, Any]:
        return {"pos_weight": self.pos_weight}


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy over 2+ classes (NLI, paraphrase). Labels are class ids or names of ``id2label``.

    Args:
        label_smoothing: As in ``torch.nn.functional.cross_entropy``.

    Example:
        >>> model = CrossEncoder("nreimers/MiniLM-L6-H384-uncased", num_labels=3)
        >>> model.config.id2label = {0: "contradiction", 1: "entailment", 2: "neutral"}
        >>> Trainer(model, [("A man eats.", "Nobody eats.", "contradiction"), ...], loss=CrossEntropyLoss(),
        ...         args=TrainingArguments("runs/nli")).train()
    """

    name = "CrossEntropyLoss"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        _check_setting("label_smoothing", label_smoothing, 0 <= label_smoothing <= 1, "in [0, 1]")
        self.label_smoothing = label_smoothing
        self._model: CrossEncoder | None = None

    def check_model(self, model: CrossEncoder) -> None:
        if model.num_labels < 2:
            raise ValueError("CrossEntropyLoss needs a classifier (num_labels >= 2); for one score per pair use "
                             "BinaryCrossEntropyLoss.")
        self._model = model

    def normalize(self, example: Any, index: int) -> LabelledPair:
        pair = to_labelled_pair(example, index)
        if self._model is None:
            raise RuntimeError("CrossEntropyLoss.check_model(model) must run before normalize().")
        (label,) = label_ids([pair.label], self._model, start=index)
        return LabelledPair(pair.text_a, pair.text_b, label)

    def prepare(self, batch: Sequence[LabelledPair]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        return [(x.text_a, x.text_b) for x in batch], {"labels": torch.tensor([x.label for x in batch])}

    def compute(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels.to(logits.device), label_smoothing=self.label_smoothing)

    def config(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}


class MSELoss(Loss):
    """Mean squared error between the logits and target logits, e.g. a teacher cross-encoder's (distillation).

    Labels are one float per pair for 1-label models or a list of ``num_labels`` floats for classifiers.

    Example:
        >>> teacher_logits = teacher.predict(pairs, activation_fn=torch.nn.Identity())
        >>> Trainer(student, [(a, b, float(t)) for (a, b), t in zip(pairs, teacher_logits)], loss=MSELoss(),
        ...         args=TrainingArguments("runs/distilled")).train()
    """

    name = "MSELoss"

    def __init__(self) -> None:
        self._num_labels: int | None = None

    def check_model(self, model: CrossEncoder) -> None:
        self._num_labels = model.num_labels

    def normalize(self, example: Any, index: int) -> LabelledPair:
        pair = to_labelled_pair(example, index)
        target = pair.label if isinstance(pair.label, (list, tuple)) else [pair.label]
        try:
            values = tuple(float(v) for v in target)
        except (TypeError, ValueError):
            raise ValueError(f"data[{index}] needs a numeric target, got {pair.label!r}.") from None
        _finite(values, index, "target")
        if self._num_labels is not None and len(values) != self._num_labels:
            raise ValueError(f"data[{index}] has {len(values)} target values for a {self._num_labels}-label model.")
        return LabelledPair(pair.text_a, pair.text_b, values)

    def prepare(self, batch: Sequence[LabelledPair]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        return [(x.text_a, x.text_b) for x in batch], {"labels": torch.tensor([x.label for x in batch])}

    def compute(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.float(), labels.to(logits.device, torch.float32))


@dataclass(frozen=True)
class MarginExample:
    """A query with one positive, one negative and the teacher's score margin ``teacher(pos) - teacher(neg)``."""

    query: str
    positive: str
    negative: str
    margin: float


class MarginMSELoss(Loss):
    """MSE between the student's margin ``s(q, pos) - s(q, neg)`` and the teacher's (Hofstätter et al., 2020).

    Examples are ``(query, positive, negative, margin)`` tuples or dicts with those keys.

    Example:
        >>> Trainer(model, [("what is python", "Python is a language.", "A python is a snake.", 7.5)],
        ...         loss=MarginMSELoss(), args=TrainingArguments("runs/margin-mse")).train()
    """

    name = "MarginMSELoss"

    def normalize(self, example: Any, index: int) -> MarginExample:
        if isinstance(example, dict):
            try:
                values = [example[k] for k in ("query", "positive", "negative", "margin")]
            except KeyError as exc:
                raise ValueError(f"data[{index}] is missing {exc.args[0]!r}.") from None
        elif isinstance(example, Sequence) and not isinstance(example, str) and len(example) == 4:
            values = list(example)
        else:
            raise ValueError(f"data[{index}] must be (query, positive, negative, margin).")
        for j, text in enumerate(values[:3]):
            if not isinstance(text, str):
                raise TypeError(f"data[{index}][{j}] must be a str, got {type(text).__name__}.")
        try:
            margin = float(values[3])
        except (TypeError, ValueError):
            raise ValueError(f"data[{index}] margin must be a number, got {values[3]!r}.") from None
        _finite([margin], index, "margin")
        return MarginExample(values[0], values[1], values[2], margin)

    def prepare(self, batch: Sequence[MarginExample]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        pairs = [(x.query, x.positive) for x in batch] + [(x.query, x.negative) for x in batch]
        return pairs, {"margins": torch.tensor([x.margin for x in batch])}

    def compute(self, logits: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        n = margins.shape[0]
        scores = logits[:, 0].float()
        return F.mse_loss(scores[:n] - scores[n:], margins.to(scores))


def _grouped_log_softmax(logits: torch.Tensor, group_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a flat score vector into groups, pad to ``[groups, max_size]`` and log-softmax within each group.

    Returns the log-probabilities (padding positions are 0) and the boolean mask of real entries.
    """
    sizes = group_sizes.tolist()
    width = max(sizes)
    mask = torch.arange(width, device=logits.device)[None, :] < group_sizes.to(logits.device)[:, None]
    padded = torch.full((len(sizes), width), float("-inf"), device=logits.device, dtype=torch.float32)
    padded[mask] = logits.float()
    return torch.log_softmax(padded, dim=1).masked_fill(~mask, 0.0), mask


class MultipleNegativesRankingLoss(Loss):
    """Softmax cross-entropy of the positive against hard negatives and in-batch negatives (InfoNCE / LCE).

    For each query the candidates are its positive, its own hard negatives and the positives of the other
    queries in the batch (in-batch negatives). A cross-encoder scores every (query, candidate) pair, so a batch
    of ``B`` queries with ``H`` hard negatives costs ``B * (1 + H + in-batch)`` forward passes.

    Examples are ranking samples ``(query, positive, hard_negative_1, ...)`` (any number of hard negatives,
    including none) or dicts ``{"query", "positive", "negatives"}``; with ``(query, [docs], [labels])`` the
    best-labelled document is the positive and the 0-labelled ones are the hard negatives.

    Args:
        scale: Multiplies the logits before the softmax (an inverse temperature).
        num_in_batch_negatives: How many other queries' positives to add per query (None: all of them; 0: none).

    Example:
        >>> Trainer(model, [("what is python", "Python is a language.", "A python is a snake."), ...],
        ...         loss=MultipleNegativesRankingLoss(), args=TrainingArguments("runs/mnrl")).train()
    """

    name = "MultipleNegativesRankingLoss"

    def __init__(self, scale: float = 1.0, num_in_batch_negatives: int | None = None) -> None:
        _check_setting("scale", scale, 0 < scale < math.inf, "a number > 0")
        _check_setting("num_in_batch_negatives", num_in_batch_negatives,
                       num_in_batch_negatives is None or num_in_batch_negatives >= 0, "None or an integer >= 0")
        self.scale = scale
        self.num_in_batch_negatives = num_in_batch_negatives
        self._warned_alone = False

    def normalize(self, example: Any, index: int) -> RankingSample:
        sample = _ranking_sample(example, index)
        best = max(range(len(sample.labels)), key=lambda j: sample.labels[j])
        if sample.labels[best] <= 0:
            raise ValueError(f"data[{index}] has no positive document (a label > 0).")
        negatives = [d for d, y in zip(sample.documents, sample.labels) if y <= 0]
        return RankingSample(sample.query, [sample.documents[best], *negatives], [1.0] + [0.0] * len(negatives))

    def check_data(self, examples: Sequence[RankingSample], batch_size: int) -> None:
        """Refuse data and batching that give no query a negative: its softmax over the positive alone is 1, so
        the loss is 0 at every step and nothing trains.

        Raises:
            ValueError: no example has a hard negative, and no batch can hold in-batch negatives (``batch_size`` 1,
                ``num_in_batch_negatives=0`` or a single distinct positive).
        """
        if any(len(x.documents) > 1 for x in examples):
            return
        in_batch = batch_size > 1 and self.num_in_batch_negatives != 0 and len(
            {x.documents[0] for x in examples}) > 1
        if not in_batch:
            raise ValueError(
                "MultipleNegativesRankingLoss has no negative for any query: the examples have no hard negatives and "
                f"there are no in-batch negatives (batch_size {batch_size}, num_in_batch_negatives "
                f"{self.num_in_batch_negatives}, {len({x.documents[0] for x in examples})} distinct positive(s)), so "
                "the loss is 0 and nothing trains. Use batch_size >= 2, add hard negatives (mine_hard_negatives) or "
                "use a pointwise loss.")

    def prepare(self, batch: Sequence[RankingSample]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        pairs: Pairs = []
        sizes: list[int] = []
        for i, sample in enumerate(batch):
            others = [batch[j].documents[0] for j in range(len(batch)) if j != i]
            # Another query's positive may be the same text as this one's: it is not a negative then.
            others = [d for d in others if d != sample.documents[0]]
            if self.num_in_batch_negatives is not None:
                others = others[: self.num_in_batch_negatives]
            candidates = sample.documents + others
            pairs.extend((sample.query, d) for d in candidates)
            sizes.append(len(candidates))
        if not self._warned_alone and min(sizes) == 1:
            self._warned_alone = True
            logger.warning("A batch held a query with no negative (no hard negatives, and no other positive in its "
                           "batch, e.g. the short last batch of an epoch): it adds 0 to the loss and dilutes the "
                           "batch's gradient. Add hard negatives or use a batch size that leaves no batch of 1 "
                           "(shown once).")
        return pairs, {"group_sizes": torch.tensor(sizes)}

    def compute(self, logits: torch.Tensor, group_sizes: torch.Tensor) -> torch.Tensor:
        log_probs, _ = _grouped_log_softmax(logits[:, 0] * self.scale, group_sizes)
        return -log_probs[:, 0].mean()  # the positive is the first candidate of every group

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "num_in_batch_negatives": self.num_in_batch_negatives}


class ListNetLoss(Loss):
    """Listwise ListNet loss (Cao et al., 2007): cross-entropy between softmax(labels) and softmax(scores).

    Each example is one query's candidate list with graded labels; lists may differ in length.

    Args:
        label_temperature: Divides the labels before their softmax (smaller: a sharper target distribution).

    Example:
        >>> Trainer(model, [("what is python", ["Python is a language.", "A python is a snake."], [2, 0])],
        ...         loss=ListNetLoss(), args=TrainingArguments("runs/listnet")).train()
    """

    name = "ListNetLoss"

    def __init__(self, label_temperature: float = 1.0) -> None:
        _check_setting("label_temperature", label_temperature, 0 < label_temperature < math.inf, "a number > 0")
        self.label_temperature = label_temperature

    def normalize(self, example: Any, index: int) -> RankingSample:
        sample = _ranking_sample(example, index)
        if len(sample.documents) < 2:
            raise ValueError(f"data[{index}] needs at least 2 documents for a listwise loss.")
        return sample

    def prepare(self, batch: Sequence[RankingSample]) -> tuple[Pairs, dict[str, torch.Tensor]]:
        pairs = [(s.query, d) for s in batch for d in s.documents]
        labels = torch.tensor([y for s in batch for y in s.labels])
        return pairs, {"labels": labels, "group_sizes": torch.tensor([len(s.documents) for s in batch])}

    def compute(self, logits: torch.Tensor, labels: torch.Tensor, group_sizes: torch.Tensor) -> torch.Tensor:
        log_probs, mask = _grouped_log_softmax(logits[:, 0], group_sizes)
        target_logp, _ = _grouped_log_softmax(labels.to(logits.device, torch.float32) / self.label_temperature,
                                              group_sizes)
        target = target_logp.exp().masked_fill(~mask, 0.0)
        return -(target * log_probs).sum(dim=1).mean()

    def config(self) -> dict[str, Any]:
        return {"label_temperature": self.label_temperature}


LOSSES: dict[str, type[Loss]] = {
    "bce": BinaryCrossEntropyLoss,
    "binary_cross_entropy": BinaryCrossEntropyLoss,
    "ce": CrossEntropyLoss,
    "cross_entropy": CrossEntropyLoss,
    "mse": MSELoss,
    "margin_mse": MarginMSELoss,
    "mnrl": MultipleNegativesRankingLoss,
    "multiple_negatives_ranking": MultipleNegativesRankingLoss,
    "listnet": ListNetLoss,
}


def get_loss(loss: str | Loss) -> Loss:
    """Return ``loss`` itself, or a default instance for a short name (``"bce"``, ``"ce"``, ``"mse"``,
    ``"margin_mse"``, ``"mnrl"``, ``"listnet"``).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(loss, Loss):
        return loss
    key = str(loss).lower().replace("-", "_")
    if key not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}: use one of {', '.join(sorted(set(LOSSES)))}.")
    return LOSSES[key]()
