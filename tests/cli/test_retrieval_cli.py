"""`crossencoder index`, `search`, `mine` and `beir`: outputs and one-line errors."""

from __future__ import annotations

import json

import pytest

from crossencoder import CrossEncoder
from crossencoder.cli.main import main
from crossencoder.retrieval import BiEncoder, Index, search

DOCS = [
    {"_id": "berlin", "title": "Berlin", "text": "Berlin has a population of 3.5 million inhabitants."},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"_id": "coffee", "title": "", "text": "Coffee is brewed from roasted coffee beans."},
]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, tiny_model_dir):
    """An index built by the CLI with the tiny model as bi-encoder (fast; scores are arbitrary)."""
    root = tmp_path_factory.mktemp("cli-index")
    corpus = write_jsonl(root / "corpus.jsonl", DOCS)
    assert main(["index", str(corpus), "--out", str(root / "idx"), "--bi-encoder", str(tiny_model_dir)]) == 0
    return root / "idx"


def test_index_builds_a_valid_index(cli_index, tiny_model_dir):
    index = Index.open(cli_index)
    assert index.count == 3 and index.manifest["bi_encoder"]["model"] == str(tiny_model_dir)


def test_search_text_output(cli_index, capsys):
    code, out, _ = run(["search", cli_index, "population of Berlin", "--method", "bm25"], capsys)
    assert code == 0
    score, doc_id, text = out.splitlines()[0].split("\t")
    assert doc_id == "berlin" and text == "Berlin " + DOCS[0]["text"] and float(score) > 0
    assert len(out.splitlines()) == 1  # BM25 leaves out documents without a shared term


def test_search_json_with_rerank_matches_the_library(cli_index, tiny_model_dir, capsys):
    code, out, _ = run(["search", cli_index, "berlin population", "--rerank-model", tiny_model_dir, "--top-k", "2",
                        "--candidates", "3", "--json"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = search(Index.open(cli_index, bi_encoder=BiEncoder(tiny_model_dir)), "berlin population", top_k=2,
                      candidates=3, reranker=CrossEncoder(tiny_model_dir))
    assert [r["id"] for r in rows] == [h.id for h in expected] and [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["scores"]["rerank"] == pytest.approx(expected[0].score, abs=1e-5)
    assert {"bm25", "dense", "hybrid", "rerank"} >= set(rows[0]["scores"]) >= {"hybrid", "rerank"}
    code, out, _ = run(["search", cli_index, "berlin population", "--rerank-model", tiny_model_dir, "--top-k", "2",
                        "--candidates", "3", "--json", "--fuse"], capsys)
    fused = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(fused) == 2 and all(r["score"] == r["scores"]["fused"] for r in fused)


def test_mine_writes_training_pairs(cli_index, tmp_path, capsys):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "berlin population"}])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tberlin\t3\n")
    out_file = tmp_path / "train.jsonl"
    code, _, err = run(["mine", cli_index, "--queries", queries, "--qrels", qrels, "--out", out_file,
                        "--num-negatives", "2"], capsys)
    assert code == 0 and "wrote 3 pairs" in err
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert rows[0] == {"query": "berlin population", "passage": "Berlin " + DOCS[0]["text"], "label": 1.0}
    assert [r["label"] for r in rows[1:]] == [0.0, 0.0] and not (tmp_path / "train.jsonl.tmp").exists()

    lists_file = tmp_path / "lists.jsonl"
    code, _, err = run(["mine", cli_index, "--queries", queries, "--qrels", qrels, "--out", lists_file,
                        "--num-negatives", "2", "--group-size", "3"], capsys)
    assert code == 0 and "wrote 1 lists (3 pairs)" in err
    (listwise,) = [json.loads(line) for line in lists_file.read_text().splitlines()]
    assert sorted(zip(listwise["labels"], listwise["documents"])) == sorted((r["label"], r["passage"]) for r in rows)
    code, _, err = run(["mine", cli_index, "--queries", queries, "--qrels", qrels, "--out", lists_file,
                        "--group-size", "1"], capsys)
    assert code == 1 and "--group-size must be at least 2" in err


def test_mined_lists_train_with_listnet(cli_index, tiny_model_dir, tmp_path, capsys):
    lists = write_jsonl(tmp_path / "lists.jsonl", [{"query": "berlin", "documents": ["Berlin is big", "Cats purr"],
                                                     "labels": [1.0, 0.0]}])
    common = ["train", "-m", tiny_model_dir, "--train", lists, "--max-steps", "1"]
    code, out, _ = run([*common, "--loss", "listnet", "--label-temperature", "0.25", "-o", tmp_path / "r", "--json"],
                       capsys)
    assert code == 0 and json.loads(out)["loss"] == "listnet"
    assert "label_temperature" in (tmp_path / "r" / "final" / "README.md").read_text()
    code, _, err = run([*common, "--label-temperature", "0.25", "-o", tmp_path / "r2"], capsys)
    assert code == 1 and "--label-temperature applies to --loss listnet, not mnrl" in err


def test_beir_table_and_json(tmp_path, tiny_model_dir, capsys):
    write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "coffee beans"}, {"_id": "q2", "text": "paris"}])
    (tmp_path / "qrels").mkdir()
    # q2 has no relevant document: the metrics leave it out, and the header says so.
    (tmp_path / "qrels" / "dev.tsv").write_text("q1\tcoffee\t1\nq2\tparis\t0\n")
    common = ["beir", tmp_path, "--split", "dev", "--bi-encoder", tiny_model_dir, "--index", tmp_path / "idx"]
    code, out, _ = run([*common, "--rerank-model", tiny_model_dir, "--json"], capsys)
    assert code == 0
    table = json.loads(out)
    assert list(table) == ["bm25", "dense", "hybrid", "bm25 + rerank", "dense + rerank", "hybrid + rerank"]
    code, out, _ = run([*common, "--rerank-model", tiny_model_dir, "--json", "--fuse"], capsys)
    assert code == 0 and "dense + rerank + fusion" in json.loads(out)
    assert table["bm25"] == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}
    assert Index.open(tmp_path / "idx").count == 3  # built once, then reused
    code, out, _ = run(common, capsys)
    assert code == 0 and "| bm25 | 100.0 | 100.0 | 100.0 |" in out and "rerank" not in out
    assert "(dev: 1 queries with a relevant document, 1 without one left out)" in out


def test_beir_refuses_an_index_of_another_corpus(tmp_path, cli_index, capsys):
    write_jsonl(tmp_path / "corpus.jsonl", DOCS[:2])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "x"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q1\tparis\t1\n")
    code, _, err = run(["beir", tmp_path, "--index", cli_index], capsys)
    assert code == 1 and "built from another corpus" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "{missing}", "q"], "no such index folder"),
        (["search", "{bad}", "q"], "bad.jsonl: is a file, not an index folder"),
        (["search", "{index}", "q", "--top-k", "0"], "--top-k must be a positive integer"),
        (["search", "{index}", "q", "--long-documents", "max"], "--long-documents needs --rerank-model"),
        (["search", "{index}", "q", "--fuse"], "--fuse needs --rerank-model"),
        (["index", "{bad}", "--out", "{out}"], "bad.jsonl:2: duplicate id 'a'"),
        (["mine", "{index}", "--queries", "{bad}", "--qrels", "{bad}", "--out", "{out}", "--num-negatives", "-1"],
         "--num-negatives must be 0 or more, got -1"),
        (["mine", "{index}", "--queries", "{bad}", "--qrels", "{bad}", "--out", "{out}", "--skip-top", "-2"],
         "--skip-top must be 0 or more, got -2"),
        (["index", "{empty}", "--out", "{out}"], "the corpus is empty"),
    ],
)
def test_errors_are_one_line(argv, message, cli_index, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    paths = {"missing": tmp_path / "nope", "index": cli_index, "bad": bad, "empty": tmp_path / "empty.jsonl",
             "out": tmp_path / "out"}
    code, out, err = run([a.format(**paths) for a in argv], capsys)
    assert code == 1 and out == ""
    assert err.startswith("crossencoder: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_mine_refuses_bad_judgments_and_queries_in_one_line(cli_index, tmp_path, capsys):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "berlin population"}])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tBERLIN\t1\nq1\tParis\t0\n")  # ids differ from the corpus's by case
    out_file = tmp_path / "train.jsonl"
    common = ["mine", cli_index, "--queries", queries, "--qrels", qrels, "--out", out_file]
    code, _, err = run(common, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"{qrels}: none of the 2 judged documents is in the index" in err and "'BERLIN', 'Paris'" in err
    assert not out_file.exists()  # not a file of negatives only
    qrels.write_text("q1\tberlin\t1\n")
    write_jsonl(queries, [{"_id": "q0", "text": "paris"}, {"_id": "q1", "text": ""}])
    code, _, err = run(common, capsys)
    assert code == 1 and f"{queries}:2: query 'q1' has an empty text" in err and not out_file.exists()


def test_beir_refuses_unknown_judged_ids_and_another_bi_encoder(tmp_path, tiny_model_dir, caplog, capsys):
    write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "coffee beans"}, {"_id": "q2", "text": "paris"}])
    (tmp_path / "qrels").mkdir()
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("q1\tCOFFEE\t1\nq2\tPARIS\t1\n")
    common = ["beir", tmp_path, "--bi-encoder", tiny_model_dir, "--index", tmp_path / "idx", "--json"]
    code, out, err = run(common, capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{qrels}: none of the 2 judged documents is in the index" in err and "'COFFEE', 'PARIS'" in err
    qrels.write_text("q1\tcoffee\t1\nq2\tPARIS\t1\n")
    code, out, _ = run(common, capsys)
    assert code == 0 and json.loads(out)["bm25"]["recall@100"] == 0.5
    assert "1 judged documents are not in the index" in caplog.text and "'PARIS'" in caplog.text
    code, out, err = run([*common[:2], "--bi-encoder", "another-model", *common[4:]], capsys)
    assert code == 1 and out == "" and "was built with bi-encoder" in err and "'another-model'" in err


def test_damaged_text_store_is_a_one_line_error(cli_index, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(cli_index, damaged)
    with open(damaged / "docs.sqlite", "r+b") as f:  # same size: search checks sizes, not checksums
        f.write(b"\xff" * 64)
    code, out, err = run(["search", damaged, "berlin", "--method", "bm25"], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{damaged / 'docs.sqlite'}: unreadable" in err and f"--out {damaged} --overwrite" in err


def test_mine_out_never_overwrites_unasked_and_dash_is_stdout(cli_index, tmp_path, capsys):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "berlin population"}])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tberlin\t1\n")
    common = ["mine", cli_index, "--queries", queries, "--qrels", qrels, "--num-negatives", "1"]
    taken = tmp_path / "train.jsonl"
    taken.write_text("keep me\n")
    code, _, err = run([*common, "--out", taken], capsys)
    assert code == 1 and "exists; pass --overwrite" in err and taken.read_text() == "keep me\n"
    code, _, err = run([*common, "--out", tmp_path], capsys)
    assert code == 1 and "is a folder; name the JSONL file" in err
    code, out, err = run([*common, "--out", "-"], capsys)
    assert code == 0 and "to <stdout>" in err and [json.loads(line)["label"] for line in out.splitlines()] == [1, 0]
    code, _, _ = run([*common, "--out", taken, "--overwrite"], capsys)
    assert code == 0 and [json.loads(line) for line in taken.read_text().splitlines()] == [json.loads(line)
                                                                                          for line in out.splitlines()]


def test_mine_runs_the_query_encoder_on_the_device_asked(cli_index, tmp_path, monkeypatch, capsys):
    from crossencoder.retrieval import index as index_module

    devices = []

    class RecordingBiEncoder(BiEncoder):
        def __init__(self, *args, device=None, **kwargs):
            devices.append(device)
            super().__init__(*args, device="cpu", **kwargs)  # the device asked need not exist here

    monkeypatch.setattr(index_module, "BiEncoder", RecordingBiEncoder)
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "berlin population"}])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tberlin\t1\n")
    code, _, err = run(["mine", cli_index, "--queries", queries, "--qrels", qrels, "--out", tmp_path / "t.jsonl",
                        "--method", "dense", "--num-negatives", "1", "--device", "cuda:7"], capsys)
    assert code == 0, err
    assert devices == ["cuda:7"]


def test_search_and_mine_take_a_moved_copy_of_the_bi_encoder_and_refuse_another(tmp_path, tiny_model_dir, capsys):
    import shutil

    from crossencoder.testing import make_tiny_cross_encoder

    encoder = shutil.copytree(tiny_model_dir, tmp_path / "encoder")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    assert run(["index", corpus, "--out", tmp_path / "idx", "--bi-encoder", encoder], capsys)[0] == 0
    expected = run(["search", tmp_path / "idx", "berlin population", "--method", "dense"], capsys)[1]
    moved = encoder.rename(tmp_path / "moved")
    code, _, err = run(["search", tmp_path / "idx", "berlin population", "--method", "dense"], capsys)
    assert code == 1 and "cannot be loaded" in err and "(CLI: --bi-encoder COPY)" in err
    # The recorded folder moved: naming its new place is all a user can do short of rebuilding the index.
    assert run(["search", tmp_path / "idx", "berlin population", "--method", "dense", "--bi-encoder", moved],
               capsys) == (0, expected, "")
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "berlin population"}])
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tberlin\t1\n")
    mine = ["mine", tmp_path / "idx", "--queries", queries, "--qrels", qrels, "--out", "-", "--method", "dense"]
    assert run([*mine, "--bi-encoder", moved], capsys)[0] == 0
    # Another model would embed the queries unlike the documents: refused, naming the index's model and the option.
    other = make_tiny_cross_encoder(tmp_path / "other", seed=2)
    for argv in (["search", tmp_path / "idx", "berlin", "--bi-encoder", other], [*mine, "--bi-encoder", other]):
        code, out, err = run(argv, capsys)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
        assert f"was built with bi-encoder {str(encoder)!r}, not --bi-encoder {str(other)!r}" in err
        assert "embeds texts differently" in err
    code, _, err = run(["search", tmp_path / "idx", "berlin", "--bi-encoder", tmp_path / "nope"], capsys)
    assert code == 1 and "--bi-encoder" in err and "cannot be loaded" in err


def test_beir_reuses_an_index_with_a_copy_of_its_bi_encoder_and_builds_into_an_empty_folder(tmp_path,
                                                                                           tiny_model_dir, capsys):
    import shutil

    write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "coffee beans"}])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("q1\tcoffee\t1\n")
    (tmp_path / "idx").mkdir()  # made beforehand, empty: built into, as `crossencoder index` does
    common = ["beir", tmp_path, "--index", tmp_path / "idx", "--json"]
    code, out, err = run([*common, "--bi-encoder", tiny_model_dir], capsys)
    assert code == 0, err
    assert Index.open(tmp_path / "idx").count == 3
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert run([*common, "--bi-encoder", copy], capsys) == (0, out, "")


def test_search_refuses_a_query_that_is_not_valid_unicode(cli_index, capsys):
    # Bytes that are not UTF-8 on the command line reach Python as lone surrogates.
    code, out, err = run(["search", cli_index, "berlin \udcff"], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "The query is not valid Unicode: it holds a lone surrogate '\\udcff'" in err


def test_index_refuses_a_bi_encoder_folder_it_cannot_read_in_one_line(tiny_model_dir, tmp_path, capsys):
    import shutil

    encoder = shutil.copytree(tiny_model_dir, tmp_path / "st")
    (encoder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    code, out, err = run(["index", corpus, "--out", tmp_path / "idx", "--bi-encoder", encoder], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "module 'Dense' is not supported by BiEncoder" in err


def test_search_text_output_escapes_ids_so_each_hit_is_one_line_of_three_columns(tmp_path, tiny_model_dir, capsys):
    ids = ["tab\there", "two\nlines", "back\\slash t", "cr\r"]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": doc_id, "title": "", "text": f"berlin\tpopulation\nnumber {i}"} for i, doc_id in enumerate(ids)])
    assert main(["index", str(corpus), "--out", str(tmp_path / "idx"), "--bi-encoder", str(tiny_model_dir)]) == 0
    capsys.readouterr()
    code, out, _ = run(["search", tmp_path / "idx", "berlin population", "--method", "bm25"], capsys)
    assert code == 0
    rows = [line.split("\t") for line in out.split("\n")[:-1]]
    assert len(rows) == len(ids) and all(len(row) == 3 for row in rows)
    assert sorted(row[1] for row in rows) == sorted(["tab\\there", "two\\nlines", "back\\\\slash t", "cr\\r"])
    assert {row[2] for row in rows} == {f"berlin population number {i}" for i in range(len(ids))}


def test_another_bi_encoder_opens_the_index_once_and_bm25_needs_none(cli_index, tiny_model_dir, tmp_path, monkeypatch,
                                                                      capsys):
    import shutil

    opens = []
    real_open = Index.open.__func__

    def counting_open(cls, *args, **kwargs):
        opens.append(kwargs.get("bi_encoder"))
        return real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Index, "open", classmethod(counting_open))
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    # A copy of the index's bi-encoder: the manifest is read alone, the index opened once, with that encoder.
    code, out, err = run(["search", cli_index, "berlin population", "--method", "dense", "--bi-encoder", copy], capsys)
    assert code == 0 and out, err
    assert len(opens) == 1 and opens[0] is not None
    # bm25 embeds no query: a --bi-encoder that cannot be loaded is not loaded.
    opens.clear()
    code, out, err = run(["search", cli_index, "berlin population", "--method", "bm25", "--bi-encoder",
                          tmp_path / "nope"], capsys)
    assert code == 0 and out, err
    assert opens == [None]
