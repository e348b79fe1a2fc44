"""BEIR loading and evaluation tables."""

from __future__ import annotations

import pytest
from retrieval_helpers import DOCS, write_jsonl

from crossencoder import CrossEncoder
from crossencoder.cli.common import InputError
from crossencoder.evaluation import ranking_metrics
from crossencoder.retrieval import (
    Index,
    evaluate,
    format_table,
    fuse_with_first_stage,
    load_beir,
    read_qrels,
    search_many,
)

QUERIES = [{"_id": "q1", "text": "Berlin population inhabitants"}, {"_id": "q2", "text": "coffee beans brewed"},
           {"_id": "q3", "text": "not judged"}]


@pytest.fixture()
def beir_dir(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tberlin\t2\nq2\tcoffee\t1\n"
                                                 "q2\tplants\t0\n")
    return tmp_path


def test_load_beir(beir_dir):
    data = load_beir(beir_dir, "test")
    assert data.queries == {"q1": QUERIES[0]["text"], "q2": QUERIES[1]["text"]}  # unjudged q3 dropped
    assert data.qrels == {"q1": {"berlin": 2}, "q2": {"coffee": 1, "plants": 0}}
    assert data.corpus_path == beir_dir / "corpus.jsonl"


def test_evaluate_table(beir_dir, index_dir, minilm_bi_encoder, tiny_model_dir):
    data = load_beir(beir_dir, "test")
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    reranker = CrossEncoder(tiny_model_dir)
    table = evaluate(index, data.queries, data.qrels, reranker=reranker, rerank_methods=["hybrid"])
    assert list(table) == ["bm25", "dense", "hybrid", "hybrid + rerank"]
    assert table["bm25"] == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}  # exact term matches rank first
    hits = search_many(index, list(data.queries.values()), "hybrid", top_k=100, reranker=reranker)
    run = {q: {h.id: h.score for h in hs} for q, hs in zip(data.queries, hits)}
    expected = ranking_metrics(data.qrels, run, k=10, recall_at=(100,))
    assert table["hybrid + rerank"] == {m: pytest.approx(expected[m]) for m in ("ndcg@10", "mrr@10", "recall@100")}
    text = format_table(table)
    assert "| hybrid + rerank |" in text and "NDCG@10" in text and "100.0" in text
    fused_table = evaluate(index, data.queries, data.qrels, reranker=reranker, rerank_methods=["hybrid"], fusion=True)
    assert list(fused_table)[-2:] == ["hybrid + rerank", "hybrid + rerank + fusion"]
    fused_run = {q: {h.id: h.score for h in fuse_with_first_stage(hs, "hybrid")} for q, hs in zip(data.queries, hits)}
    expected = ranking_metrics(data.qrels, fused_run, k=10, recall_at=(100,))
    metrics = ("ndcg@10", "mrr@10", "recall@100")
    assert fused_table["hybrid + rerank + fusion"] == {m: pytest.approx(expected[m]) for m in metrics}


def test_evaluate_counts_only_the_given_queries(index_dir, minilm_bi_encoder):
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    qrels = {"q1": {"berlin": 1}, "q2": {"coffee": 1}}
    table = evaluate(index, {"q1": "Berlin population"}, qrels, methods=["bm25"])
    assert table["bm25"]["ndcg@10"] == 1.0  # q2's judgments do not count as a missed query


def test_bad_qrels_and_missing_files(tmp_path, beir_dir):
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\tberlin\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: expected query-id"):
        read_qrels(bad)
    bad.write_text("q1\tberlin\thigh\n")
    with pytest.raises(InputError, match=r"bad.tsv:1: score 'high'"):
        read_qrels(bad)
    with pytest.raises(InputError, match="no such qrels file"):
        load_beir(beir_dir, "dev")
    (beir_dir / "qrels" / "test.tsv").write_text("q9\tberlin\t1\n")
    with pytest.raises(InputError, match="judged queries are missing"):
        load_beir(beir_dir, "test")
    with pytest.raises(InputError, match="corpus.jsonl: no such file"):
        load_beir(tmp_path / "nowhere", "test")
