"""Normalise user data (tuples or dicts) into labelled pairs and ranking samples; errors name the bad index.

Accepted shapes:

- labelled pair: ``(text_a, text_b, label)`` or a dict with one of the first-text keys (``text_a``, ``query``,
  ``sentence1``, ``premise``, ``anchor``), one of the second-text keys (``text_b``, ``passage``, ``document``,
  ``sentence2``, ``hypothesis``, ``text``) and ``label`` or ``score``.
- ranking sample: ``(query, positive, negative_1, ...)``; ``(query, [documents], [labels])``; a dict
  ``{"query", "positive" | "positives", "negative" | "negatives"}`` or ``{"query", "documents", "labels"}``;
  or, for :func:`ranking_samples`, labelled pairs ``(query, document, label)`` (grouped by query).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FIRST_KEYS = ("text_a", "query", "sentence1", "premise", "anchor")
SECOND_KEYS = ("text_b", "passage", "document", "sentence2", "hypothesis", "text")
LABEL_KEYS = ("label", "score")


@dataclass(frozen=True)
class LabelledPair:
    """A pair of texts with a label: a float score, a class id or a class name."""

    text_a: str
    text_b: str
    label: Any


@dataclass(frozen=True)
class RankingSample:
    """A query with candidate documents and their graded relevance labels (0 = not relevant)."""

    query: str
    documents: list[str]
    labels: list[float]


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str, got {type(value).__name__}.")
    return value


def _pick(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> Any:
    for key in keys:
        if key in obj:
            return obj[key]
    raise ValueError(f"{where} is missing a field: expected one of {', '.join(keys)}.")


def to_labelled_pair(example: Any, index: int = 0) -> LabelledPair:
    """Normalise one labelled-pair example (tuple or dict).

    Raises:
        TypeError / ValueError: the example has another shape; the message names ``data[index]``.
    """
    where = f"data[{index}]"
    if isinstance(example, LabelledPair):
        return example
    if isinstance(example, dict):
        a = _pick(example, FIRST_KEYS, where)
        b = _pick(example, SECOND_KEYS, where)
        label = _pick(example, LABEL_KEYS, where)
    elif isinstance(example, Sequence) and not isinstance(example, str):
        if len(example) != 3:
            raise ValueError(f"{where} must be (text_a, text_b, label), got {len(example)} items.")
        a, b, label = example
    else:
        raise TypeError(f"{where} must be a (text_a, text_b, label) tuple or a dict, got {type(example).__name__}.")
    if label is None or isinstance(label, (list, dict)) and not label:
        raise ValueError(f"{where} has no label.")
    return LabelledPair(_str(a, f"{where} text_a"), _str(b, f"{where} text_b"), label)


def to_ranking_sample(example: Any, index: int = 0) -> RankingSample:
    """Normalise one ranking example (see the module docstring for the shapes).

    Raises:
        TypeError / ValueError: the example has another shape; the message names ``data[index]``.
    """
    where = f"data[{index}]"
    if isinstance(example, RankingSample):
        return example
    if isinstance(example, dict):
        query = _pick(example, ("query", "anchor", "text_a"), where)
        if "documents" in example or "docs" in example:
            docs = list(_pick(example, ("documents", "docs"), where))
            labels = list(_pick(example, ("labels",), where))
        else:
            positives = _pick(example, ("positives", "positive"), where)
            positives = [positives] if isinstance(positives, str) else list(positives)
            negatives = example.get("negatives", example.get("negative", []))
            negatives = [negatives] if isinstance(negatives, str) else list(negatives)
            docs = positives + negatives
            labels = [1.0] * len(positives) + [0.0] * len(negatives)
    elif isinstance(example, Sequence) and not isinstance(example, str):
        if len(example) == 3 and not isinstance(example[1], str):
            query, docs, labels = example[0], list(example[1]), list(example[2])
        elif len(example) >= 2:
            query, docs = example[0], list(example[1:])
            labels = [1.0] + [0.0] * (len(docs) - 1)
        else:
            raise ValueError(f"{where} must be (query, positive, negatives...) or (query, [documents], [labels]).")
    else:
        raise TypeError(f"{where} must be a tuple or dict ranking sample, got {type(example).__name__}.")
    if len(docs) != len(labels):
        raise ValueError(f"{where} has {len(docs)} documents but {len(labels)} labels.")
    if not docs:
        raise ValueError(f"{where} has no documents.")
    for j, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, (int, float)):
            raise TypeError(f"{where} label {j} must be a number, got {type(label).__name__}.")
    return RankingSample(
        _str(query, f"{where} query"),
        [_str(d, f"{where} document {j}") for j, d in enumerate(docs)],
        [float(x) for x in labels],
    )


def ranking_samples(data: Sequence[Any]) -> list[RankingSample]:
    """Normalise ranking data: ranking examples one by one, labelled pairs ``(query, document, label)`` grouped into
    one sample per query (in order of first appearance), as ``crossencoder mine`` writes them.

    Raises:
        TypeError / ValueError: an example of another shape, or a pair whose label is not a number (names
            ``data[index]``).
    """
    samples: list[RankingSample] = []
    by_query: dict[str, RankingSample] = {}
    for i, example in enumerate(data):
        if is_ranking_example(example):
            samples.append(to_ranking_sample(example, i))
            continue
        pair = to_labelled_pair(example, i)
        try:
            label = float(pair.label)
        except (TypeError, ValueError):
            raise ValueError(f"data[{i}]: a ranking label must be a number, got {pair.label!r}.") from None
        if pair.text_a not in by_query:
            by_query[pair.text_a] = RankingSample(pair.text_a, [], [])
            samples.append(by_query[pair.text_a])
        by_query[pair.text_a].documents.append(pair.text_b)
        by_query[pair.text_a].labels.append(label)
    return samples


def is_ranking_example(example: Any) -> bool:
    """Whether an example looks like ranking data rather than a labelled pair."""
    if isinstance(example, RankingSample):
        return True
    if isinstance(example, dict):
        return any(k in example for k in ("documents", "docs", "positive", "positives", "negatives"))
    if isinstance(example, Sequence) and not isinstance(example, str):
        return len(example) == 3 and isinstance(example[1], (list, tuple)) or (
            len(example) >= 3 and all(isinstance(x, str) for x in example)
        )
    return False
