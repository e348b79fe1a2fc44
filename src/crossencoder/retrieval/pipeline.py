"""Retrieve then re-rank: BM25, dense or hybrid (reciprocal-rank fusion) candidates, re-scored by a CrossEncoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from crossencoder.files import unicode_problem
from crossencoder.model.windows import Aggregation
from crossencoder.retrieval.corpus import join_title
from crossencoder.retrieval.index import Hits, Index

if TYPE_CHECKING:
    from crossencoder.model.cross_encoder import CrossEncoder

Method = Literal["bm25", "dense", "hybrid"]
METHODS: tuple[str, ...] = ("bm25", "dense", "hybrid")
# The constant of Cormack et al. (2009); it damps the weight of the very first ranks.
RRF_K = 60


@dataclass
class Hit:
    """One search result.

    Attributes:
        id, title, text: The document.
        score: Its score at the last stage (the ranking key).
        scores: Score per stage that saw it: ``bm25``, ``dense``, ``hybrid`` (fused), ``rerank``, and ``fused``
            (re-ranker and first stage fused; see :func:`fuse_with_first_stage`).
        window, window_span: With ``long_documents``, the window the score comes from and its ``(start, end)`` character
            offsets in ``text`` (the re-ranker reads title + text: a window that begins in the title starts at 0,
            and one that lies entirely in the title is ``(0, 0)``).
    """

    id: str
    title: str
    text: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    window: int | None = None
    window_span: tuple[int, int] | None = None

    @property
    def content(self) -> str:
        """Title and text as one string, as the re-ranker reads it."""
        return join_title(self.title, self.text)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (window fields only when set)."""
        data = asdict(self)
        if self.window is None:
            del data["window"], data["window_span"]
        return data


def reciprocal_rank_fusion(rankings: Sequence[Hits], k: int = RRF_K) -> Hits:
    """Fuse rankings by reciprocal rank: ``score(d) = sum over rankings of 1 / (k + rank)`` (rank from 1).

    Args:
        rankings: ``[(row, score), ...]`` lists, best first; scores are ignored, only ranks count.
        k: Damping constant (60 in the original paper).

    Returns:
        ``(row, fused score)`` best first; ties keep the order of first appearance.

    Example:
        >>> reciprocal_rank_fusion([[(1, 9.0), (2, 5.0)], [(2, 0.8), (3, 0.7)]])[0][0]
        2
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def _first_stage(index: Index, queries: Sequence[str], method: str, candidates: int) -> list[list[Hit]]:
    per_method: dict[str, list[Hits]] = {}
    if method in ("bm25", "hybrid"):
        per_method["bm25"] = index.bm25_search(queries, candidates)
    if method in ("dense", "hybrid"):
        per_method["dense"] = index.dense_search(queries, candidates)
    results: list[list[Hit]] = []
    for q in range(len(queries)):
        stage_scores = {name: dict(hits[q]) for name, hits in per_method.items()}
        if method == "hybrid":
            ranked = reciprocal_rank_fusion([per_method["bm25"][q], per_method["dense"][q]])[:candidates]
        else:
            ranked = per_method[method][q]
        docs = index.documents([row for row, _ in ranked])
        hits = []
        for (row, score), doc in zip(ranked, docs):
            scores = {name: s[row] for name, s in stage_scores.items() if row in s}
            scores[method] = score
            hits.append(Hit(doc.id, doc.title, doc.text, score, scores))
        results.append(hits)
    return results


def fuse_with_first_stage(reranked: Sequence[Hit], method: str, k: int = RRF_K) -> list[Hit]:
    """Re-order re-ranked hits by reciprocal-rank fusion of the re-ranker's ranking and the first stage's.

    A re-ranker fine-tuned on little data can be good at some queries and worse than a strong first stage at
    others; fusing the two rankings keeps what each gets right (see the MS MARCO-sample figures in
    docs/benchmarks.md). Hits missing from either ranking only get that ranking's share.

    Args:
        reranked: Hits that carry both ``scores["rerank"]`` and ``scores[method]``, e.g. from
            :func:`search_many` with a ``reranker`` and ``top_k=candidates``.
        method: The first stage the hits came from (``"bm25"``, ``"dense"`` or ``"hybrid"``).
        k: RRF damping constant.

    Returns:
        The hits best first, each with ``score`` and ``scores["fused"]`` set to its fused score.

    Example:
        >>> fused = fuse_with_first_stage(search(index, "berlin population", method="dense", reranker=model,
        ...                                      top_k=100), method="dense")
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    rankings = [sorted((i for i, hit in enumerate(reranked) if key in hit.scores),
                       key=lambda i: -reranked[i].scores[key]) for key in ("rerank", method)]
    fused = reciprocal_rank_fusion([[(i, 0.0) for i in ranking] for ranking in rankings], k)
    return [replace(reranked[i], score=score, scores={**reranked[i].scores, "fused": score}) for i, score in fused]


def _rerank(query: str, hits: list[Hit], reranker: CrossEncoder, top_k: int, batch_size: int,
            long_documents: Aggregation | None, stride: int | None, fuse_method: str | None) -> list[Hit]:
    if not hits:
        return []
    # Fusion needs the re-ranker's order of every candidate, not only its top_k.
    ranked = reranker.rank(query, [h.content for h in hits], top_k=None if fuse_method else top_k,
                           batch_size=batch_size, show_progress_bar=False, long_documents=long_documents,
                           stride=stride)
    out = []
    for result in ranked:
        hit = hits[result["corpus_id"]]
        score = float(result["score"])
        span = result.get("window_span")
        if span is not None:
            # rank() measures in title + text; Hit.text is the text alone, so drop the title prefix.
            prefix = len(hit.content) - len(hit.text)
            span = (max(0, span[0] - prefix), max(0, span[1] - prefix))
        out.append(Hit(hit.id, hit.title, hit.text, score, {**hit.scores, "rerank": score}, result.get("window"),
                       span))
    return fuse_with_first_stage(out, fuse_method)[:top_k] if fuse_method else out


def search_many(
    index: Index,
    queries: Sequence[str],
    method: Method = "hybrid",
    top_k: int = 10,
    candidates: int = 100,
    reranker: CrossEncoder | None = None,
    batch_size: int = 32,
    long_documents: Aggregation | None = None,
    stride: int | None = None,
    show_progress_bar: bool | None = None,
    fuse_first_stage: bool = False,
) -> list[list[Hit]]:
    """Search an index for several queries; see :func:`search`. Queries are embedded and retrieved in batches.

    Returns:
        One best-first list of at most ``top_k`` hits per query.

    Raises:
        TypeError: ``queries`` is a single string.
        ValueError: as :func:`search`.
    """
    if isinstance(queries, str):
        raise TypeError("search_many() takes a list of queries, not a single string (use search()).")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if top_k < 1 or candidates < 1:
        raise ValueError(f"top_k and candidates must be positive integers, got {top_k} and {candidates}.")
    for i, query in enumerate(queries):
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"queries[{i}] must be a non-empty string, got {query!r}.")
        # The tokenizers reject a lone surrogate with a message that names neither the query nor the problem.
        if problem := unicode_problem(query, f"queries[{i}]"):
            raise ValueError(problem + ".")
    if long_documents is not None and reranker is None:
        raise ValueError("long_documents applies to the re-rank stage: pass a reranker.")
    if fuse_first_stage and reranker is None:
        raise ValueError("fuse_first_stage fuses the re-ranker with the first stage: pass a reranker.")
    if not queries:
        return []
    first = _first_stage(index, queries, method, max(candidates, top_k) if reranker is None else candidates)
    if reranker is None:
        return [hits[:top_k] for hits in first]
    disable = None if show_progress_bar is None else not show_progress_bar
    return [
        _rerank(query, hits, reranker, top_k, batch_size, long_documents, stride, method if fuse_first_stage else None)
        for query, hits in tqdm(list(zip(queries, first)), desc="Re-ranking", unit="query", disable=disable)
    ]


def search(
    index: Index,
    query: str,
    method: Method = "hybrid",
    top_k: int = 10,
    candidates: int = 100,
    reranker: CrossEncoder | None = None,
    batch_size: int = 32,
    long_documents: Aggregation | None = None,
    stride: int | None = None,
    fuse_first_stage: bool = False,
) -> list[Hit]:
    """Search an index: retrieve ``candidates`` with BM25, dense or hybrid, then optionally re-rank them.

    Hybrid takes ``candidates`` from BM25 and from dense retrieval and fuses them by reciprocal rank (k=60). With a
    ``reranker`` the ``candidates`` fused hits are re-scored by the cross-encoder and the best ``top_k`` kept.

    Args:
        index: An opened :class:`~crossencoder.retrieval.Index`.
        query: The query text.
        method: ``"bm25"``, ``"dense"`` or ``"hybrid"``.
        top_k: Hits returned.
        candidates: Hits taken from each first-stage retriever (and handed to the re-ranker).
        reranker: A 1-label :class:`~crossencoder.CrossEncoder`, or None for first-stage results.
        batch_size: Pairs per cross-encoder batch.
        long_documents, stride: Passed to :meth:`CrossEncoder.rank` (``"max"``, ``"mean"``, ``"first"``): long
            passages are scored window by window and hits report ``window`` / ``window_span``.
        fuse_first_stage: Rank the candidates by reciprocal-rank fusion of the re-ranker's and the first stage's
            rankings (:func:`fuse_with_first_stage`) instead of by the re-ranker alone.

    Returns:
        Best-first :class:`Hit` list (id, title, text, final score, score per stage).

    Raises:
        ValueError: empty query or one that is not valid Unicode, unknown method, non-positive ``top_k`` /
            ``candidates``, re-rank options without a ``reranker``.

    Example:
        >>> index = Index.open("my-index")
        >>> hits = search(index, "berlin population", reranker=CrossEncoder("ms-marco-MiniLM-L6-v2"), top_k=3)
        >>> hits[0].id, hits[0].scores
        ('d1', {'bm25': 7.1, 'dense': 0.62, 'hybrid': 0.033, 'rerank': 0.98})
    """
    return search_many(index, [query], method, top_k, candidates, reranker, batch_size, long_documents, stride,
                       show_progress_bar=False, fuse_first_stage=fuse_first_stage)[0]
