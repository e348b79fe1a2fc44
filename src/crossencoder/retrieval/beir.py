"""BEIR-style evaluation: NDCG@10 (graded), MRR@10 and Recall@100 of BM25, dense, hybrid and each + re-ranking."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossencoder.files import InputError, drop_trailing_empty_cells, parse_json_line, pick_text, read_lines
from crossencoder.evaluation.metrics import ranking_metrics
from crossencoder.model.windows import Aggregation
from crossencoder.retrieval.corpus import read_id
from crossencoder.retrieval.index import Index
from crossencoder.retrieval.pipeline import METHODS, Hit, fuse_with_first_stage, search_many

if TYPE_CHECKING:
    from crossencoder.model.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@100")
# The deepest cut-off of METRICS: every row ranks at least this many documents, so Recall@100 is recall at 100.
DEPTH = 100
Qrels = dict[str, dict[str, int]]


@dataclass
class BeirDataset:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Attributes:
        corpus_path: Path of ``corpus.jsonl`` (index it with :func:`~crossencoder.retrieval.build_index`).
        queries: ``{query_id: text}`` of the judged queries of the split.
        qrels: ``{query_id: {doc_id: relevance}}``.
    """

    corpus_path: Path
    queries: dict[str, str]
    qrels: Qrels


def read_qrels(path: str | os.PathLike) -> Qrels:
    """Read a qrels file: BEIR TSV (``query-id``, ``corpus-id``, ``score``; a header line is optional) or TREC
    (``query-id``, iteration, ``corpus-id``, ``score``, as MS MARCO's ``qrels.dev.tsv``; tabs or spaces).

    Raises:
        InputError: missing file, a line that is not UTF-8, a row of another width or a non-integer score (names
            file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such qrels file.")
    qrels: Qrels = {}
    for number, (lineno, line) in enumerate(read_lines(os.fspath(path))):
        row = next(csv.reader([line], delimiter="\t")) if "\t" in line else line.split()
        # A trailing tab (spreadsheet exports) is no fourth column: read as TREC's, the score would be missing.
        row = drop_trailing_empty_cells(row, keep=3)
        if number == 0 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(row) not in (3, 4):
            raise InputError(f"{path}:{lineno}: expected 3 columns (query-id, corpus-id, score) or 4 (TREC: "
                             f"query-id, iteration, corpus-id, score), got {len(row)}.")
        query_id, doc_id, score = (row[0], row[2], row[3]) if len(row) == 4 else row
        try:
            value = float(score)
        except ValueError:
            raise InputError(f"{path}:{lineno}: score {score!r} is not a number.") from None
        # Grades are integers; truncating 0.7 to 0 would silently turn a judged passage into a negative.
        if not value.is_integer():
            raise InputError(f"{path}:{lineno}: score {score!r} is not an integer grade.")
        qrels.setdefault(query_id.strip(), {})[doc_id.strip()] = int(value)
    if not qrels:
        raise InputError(f"{path}: no judgments.")
    return qrels


def read_queries(path: str | os.PathLike) -> dict[str, str]:
    """Read a BEIR queries JSONL (``_id``, or ``id`` as the corpus allows, and ``text``) into ``{query_id: text}``.

    Raises:
        InputError: missing file, bad line, missing field, empty text or repeated id (names file and line).
    """
    name = os.fspath(path)
    queries: dict[str, str] = {}
    for lineno, line in read_lines(name):
        obj = parse_json_line(name, lineno, line)
        query_id = read_id(obj, name, lineno)
        if query_id in queries:
            raise InputError(f"{name}:{lineno}: duplicate query id {query_id!r}.")
        text = pick_text(obj, ("text",), name, lineno)
        if not text.strip():
            raise InputError(f"{name}:{lineno}: query {query_id!r} has an empty text.")
        queries[query_id] = text
    if not queries:
        raise InputError(f"{name}: no queries.")
    return queries


def load_beir(data_dir: str | os.PathLike, split: str = "test") -> BeirDataset:
    """Load a BEIR folder's queries and judgments for ``split`` (queries without judgments are dropped).

    Raises:
        InputError: a missing file, bad lines (file and line named), or judged queries absent from queries.jsonl.

    Example:
        >>> data = load_beir("msmarco-sample", split="dev")
        >>> len(data.queries)
        40
    """
    root = Path(data_dir)
    corpus = root / "corpus.jsonl"
    if not corpus.is_file():
        raise InputError(f"{corpus}: no such file; a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/.")
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    queries_file = str(root / "queries.jsonl")
    queries = read_queries(queries_file)
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise InputError(f"{queries_file}: {len(missing)} judged queries are missing, e.g. {missing[0]!r}.")
    return BeirDataset(corpus, {q: queries[q] for q in qrels}, qrels)


def text_ids(queries: Mapping[Any, str], qrels: Mapping[Any, Mapping[Any, int]]) -> tuple[dict[str, str], Qrels]:
    """Queries and judgments keyed by text ids, as the index stores them (an integer id as its decimal text)."""
    return ({str(q): text for q, text in queries.items()},
            {str(q): {str(d): r for d, r in docs.items()} for q, docs in qrels.items()})


def _examples(ids: Sequence[str], n: int = 3) -> str:
    return ", ".join(repr(i) for i in ids[:n]) + (", ..." if len(ids) > n else "")


def unknown_judged_documents(index: Index, qrels: Mapping[str, Mapping[str, int]],
                             source: str = "the judgments") -> list[str]:
    """The judged document ids that are not in ``index``, after refusing judgments that match none of it.

    Ids that differ from the corpus's (``D13`` against ``d13``) would otherwise score 0 everywhere, or be mined as
    negatives, without a word.

    Args:
        index: Index of the corpus the judgments refer to.
        qrels: ``{query_id: {doc_id: relevance}}``.
        source: What the error names: the qrels file where there is one.

    Returns:
        The unknown ids in qrels order (empty when every judged document is in the index).

    Raises:
        InputError: none of the judged documents is in the index.
    """
    judged = list(dict.fromkeys(d for docs in qrels.values() for d in docs))
    rows = index.positions(judged)
    unknown = [d for d in judged if d not in rows]
    if judged and len(unknown) == len(judged):
        raise InputError(f"{source}: none of the {len(judged)} judged documents is in the index {index.path} "
                         f"(ids such as {_examples(unknown)}); the judgments and the corpus must use the same "
                         "document ids.")
    return unknown


def evaluate(
    index: Index,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    methods: Sequence[str] = METHODS,
    reranker: CrossEncoder | None = None,
    rerank_methods: Sequence[str] | None = None,
    candidates: int = 100,
    batch_size: int = 32,
    long_documents: Aggregation | None = None,
    show_progress_bar: bool | None = None,
    fusion: bool = False,
    qrels_source: str = "the judgments",
) -> dict[str, dict[str, float]]:
    """NDCG@10, MRR@10 and Recall@100 of each retrieval method, and of each followed by re-ranking.

    Args:
        index: Index of the corpus the judgments refer to.
        queries: ``{query_id: text}`` (integer ids match the corpus's integer ids).
        qrels: ``{query_id: {doc_id: relevance}}`` (graded; > 0 is relevant).
        methods: First stages to evaluate.
        reranker: Adds a ``"<method> + rerank"`` row per method (re-ranks that method's ``candidates``).
        rerank_methods: The methods that get a re-rank row (default: all of ``methods``).
        candidates: Documents each first stage hands to the re-ranker. First-stage rows rank ``max(candidates,
            100)`` documents, and re-rank rows continue below the re-ranked ones with the first stage's next
            documents to that depth, so Recall@100 is recall at 100 whatever ``candidates`` is.
        batch_size, long_documents: Re-ranking options (see :func:`~crossencoder.retrieval.search`).
        show_progress_bar: Progress bar over queries while re-ranking.
        fusion: Also add a ``"<method> + rerank + fusion"`` row per re-ranked method: the re-ranker's and the
            first stage's rankings fused by reciprocal rank (:func:`~crossencoder.retrieval.fuse_with_first_stage`;
            the same cross-encoder scores, no extra model calls).
        qrels_source: What an error about the judgments names (the qrels file, where there is one).

    Returns:
        ``{row name: {"ndcg@10", "mrr@10", "recall@100"}}`` in table order.

    Raises:
        InputError: none of the judged documents is in the index (some missing is a logged warning: they count as
            not retrieved).

    Example:
        >>> evaluate(index, data.queries, data.qrels)["hybrid"]["ndcg@10"]
        0.61
    """
    if fusion and reranker is None:
        raise ValueError("fusion fuses the re-ranker with the first stage: pass a reranker.")
    queries, qrels = text_ids(queries, qrels)
    # Only the evaluated queries' judgments count: a judged query outside ``queries`` would score 0.
    ids = [q for q in queries if q in qrels]
    if not ids:
        raise ValueError("None of the queries has judgments.")
    qrels = {q: qrels[q] for q in ids}
    unknown = unknown_judged_documents(index, qrels, source=qrels_source)
    if unknown:
        logger.warning("%d judged documents are not in the index and count as not retrieved, e.g. %s.",
                       len(unknown), _examples(unknown))
    texts = [queries[q] for q in ids]
    table: dict[str, dict[str, float]] = {}
    stages: list[tuple[str, str, CrossEncoder | None]] = [(m, m, None) for m in methods]
    if reranker is not None:
        reranked = methods if rerank_methods is None else rerank_methods
        stages += [(f"{m} + rerank", m, reranker) for m in reranked]

    def score(name: str, results: list[list[Hit]]) -> None:
        # Scores that fall along the returned order: fusion ties often, and the order search() returns is the result.
        run = {q: {hit.id: float(len(hits) - rank) for rank, hit in enumerate(hits)} for q, hits in zip(ids, results)}
        values = ranking_metrics(qrels, run, k=10, recall_at=(100,))
        table[name] = {metric: values[metric] for metric in METRICS}

    depth = max(candidates, DEPTH)
    first_stage: dict[str, list[list[Hit]]] = {}

    def retrieve(method: str) -> list[list[Hit]]:
        if method not in first_stage:
            first_stage[method] = search_many(index, texts, method, top_k=depth, candidates=depth)
        return first_stage[method]

    def continued(method: str, results: list[list[Hit]]) -> list[list[Hit]]:
        """The re-ranked hits, then the first stage's next ones down to ``depth`` (re-ranking fewer than 100
        candidates must not turn Recall@100 into recall at ``candidates``)."""
        if candidates >= depth:
            return results
        out = []
        for hits, tail in zip(results, retrieve(method)):
            seen = {hit.id for hit in hits}
            out.append(hits + [hit for hit in tail if hit.id not in seen][:depth - len(hits)])
        return out

    for name, method, model in stages:
        if model is None:
            score(name, retrieve(method))
            continue
        results = search_many(index, texts, method, top_k=candidates, candidates=candidates, reranker=model,
                              batch_size=batch_size, long_documents=long_documents,
                              show_progress_bar=show_progress_bar)
        score(name, continued(method, results))
        if fusion:
            score(f"{name} + fusion", continued(method, [fuse_with_first_stage(hits, method) for hits in results]))
    return table


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table of :func:`evaluate`'s result (metrics as percentages)."""
    lines = ["| method | " + " | ".join(m.upper() for m in METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]
    for name, values in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * values[m]:.1f}" for m in METRICS) + " |")
    return "\n".join(lines)
