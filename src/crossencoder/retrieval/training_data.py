"""Training pairs for a domain re-ranker: judged passages plus hard negatives mined from an index."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from crossencoder.retrieval.beir import _examples, text_ids, unknown_judged_documents
from crossencoder.retrieval.index import Index
from crossencoder.retrieval.pipeline import Method, search_many

logger = logging.getLogger(__name__)


def mine_training_pairs(
    index: Index,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    method: Method = "hybrid",
    num_negatives: int = 10,
    skip_top: int = 0,
    candidates: int = 100,
    qrels_source: str = "the judgments",
) -> list[tuple[str, str, float]]:
    """``(query, passage, label)`` pairs for :class:`~crossencoder.training.BinaryCrossEntropyLoss`.

    Every judged passage of a query becomes a pair with label ``relevance / max relevance`` (graded judgments become
    soft labels in [0, 1]). Hard negatives are the best-ranked *unjudged* passages that ``method`` retrieves for the
    query, with label 0; ``skip_top`` ignores the first unjudged hits, which are often relevant but unjudged.

    Args:
        index: Index of the corpus the judgments refer to.
        queries: ``{query_id: text}``; only queries with judgments are used (integer ids match the corpus's).
        qrels: ``{query_id: {doc_id: relevance}}``.
        method: Retriever that proposes negatives (``bm25``, ``dense`` or ``hybrid``).
        num_negatives: Negatives per query.
        skip_top: Unjudged hits skipped before taking negatives.
        candidates: Retrieval depth.
        qrels_source: What an error about the judgments names (the qrels file, where there is one).

    Returns:
        Pairs grouped by query, judged passages first.

    Raises:
        ValueError: no judgment has a positive relevance, no query has judgments, none of the judged passages is in
            the index, or a count is out of range.

    Example:
        >>> pairs = mine_training_pairs(index, {"q1": "berlin population"}, {"q1": {"d1": 2}}, num_negatives=2)
        >>> pairs
        [('berlin population', 'Berlin has 3.5 million ...', 1.0), ('berlin population', 'Paris is ...', 0.0), ...]
    """
    if num_negatives < 0 or skip_top < 0 or candidates < 1:
        raise ValueError("num_negatives and skip_top must be >= 0 and candidates >= 1.")
    queries, qrels = text_ids(queries, qrels)
    top = max((r for docs in qrels.values() for r in docs.values()), default=0)
    if top <= 0:
        raise ValueError("The judgments hold no positive relevance.")
    ids = [q for q in queries if q in qrels]
    if not ids:
        raise ValueError(f"None of the {len(queries)} queries has judgments: query ids such as "
                         f"{next(iter(queries), None)!r} do not appear in the qrels (ids such as "
                         f"{next(iter(qrels), None)!r}). Check that both files use the same query ids.")
    # Checked before the slow retrieval: with no judged passage in the index every pair would be a negative.
    unknown = unknown_judged_documents(index, {q: qrels[q] for q in ids}, source=qrels_source)
    if unknown:
        logger.warning("%d judged passages are not in the index and were left out, e.g. %s.", len(unknown),
                       _examples(unknown))
    results = search_many(index, [queries[q] for q in ids], method, top_k=candidates, candidates=candidates) \
        if num_negatives else [[] for _ in ids]
    rows = index.positions([d for q in ids for d in qrels[q]])
    pairs: list[tuple[str, str, float]] = []
    for query_id, hits in zip(ids, results):
        query, judged = queries[query_id], qrels[query_id]
        present = [d for d in judged if d in rows]
        for doc, did in zip(index.documents([rows[d] for d in present]), present):
            pairs.append((query, doc.content, max(0.0, judged[did] / top)))
        unjudged = [h for h in hits if h.id not in judged][skip_top:skip_top + num_negatives]
        pairs.extend((query, h.content, 0.0) for h in unjudged)
    return pairs
