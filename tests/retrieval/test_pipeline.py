"""Search: BM25, dense, hybrid fusion, re-ranking with a CrossEncoder, long documents, mining training pairs."""

from __future__ import annotations

import pytest
from retrieval_helpers import DOCS

from crossencoder import CrossEncoder
from crossencoder.files import InputError
from crossencoder.retrieval import (
    Hit,
    Index,
    fuse_with_first_stage,
    mine_training_pairs,
    reciprocal_rank_fusion,
    search,
    search_many,
)


@pytest.fixture(scope="module")
def index(index_dir, minilm_bi_encoder):
    return Index.open(index_dir, bi_encoder=minilm_bi_encoder)


def test_reciprocal_rank_fusion_values():
    fused = reciprocal_rank_fusion([[(1, 9.0), (2, 5.0)], [(2, 0.8), (3, 0.7)]], k=60)
    assert [row for row, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1][1] == pytest.approx(1 / 61) and fused[2][1] == pytest.approx(1 / 62)


def test_bm25_finds_term_matches_only(index):
    hits = search(index, "population of Berlin", method="bm25")
    assert [h.id for h in hits] == ["berlin"]  # no other document shares a term
    assert hits[0].title == "Berlin" and hits[0].text == DOCS[0]["text"]
    assert set(hits[0].scores) == {"bm25"} and hits[0].score == hits[0].scores["bm25"] > 0


def test_dense_finds_paraphrases(index):
    hits = search(index, "How many people live in the German capital?", method="dense", top_k=3)
    assert hits[0].id == "berlin" and len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_fuses_both_rankings(index):
    query = "What pets are domesticated mammals?"
    bm25 = search(index, query, method="bm25", top_k=6)
    dense = search(index, query, method="dense", top_k=6)
    hybrid = search(index, query, method="hybrid", top_k=6)
    expected = {}
    for ranking in (bm25, dense):
        for rank, hit in enumerate(ranking, start=1):
            expected[hit.id] = expected.get(hit.id, 0.0) + 1 / (60 + rank)
    assert hybrid[0].id == "cats"
    for hit in hybrid:
        assert hit.scores["hybrid"] == pytest.approx(expected[hit.id])
        assert hit.scores["dense"] == pytest.approx(next(h.score for h in dense if h.id == hit.id))
    assert "bm25" in hybrid[0].scores


def test_rerank_orders_candidates_by_cross_encoder(index, tiny_model_dir):
    reranker = CrossEncoder(tiny_model_dir)
    query = "berlin population"
    first = search(index, query, method="dense", top_k=6, candidates=6)
    hits = search(index, query, method="dense", top_k=3, candidates=6, reranker=reranker)
    scores = reranker.predict([(query, h.content) for h in first])
    expected = [first[i].id for i in sorted(range(6), key=lambda i: -scores[i])[:3]]
    assert [h.id for h in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(hit.scores["rerank"]) and "dense" in hit.scores


def test_fuse_with_first_stage_by_hand():
    # First stage order a, b, c; re-ranker order c, a, b.
    hits = [Hit(i, "", "", r, {"dense": d, "rerank": r}) for i, d, r in [("c", 0.1, 9.0), ("a", 0.9, 5.0),
                                                                         ("b", 0.5, 1.0)]]
    fused = fuse_with_first_stage(hits, "dense")
    assert [h.id for h in fused] == ["a", "c", "b"]  # a: 1/61 + 1/62 beats c: 1/61 + 1/63
    assert fused[0].score == fused[0].scores["fused"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2].score == pytest.approx(1 / 62 + 1 / 63) and fused[0].scores["rerank"] == 5.0
    assert [h.score for h in hits] == [9.0, 5.0, 1.0]  # the inputs are not modified
    with pytest.raises(ValueError, match="method must be one of"):
        fuse_with_first_stage(hits, "rerank")


def test_search_with_fusion_uses_every_candidate(index, tiny_model_dir):
    reranker = CrossEncoder(tiny_model_dir)
    query = "berlin population"
    reranked = search(index, query, method="dense", top_k=6, candidates=6, reranker=reranker)
    fused = search(index, query, method="dense", top_k=2, candidates=6, reranker=reranker, fuse_first_stage=True)
    assert [h.id for h in fused] == [h.id for h in fuse_with_first_stage(reranked, "dense")][:2]
    assert all(h.score == h.scores["fused"] and "rerank" in h.scores for h in fused)
    with pytest.raises(ValueError, match="pass a reranker"):
        search(index, query, fuse_first_stage=True)


def test_rerank_only_sees_the_candidates(index, tiny_model_dir):
    hits = search(index, "population of Berlin", method="bm25", top_k=10, candidates=10,
                  reranker=CrossEncoder(tiny_model_dir))
    assert [h.id for h in hits] == ["berlin"]


def test_long_documents_report_the_best_window(tmp_path, tiny_model_dir, minilm_bi_encoder):
    from retrieval_helpers import write_jsonl

    from crossencoder.retrieval import build_index

    long_text = "Filler sentence about nothing in particular. " * 60 + "Berlin has 3.5 million inhabitants."
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "long", "text": long_text}, *DOCS[1:3]])
    idx = build_index(corpus, tmp_path / "idx", bi_encoder=minilm_bi_encoder, show_progress_bar=False)
    reranker = CrossEncoder(tiny_model_dir)
    hits = search(idx, "Berlin inhabitants", method="bm25", reranker=reranker, long_documents="max")
    expected = reranker.rank("Berlin inhabitants", [long_text], long_documents="max")[0]
    assert hits[0].id == "long" and hits[0].window == expected["window"]
    assert hits[0].window_span == expected["window_span"] and hits[0].to_dict()["window_span"]
    assert "window" not in search(idx, "Berlin inhabitants", method="bm25")[0].to_dict()


def test_search_many_matches_single_searches(index):
    queries = ["coffee beans", "programming language"]
    many = search_many(index, queries, method="hybrid", top_k=2)
    assert [[h.id for h in hits] for hits in many] == [[h.id for h in search(index, q, top_k=2)] for q in queries]
    assert search_many(index, [], method="hybrid") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"method": "sparse"}, "method must be one of"), ({"top_k": 0}, "positive"), ({"candidates": 0}, "positive"),
     ({"long_documents": "max"}, "pass a reranker")],
)
def test_bad_search_arguments(index, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search(index, "coffee", **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        search(index, "  ")


def test_mine_training_pairs(index):
    queries = {"q1": "How many people live in the German capital?", "q2": "unjudged query"}
    qrels = {"q1": {"berlin": 2, "paris": 1, "not-in-index": 1}}
    pairs = mine_training_pairs(index, queries, qrels, method="dense", num_negatives=2)
    assert pairs[:2] == [(queries["q1"], "Berlin " + DOCS[0]["text"], 1.0),
                         (queries["q1"], "Paris " + DOCS[1]["text"], 0.5)]
    negatives = pairs[2:]
    assert len(negatives) == 2 and all(label == 0.0 for *_, label in negatives)
    dense = [h.content for h in search(index, queries["q1"], method="dense", top_k=6)]
    assert [p for _, p, _ in negatives] == [d for d in dense if not d.startswith(("Berlin", "Paris"))][:2]
    skipped = mine_training_pairs(index, queries, qrels, method="dense", num_negatives=1, skip_top=1)
    assert skipped[-1][1] == negatives[1][1]
    with pytest.raises(ValueError, match="None of the 1 queries has judgments.*'q2'.*'q1'"):
        mine_training_pairs(index, {"q2": "unjudged query"}, qrels)


def test_window_span_is_measured_in_the_text(tmp_path, tiny_model_dir, minilm_bi_encoder):
    from retrieval_helpers import write_jsonl

    from crossencoder.retrieval import build_index

    title = "Filler"
    text = "Filler sentence about nothing in particular. " * 20 + "Berlin has 3.5 million inhabitants."
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "long", "title": title, "text": text}, *DOCS[1:3]])
    idx = build_index(corpus, tmp_path / "idx", bi_encoder=minilm_bi_encoder, show_progress_bar=False)
    reranker = CrossEncoder(tiny_model_dir)
    (hit,) = search(idx, "Berlin inhabitants", method="bm25", reranker=reranker, long_documents="max")
    # rank() reads title + text, so its span is in that string; the hit's is in the text.
    start, end = reranker.rank("Berlin inhabitants", [hit.content], long_documents="max")[0]["window_span"]
    prefix = len(title) + 1
    assert hit.window_span == (max(0, start - prefix), end - prefix)
    assert text[slice(*hit.window_span)] == hit.content[max(start, prefix):end]


class _FixedWindowReranker:
    """Stands in for a CrossEncoder whose best window is a given span of title + text."""

    def __init__(self, span: tuple[int, int]) -> None:
        self.span = span

    def rank(self, query: str, documents: list[str], **kwargs: object) -> list[dict]:
        return [{"corpus_id": i, "score": 1.0, "window": 0, "window_span": self.span} for i in range(len(documents))]


@pytest.mark.parametrize(("span", "expected"), [((0, 4), (0, 0)), ((3, 12), (0, 5)), ((7, 12), (0, 5)),
                                                ((10, 20), (3, 13))])
def test_window_span_in_the_title_is_clamped_to_the_text(index, span, expected):
    # "Berlin Berlin has ...": the text starts at offset 7 of what the re-ranker reads.
    (hit,) = search(index, "population of Berlin", method="bm25", reranker=_FixedWindowReranker(span),
                    long_documents="max")
    assert hit.title == "Berlin" and hit.window_span == expected


def test_bm25s_logs_only_what_the_root_logger_lets_through(index, caplog):
    import logging

    # As on the command line: a handler that prints everything, the root level set by -v.
    caplog.set_level(logging.WARNING)
    caplog.handler.setLevel(logging.NOTSET)
    assert search(index, "the", method="bm25") == []  # a query of stop words only
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]
    caplog.set_level(logging.INFO)
    caplog.handler.setLevel(logging.NOTSET)
    search(index, "the", method="bm25")
    assert any("query is empty" in r.getMessage() for r in caplog.records if r.name.startswith("bm25s"))


def test_mining_refuses_judgments_of_unknown_documents(index):
    queries = {"q1": "How many people live in the German capital?"}
    with pytest.raises(InputError, match=r"none of the 2 judged documents is in the index .*'Berlin', 'Paris'"):
        mine_training_pairs(index, queries, {"q1": {"Berlin": 2, "Paris": 0}}, method="bm25")


def test_search_many_refuses_a_single_string(index):
    # A str is a sequence: each character would be searched as a query.
    with pytest.raises(TypeError, match="list of queries"):
        search_many(index, "coffee beans")


def test_a_query_that_is_not_valid_unicode_is_named(index):
    # A lone surrogate (bytes that were not UTF-8, decoded with surrogateescape) made the tokenizer fail with
    # "TextEncodeInput must be Union[...]", naming neither the query nor the problem.
    with pytest.raises(ValueError, match=r"queries\[1\] is not valid Unicode: it holds a lone surrogate '\\udcff'"):
        search_many(index, ["coffee", "berlin \udcff"], method="bm25")
