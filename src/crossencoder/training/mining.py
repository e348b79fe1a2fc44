"""Hard-negative mining: retrieve top-k passages with a bi-encoder and keep the non-positives as negatives."""

from __future__ import annotations

import logging
import math
import numbers
import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """Anything that embeds texts like :class:`crossencoder.retrieval.BiEncoder`."""

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool | None = None,
               normalize: bool = True) -> np.ndarray: ...


def mine_hard_negatives(
    queries: Sequence[str],
    positives: Sequence[str | Sequence[str]],
    corpus: Sequence[str] | None = None,
    bi_encoder: TextEncoder | None = None,
    num_negatives: int = 5,
    top_k: int = 50,
    skip_top: int = 0,
    margin: float | None = None,
    max_score: float | None = None,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> list[tuple[str, ...]]:
    """Find hard negatives for (query, positive) pairs with a bi-encoder.

    Every query is embedded, the ``top_k`` most similar corpus passages (cosine) are retrieved, the query's
    positives are dropped, and the best remaining ones become its negatives. Highly ranked passages are often
    unlabelled positives (false negatives); ``skip_top``, ``margin`` and ``max_score`` filter them out.

    Args:
        queries: The queries.
        positives: For each query, its positive passage or a list of them.
        corpus: Passages to mine from; the positives are always added. None mines among the positives only.
        bi_encoder: An object with ``encode(texts, batch_size, show_progress_bar, normalize) -> np.ndarray``;
            default :class:`crossencoder.retrieval.BiEncoder` (all-MiniLM-L6-v2).
        num_negatives: Negatives to keep per (query, positive).
        top_k: Candidates retrieved per query before filtering.
        skip_top: Ignore the first ``skip_top`` retrieved non-positive candidates (likely false negatives).
        margin: Keep a candidate only if its similarity is below ``min(positive similarity) - margin``.
        max_score: Keep a candidate only if its similarity is at most this.
        batch_size: Texts per encoding batch.
        show_progress_bar: As in the encoder's ``encode``.

    Returns:
        One tuple per (query, positive): ``(query, positive, negative_1, ..., negative_n)`` with
        ``n <= num_negatives`` (fewer when the filters leave fewer), ready for
        :class:`~crossencoder.training.losses.MultipleNegativesRankingLoss`. Queries left with no negative are
        still returned (in-batch negatives then do the work).

    Raises:
        ValueError: ``queries`` and ``positives`` differ in length, or a count is not an integer in range.

    Example:
        >>> mine_hard_negatives(["what is python"], ["Python is a programming language."],
        ...                     corpus=["A python is a snake.", "Java is a language.", "Paris is in France."],
        ...                     num_negatives=2)
        [('what is python', 'Python is a programming language.', 'A python is a snake.', 'Java is a language.')]
    """
    if len(queries) != len(positives):
        raise ValueError(f"Got {len(queries)} queries but {len(positives)} positive entries.")
    for name, value, least in (("num_negatives", num_negatives, 1), ("top_k", top_k, 1), ("skip_top", skip_top, 0)):
        # numbers.Integral: numpy integers too (as check_cutoffs takes them), e.g. a count read from an array.
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")
    pos_lists = [[p] if isinstance(p, str) else list(p) for p in positives]
    for i, plist in enumerate(pos_lists):
        if not plist or not all(isinstance(p, str) for p in plist):
            raise ValueError(f"positives[{i}] must be a passage or a non-empty list of passages.")
    if not queries:  # nothing to mine for: do not load and run the bi-encoder
        return []
    # The corpus is de-duplicated so a passage listed twice cannot be its own negative.
    passages = list(dict.fromkeys([*(corpus or []), *(p for plist in pos_lists for p in plist)]))
    index = {text: i for i, text in enumerate(passages)}
    if bi_encoder is None:
        from crossencoder.retrieval import BiEncoder

        bi_encoder = BiEncoder()
    doc_emb = np.asarray(bi_encoder.encode(passages, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                           normalize=True), dtype=np.float32)
    query_emb = np.asarray(bi_encoder.encode(list(queries), batch_size=batch_size,
                                             show_progress_bar=show_progress_bar, normalize=True), dtype=np.float32)
    k = min(top_k + max(len(p) for p in pos_lists), len(passages))
    out: list[tuple[str, ...]] = []
    # Score queries in chunks so the similarity matrix stays small for large corpora.
    for start in range(0, len(queries), 256):
        sims = query_emb[start:start + 256] @ doc_emb.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(
            np.arange(sims.shape[1]), (sims.shape[0], 1))
        for row, q in enumerate(range(start, min(start + 256, len(queries)))):
            ranked = sorted(top[row], key=lambda j: (-sims[row, j], j))
            pos_ids = {index[p] for p in pos_lists[q]}
            ceiling = min(sims[row, j] for j in pos_ids)
            candidates = [j for j in ranked if j not in pos_ids][:top_k][skip_top:]
            if margin is not None:
                candidates = [j for j in candidates if sims[row, j] < ceiling - margin]
            if max_score is not None:
                candidates = [j for j in candidates if sims[row, j] <= max_score]
            negatives = tuple(passages[j] for j in candidates[:num_negatives])
            out.extend((queries[q], p, *negatives) for p in pos_lists[q])
    short = sum(1 for x in out if len(x) - 2 < num_negatives)
    if short:
        logger.info("%d of %d (query, positive) pairs got fewer than %d negatives after filtering.",
                    short, len(out), num_negatives)
    return out


def flatten_ranking(data: Sequence[Any]) -> list[tuple[str, str, float]]:
    """Turn ranking samples into labelled pairs ``(query, document, label)`` for pointwise losses (BCE).

    Example:
        >>> flatten_ranking([("q", "pos", "neg")])
        [('q', 'pos', 1.0), ('q', 'neg', 0.0)]
    """
    from crossencoder.evaluation.samples import to_ranking_sample

    return [(s.query, d, y) for i, x in enumerate(data) for s in [to_ranking_sample(x, i)]
            for d, y in zip(s.documents, s.labels)]


def group_pairs(
    pairs: Sequence[tuple[str, str, float]], group_size: int = 16, seed: int = 0
) -> list[tuple[str, list[str], list[float]]]:
    """Turn labelled pairs into listwise samples ``(query, [documents], [labels])`` (the inverse of
    :func:`flatten_ranking`), for :class:`~crossencoder.training.losses.ListNetLoss`.

    A list only teaches a listwise loss something if it mixes labels, so each query's pairs are split into
    *positives* (labels above the query's lowest label, e.g. the judged passages) and *negatives* (at the lowest
    label, e.g. mined passages at 0), both shuffled (seeded), and dealt into lists of at most ``group_size``:

    - when each kind has at least as many pairs as the ``ceil(n_pairs / group_size)`` lists, round-robin, so
      every pair is used exactly once per epoch, every list mixes both kinds, and list sizes differ by at most 1;
    - otherwise every pair of the more common kind is used exactly once, in lists of at most ``group_size - 1``
      of them, and the rarer kind is reused so that each list holds one of it: with 1 positive and 11 negatives
      and ``group_size=4``, 4 lists of the positive and 3, 3, 3, 2 negatives.

    Queries whose pairs all have the same label (including single pairs) have nothing to rank and are left out.

    Args:
        pairs: ``(query, document, label)`` triples, e.g. from
            :func:`~crossencoder.retrieval.mine_training_pairs`.
        group_size: Documents per list (at least 2); larger lists cost more memory per step.
        seed: Seed of the shuffle.

    Returns:
        Listwise samples, queries in order of first appearance.

    Raises:
        ValueError: ``group_size`` < 2, or a label is not a finite number (the message names the pair).

    Example:
        >>> group_pairs([("q", "a", 1.0), ("q", "b", 0.0), ("q", "c", 0.5)], group_size=3)
        [('q', ['a', 'c', 'b'], [1.0, 0.5, 0.0])]
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}.")
    by_query: dict[str, list[tuple[str, float]]] = {}
    for i, (query, document, label) in enumerate(pairs):
        try:
            value = float(label)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):  # a NaN label would fall outside both kinds and silently drop its query
            raise ValueError(f"pairs[{i}] label must be a finite number, got {label!r}.")
        by_query.setdefault(query, []).append((document, value))
    rng = random.Random(seed)
    out: list[tuple[str, list[str], list[float]]] = []
    for query, items in by_query.items():
        items = items[:]
        rng.shuffle(items)
        for group in _mixed_groups(items, group_size):
            out.append((query, [d for d, _ in group], [label for _, label in group]))
    return out


def _mixed_groups(items: list[tuple[str, float]], group_size: int) -> list[list[tuple[str, float]]]:
    """Deal one query's ``(document, label)`` pairs into lists that each mix labels (see :func:`group_pairs`)."""
    lowest = min(label for _, label in items)
    positives = [item for item in items if item[1] > lowest]
    negatives = [item for item in items if item[1] == lowest]
    if not positives:
        return []
    n_groups = math.ceil(len(items) / group_size)
    if min(len(positives), len(negatives)) >= n_groups:
        # Dealing positives then negatives round-robin puts at least one of each kind in every list.
        ordered = positives + negatives
        return [ordered[g::n_groups] for g in range(n_groups)]
    rare, common = sorted((positives, negatives), key=len)
    n_groups = math.ceil(len(common) / (group_size - 1))
    return [[rare[g % len(rare)], *common[g::n_groups]] for g in range(n_groups)]
