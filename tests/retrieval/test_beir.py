"""BEIR loading and evaluation tables."""

from __future__ import annotations

import logging

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
    read_queries,
    search_many,
)
from crossencoder.retrieval.beir import unknown_judged_documents

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
    with pytest.raises(InputError, match=r"bad.tsv:2: expected 3 columns"):
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


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"q1\tberlin\t1\nq5\td13\t0.7\n", r"bad.tsv:2: score '0.7' is not an integer grade"),
        (b"q1\tberlin\t1\n\nq2\tcaf\xe9\t1\n", r"bad.tsv:3: not valid UTF-8"),
    ],
    ids=["fractional-grade", "not-utf8"],
)
def test_qrels_errors_name_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_qrels(bad)


def test_integral_grades_and_header_are_read(tmp_path):
    qrels = tmp_path / "q.tsv"
    qrels.write_bytes(b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\n\nq1\tberlin\t2.0\nq1\tparis\t-1\n")
    assert read_qrels(qrels) == {"q1": {"berlin": 2, "paris": -1}}


def test_qrels_with_trailing_tabs_keep_their_columns(tmp_path):
    # Spreadsheet exports end rows with a tab; read as a fourth (TREC) column, the score would be missing.
    qrels = tmp_path / "q.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\t\nq1\tberlin\t2\t\nq1\tparis\t1\t\t\nq2\t0\tcoffee\t1\t\n")
    assert read_qrels(qrels) == {"q1": {"berlin": 2, "paris": 1}, "q2": {"coffee": 1}}


def test_empty_query_text_names_file_line_and_id(beir_dir):
    write_jsonl(beir_dir / "queries.jsonl", [QUERIES[0], {"_id": "q2", "text": "  "}])
    with pytest.raises(InputError, match=r"queries.jsonl:2: query 'q2' has an empty text"):
        load_beir(beir_dir, "test")


def test_judgments_must_name_documents_of_the_index(index_dir, minilm_bi_encoder, caplog):
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    queries = {"q1": "Berlin population", "q2": "coffee beans"}
    with pytest.raises(InputError, match=r"qrels/test.tsv: none of the 2 judged documents is in the index .*'BERLIN', "
                                         r"'COFFEE'"):
        unknown_judged_documents(index, {"q1": {"BERLIN": 1}, "q2": {"COFFEE": 1}}, source="qrels/test.tsv")
    with pytest.raises(InputError, match="none of the 2 judged documents"):
        evaluate(index, queries, {"q1": {"BERLIN": 1}, "q2": {"COFFEE": 1}}, methods=["bm25"])
    with caplog.at_level(logging.WARNING, logger="crossencoder.retrieval.beir"):
        table = evaluate(index, queries, {"q1": {"berlin": 1}, "q2": {"COFFEE": 1}}, methods=["bm25"])
    assert table["bm25"]["recall@100"] == 0.5  # the unknown judgment counts as not retrieved ...
    assert "1 judged documents are not in the index" in caplog.text and "'COFFEE'" in caplog.text  # ... loudly


def test_evaluate_scores_the_order_the_search_returns(index_dir, minilm_bi_encoder, monkeypatch):
    # Reciprocal-rank fusion ties often (a document ranked r by BM25 only and another ranked r by dense only): the
    # metrics must score the order search() returns, not an order the metric library picks among equal scores.
    from crossencoder.retrieval import Hit

    tied = [Hit("berlin", "", "", 1 / 61)] + [Hit(f"other{i}", "", "", 1 / 61) for i in range(49)]
    monkeypatch.setattr("crossencoder.retrieval.beir.search_many", lambda index, texts, *a, **k: [tied for _ in texts])
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    table = evaluate(index, {"q1": "Berlin"}, {"q1": {"berlin": 1}}, methods=["hybrid"])
    assert table["hybrid"] == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}


def test_trec_style_qrels_are_read(tmp_path):
    # MS MARCO's qrels.dev.tsv and TREC qrels: query-id, iteration, corpus-id, score (tabs or spaces). Read as BEIR
    # columns, "0" would become every query's judged document, with a grade of millions.
    path = tmp_path / "qrels.tsv"
    path.write_text("1102432\t0\t2026790\t1\n1102431\t0\t7066866\t1\n")
    assert read_qrels(path) == {"1102432": {"2026790": 1}, "1102431": {"7066866": 1}}
    path.write_text("q1 0 d1 2\nq1 Q0 d2 0\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}}
    path.write_text("q1\tberlin\t1\nq1\tparis\t1\t0\textra\n")
    with pytest.raises(InputError, match=r"qrels.tsv:2: expected 3 columns \(query-id, corpus-id, score\) or 4"):
        read_qrels(path)


@pytest.mark.parametrize("query_id", [None, "", [1]])
def test_query_ids_must_be_strings_or_integers(beir_dir, query_id):
    write_jsonl(beir_dir / "queries.jsonl", [QUERIES[0], {"_id": query_id, "text": "coffee"}])
    with pytest.raises(InputError, match=r"queries.jsonl:2: field '_id' must be a non-empty string"):
        load_beir(beir_dir, "test")


def test_integer_ids_in_python_judgments_match_integer_corpus_ids(tmp_path, tiny_model_dir):
    # read_corpus keeps {"_id": 0} as "0"; judgments built in Python with the same integers must find it.
    from crossencoder.retrieval import BiEncoder, build_index, mine_training_pairs

    docs = [{"_id": i, "text": t} for i, t in enumerate(["berlin has people", "paris is french", "coffee beans"])]
    index = build_index(write_jsonl(tmp_path / "c.jsonl", docs), tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir),
                        show_progress_bar=False)
    queries, qrels = {1: "berlin people"}, {1: {0: 1}}
    assert evaluate(index, queries, qrels, methods=["bm25"])["bm25"]["mrr@10"] == 1.0
    pairs = mine_training_pairs(index, queries, qrels, method="bm25", num_negatives=1)
    assert pairs == [("berlin people", "berlin has people", 1.0)]


def test_lone_surrogate_in_a_query_names_file_and_line(beir_dir):
    (beir_dir / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "cut \\udc00"}\n')
    with pytest.raises(InputError, match=r"queries.jsonl:2: field 'text' is not valid Unicode"):
        load_beir(beir_dir, "test")


def test_recall_at_100_looks_100_deep_whatever_the_re_rank_depth(index_dir, minilm_bi_encoder, tiny_model_dir):
    # Re-ranking only the top candidate used to cut every row, first stage included, to one document: the
    # "Recall@100" column then held recall at 1 (0.0 here), and rows differed with the re-rank depth.
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    queries, qrels = {"q1": "Berlin population"}, {"q1": {"paris": 1}}
    assert search_many(index, ["Berlin population"], "dense", top_k=1)[0][0].id != "paris"
    deep = evaluate(index, queries, qrels, methods=["dense"])
    shallow = evaluate(index, queries, qrels, methods=["dense"], reranker=CrossEncoder(tiny_model_dir), candidates=1,
                       fusion=True)
    assert shallow["dense"] == deep["dense"] and deep["dense"]["recall@100"] == 1.0
    # Below the re-ranked candidate the first stage's order continues, as if the re-ranker had stopped there.
    assert shallow["dense + rerank"] == shallow["dense + rerank + fusion"] == shallow["dense"]


def test_queries_take_an_id_field_as_the_corpus_does(tmp_path):
    # read_corpus accepts "id" where "_id" is missing; a queries file written the same way was refused.
    path = write_jsonl(tmp_path / "queries.jsonl", [{"id": "q1", "text": "berlin"}, {"id": 2, "text": "paris"}])
    assert read_queries(path) == {"q1": "berlin", "2": "paris"}
    write_jsonl(path, [{"text": "berlin"}])
    with pytest.raises(InputError, match=r"queries.jsonl:1: missing field '_id'"):
        read_queries(path)
