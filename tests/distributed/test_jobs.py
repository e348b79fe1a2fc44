"""Distributed jobs on a local 2-CPU Ray: parity with in-process predict/rank, resume by shard, bad rows, failures."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from crossencoder import CrossEncoder  # noqa: E402
from crossencoder.distributed import (  # noqa: E402
    DistributedJobError,
    JobInputError,
    rank_dataset,
    score_dataset,
)
from crossencoder.errors import ModelNotFoundError  # noqa: E402

# Workers unpickle this module's helpers (CrashOnceModel) by value: the test folder is not on their sys.path.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_rows(n: int) -> list[dict]:
    """Pairs with varied lengths and string ids; rows 7 and 20 (when there) are bad (null / blank text)."""
    rows = [
        {"id": f"p{i}", "text_a": f"question {i} about topic {i % 7}", "text_b": f"answer {i} " + "word " * (i % 11)}
        for i in range(n)
    ]
    if n > 7:
        rows[7]["text_b"] = None
    if n > 20:
        rows[20]["text_a"] = "   "
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def local_ray():
    """One 2-CPU Ray for the whole module (jobs reuse an already started Ray and leave it running)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def scored(local_ray, tiny_model_dir, tmp_path_factory):
    """One 2-worker score job over 50 JSONL rows in 5 shards."""
    root = tmp_path_factory.mktemp("score")
    rows = make_rows(50)
    write_jsonl(root / "pairs.jsonl", rows)
    result = score_dataset(tiny_model_dir, root / "pairs.jsonl", root / "out", num_workers=2, shard_rows=10,
                           batch_size=8, show_progress=False)
    return rows, result


def test_scores_equal_in_process_predict(scored, tiny_model_dir):
    rows, result = scored
    out = pd.read_parquet(result.output_dir)
    good = [r for r in rows if r["id"] not in {"p7", "p20"}]
    expected = CrossEncoder(tiny_model_dir).predict([(r["text_a"], r["text_b"]) for r in good])
    got = dict(zip(out["id"], out["score"]))
    assert sorted(got) == sorted(r["id"] for r in good)
    np.testing.assert_allclose([got[r["id"]] for r in good], expected, atol=1e-5)
    assert dict(zip(out["id"], out["row"])) == {r["id"]: i for i, r in enumerate(rows) if r in good}
    assert result.rows_written == 48 and result.shards == 5 and result.shards_skipped == 0


def test_bad_rows_reported_with_ids_and_lines_not_dropped(scored):
    _, result = scored
    assert result.bad_rows == [
        {"row": 7, "file": "pairs.jsonl", "line": 8, "id": "p7", "reason": "text_b: missing"},
        {"row": 20, "file": "pairs.jsonl", "line": 21, "id": "p20", "reason": "text_a: empty"},
    ]
    listed = [json.loads(line) for line in result.errors_path.read_text().splitlines()]
    assert listed == result.bad_rows


def test_output_folder_holds_only_finished_parts(scored):
    _, result = scored
    names = sorted(p.name for p in result.output_dir.iterdir())
    assert names == ["_done", "_errors.jsonl", "_job.json", *[f"part-{i:06d}.parquet" for i in range(5)]]
    assert len(list((result.output_dir / "_done").iterdir())) == 5


def test_resume_redoes_only_missing_shards(local_ray, tiny_model_dir, tmp_path):
    rows = [r for r in make_rows(40) if r["id"] not in {"p7", "p20"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet", row_group_size=7)
    out = tmp_path / "out"
    first = score_dataset(tiny_model_dir, tmp_path / "pairs.parquet", out, shard_rows=10, show_progress=False)
    before = pd.read_parquet(out).sort_values("row").reset_index(drop=True)
    # Shard 1 lost its file (deleted by hand, its marker left); shard 2 wrote its file but died before its marker.
    (out / "part-000001.parquet").unlink()
    (out / "_done" / "part-000002.json").unlink()
    (out / "part-000002.parquet").write_bytes(b"half a file")
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}

    second = score_dataset(tiny_model_dir, tmp_path / "pairs.parquet", out, shard_rows=10, show_progress=False)

    assert (first.shards, second.shards_skipped) == (4, 2)
    changed = {p.name for p in out.glob("part-*.parquet") if stamps.get(p.name) != p.stat().st_mtime_ns}
    assert changed == {"part-000001.parquet", "part-000002.parquet"}
    after = pd.read_parquet(out).sort_values("row").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert second.rows_written == len(rows) and not list(out.glob(".*tmp"))


def test_resume_refuses_a_different_job(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(30))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_job.json").write_text(json.dumps({"kind": "score", "shard_rows": 99}))
    (tmp_path / "out" / "_done").mkdir()
    (tmp_path / "out" / "_done" / "part-000000.json").write_text(json.dumps({"rows": 99, "bad": []}))
    with pytest.raises(JobInputError, match="different job .*shard_rows"):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=10)


def test_symmetric_job_scores_both_orders_and_resume_keeps_the_setting(local_ray, tiny_model_dir, tmp_path):
    rows = make_rows(7)  # no bad rows below 7
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", symmetric=True, shard_rows=4,
                  show_progress=False)
    out = pd.read_parquet(tmp_path / "out").sort_values("row")
    pairs = [(r["text_a"], r["text_b"]) for r in rows]
    np.testing.assert_allclose(out["score"], CrossEncoder(tiny_model_dir).predict(pairs, symmetric=True), atol=1e-5)
    with pytest.raises(JobInputError, match="different job .*symmetric"):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=4)


def test_missing_text_column_is_named(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": 1, "query": "q", "passage": "p"}])
    with pytest.raises(JobInputError, match=r"pairs.jsonl: no column 'text_a', 'text_b' \(columns: id, query, passage"):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out")


def test_classifier_writes_label_and_probabilities(local_ray, tiny_nli_model_dir, tmp_path):
    rows = [r for r in make_rows(12) if r["id"] != "p7"]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = score_dataset(tiny_nli_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=5,
                           show_progress=False)
    out = pd.read_parquet(result.output_dir).sort_values("row")
    model = CrossEncoder(tiny_nli_model_dir)
    pairs = [(r["text_a"], r["text_b"]) for r in rows]
    expected = model.predict(pairs, apply_softmax=True)
    got = np.array([[p["contradiction"], p["entailment"], p["neutral"]] for p in out["probabilities"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(out["label"]) == model.predict_labels(pairs)


def test_rank_dataset_equals_rank_top_k(local_ray, tiny_model_dir, tmp_path):
    queries = [
        {"query_id": 10 + q, "query": f"question about topic {q}",
         "candidates": [f"passage {c} on topic {(q + c) % 4} " + "filler " * c for c in range(6)]}
        for q in range(5)
    ]
    queries[3]["candidates"][2] = ""
    pq.write_table(pa.Table.from_pylist(queries), tmp_path / "cands.parquet")
    result = rank_dataset(tiny_model_dir, tmp_path / "cands.parquet", tmp_path / "out", top_k=3, num_workers=2,
                          shard_rows=2, show_progress=False)
    out = pd.read_parquet(result.output_dir)
    model = CrossEncoder(tiny_model_dir)
    for q in queries[:3] + queries[4:]:
        hits = out[out["id"] == q["query_id"]].sort_values("rank")
        expected = model.rank(q["query"], q["candidates"], top_k=3)
        assert list(hits["rank"]) == [1, 2, 3]
        assert list(hits["corpus_id"]) == [h["corpus_id"] for h in expected]
        np.testing.assert_allclose(hits["score"], [h["score"] for h in expected], atol=1e-5)
    assert 13 not in set(out["id"])
    assert result.bad_rows == [
        {"row": 3, "file": "cands.parquet", "file_row": 3, "id": 13, "reason": "candidates[2]: empty"},
    ]


class CrashOnceModel:
    """A CrossEncoder whose first predict() anywhere kills its worker process (flag file shared by all actors)."""

    def __init__(self, path: str, flag: str) -> None:
        self.model = CrossEncoder(path)
        self.flag = flag

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict(self, *args, **kwargs):
        try:
            os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return self.model.predict(*args, **kwargs)
        os._exit(1)


def test_dead_worker_is_restarted_and_its_shard_retried(local_ray, tiny_model_dir, tmp_path):
    rows = make_rows(20)
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    flag = tmp_path / "crashed"
    factory = functools.partial(CrashOnceModel, str(tiny_model_dir), str(flag))
    result = score_dataset(factory, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=10, show_progress=False)
    assert flag.exists()  # a worker really died
    assert result.rows_written == 19  # row 7 is bad; every other row was scored
    assert sorted(pd.read_parquet(result.output_dir)["row"]) == [i for i in range(20) if i != 7]


def test_worker_error_reaches_the_caller(local_ray, tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(3))
    with pytest.raises((DistributedJobError, ModelNotFoundError), match="no-such-model"):
        score_dataset(str(tmp_path / "no-such-model"), tmp_path / "pairs.jsonl", tmp_path / "out",
                      show_progress=False)
    assert not list((tmp_path / "out").glob("part-*"))
    # Nothing was finished, so the corrected command runs in the same folder (no "different job" refusal).
    result = score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", show_progress=False)
    assert result.rows_written == 3


def test_resume_refuses_another_model_or_rank_setting(local_ray, tiny_model_dir, tiny_nli_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(6))
    score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3, show_progress=False)
    (tmp_path / "out" / "_done" / "part-000001.json").unlink()  # one shard left to do
    # Finishing it with another model, or other load options, would mix two models' scores in one table.
    with pytest.raises(JobInputError, match="different job .*model"):
        score_dataset(tiny_nli_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3)
    with pytest.raises(JobInputError, match="different job .*model"):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3,
                      model_kwargs={"max_length": 8})
    # Where and how fast it runs may change (a job started on CPU finishing on a GPU): same scores.
    resumed = score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3,
                            model_kwargs={"device": "cpu", "max_batch_tokens": 64}, show_progress=False)
    assert (resumed.shards, resumed.shards_skipped) == (2, 1)
    rows = [{"query_id": "q1", "query": "berlin", "candidates": ["a", "b", "c"]}]
    write_jsonl(tmp_path / "cands.jsonl", rows)
    rank_dataset(tiny_model_dir, tmp_path / "cands.jsonl", tmp_path / "ranked", top_k=2, show_progress=False)
    with pytest.raises(JobInputError, match="different job .*rank"):
        rank_dataset(tiny_model_dir, tmp_path / "cands.jsonl", tmp_path / "ranked", top_k=3)


def test_ids_keep_their_type_when_the_first_lines_have_none(local_ray, tiny_model_dir, tmp_path, monkeypatch):
    # The JSONL columns come from a file's first lines (3 here, 1,000 by default); these have null ids only.
    monkeypatch.setattr("crossencoder.distributed.shards.SCHEMA_SAMPLE_LINES", 3)
    rows = make_rows(7)
    for i, row in enumerate(rows):
        row["id"] = None if i in (0, 1, 2, 4) else 2**60 + i  # exact in int64, not in pandas' float64
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3,
                           show_progress=False)
    out = pd.read_parquet(tmp_path / "out").sort_values("row")
    assert str(out["id"].dtype) == "int64" and out["id"].tolist() == [2**60 + 3, 2**60 + 5, 2**60 + 6]
    assert [(r["row"], r["reason"]) for r in result.bad_rows] == [(i, "id: missing") for i in (0, 1, 2, 4)]


def test_an_id_column_null_in_every_row_is_taken_as_absent(local_ray, tiny_model_dir, tmp_path, caplog):
    rows = [{**r, "id": None} for r in make_rows(4)]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", show_progress=False)
    assert list(pd.read_parquet(tmp_path / "out").columns) == ["row", "score"] and not result.bad_rows
    assert "column 'id' is null in every row; rows are identified by their row number only" in caplog.text


def test_jsonl_schema_is_not_the_first_line_alone(local_ray, tiny_model_dir, tmp_path, caplog):
    rows = make_rows(5)
    del rows[0]["id"], rows[0]["text_b"]  # the first line lacks the id and a text: only that row is bad
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", show_progress=False)
    out = pd.read_parquet(tmp_path / "out").sort_values("row")
    assert out["row"].tolist() == [1, 2, 3, 4] and out["id"].tolist() == ["p1", "p2", "p3", "p4"]
    assert [r["row"] for r in result.bad_rows] == [0]
    # No id to name it by: the log names its file and line.
    assert "1 row(s) could not be processed (ids/lines: pairs.jsonl:1)" in caplog.text


def test_a_muted_ray_logger_stays_muted_through_import_and_init(monkeypatch):
    # Importing Ray Data resets the "ray.data" level (a fresh interpreter: this one imported it already).
    probe = ("import logging; logging.getLogger('ray.data').setLevel(logging.ERROR); "
             "from crossencoder.distributed.jobs import _import_ray; _import_ray(); "
             "print(logging.getLogger('ray.data').level)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(logging.ERROR)

    from crossencoder.distributed import jobs

    calls = []
    fake_ray = type("FakeRay", (), {"init": staticmethod(lambda **kwargs: calls.append(kwargs))})
    monkeypatch.setattr(logging.getLogger("ray"), "level", logging.ERROR)
    jobs._start_ray(fake_ray, None, 1, 1)
    monkeypatch.setattr(logging.getLogger("ray"), "level", logging.NOTSET)
    jobs._start_ray(fake_ray, "auto", 1, 1)
    assert [c["logging_level"] for c in calls] == [logging.ERROR, logging.WARNING]


def test_a_folder_of_mixed_files_keeps_row_numbers_and_reports_undecodable_rows(local_ray, tiny_model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("")  # an empty first file says nothing about the columns
    rows = make_rows(7)
    lines = [json.dumps(r).encode() for r in rows[:3]]
    lines[1] = lines[1].replace(b"question", b"\xff")  # not UTF-8
    lines[2] = lines[2].replace(b"question", rb"\ud800")  # a lone surrogate: no tokenizer takes it
    (tmp_path / "in" / "b.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows[6]["text_a"] = None
    pq.write_table(pa.Table.from_pylist(rows[3:]), tmp_path / "in" / "c.parquet")

    # Shards of 2 rows: bad rows in the second shard of each file are located from that file's start.
    result = score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "out", shard_rows=2, show_progress=False)

    out = pd.read_parquet(tmp_path / "out").sort_values("row")
    assert out["row"].tolist() == [0, 3, 4, 5] and out["id"].tolist() == ["p0", "p3", "p4", "p5"]
    expected = CrossEncoder(tiny_model_dir).predict([(r["text_a"], r["text_b"]) for r in rows[:1] + rows[3:6]])
    np.testing.assert_allclose(out["score"], expected, atol=1e-5)
    assert result.bad_rows == [
        {"row": 1, "file": "b.jsonl", "line": 2, "reason": "not valid UTF-8"},
        {"row": 2, "file": "b.jsonl", "line": 3, "id": "p2",
         "reason": r"text_a: not valid Unicode: it holds a lone surrogate '\ud800'"},
        {"row": 6, "file": "c.parquet", "file_row": 3, "id": "p6", "reason": "text_a: missing"},
    ]


def test_a_file_missing_a_column_is_named_before_any_work(tiny_model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", make_rows(3))
    pq.write_table(pa.Table.from_pylist([{"text_a": "q", "text_b": "p"}]), tmp_path / "in" / "b.parquet")
    with pytest.raises(JobInputError, match=r"b.parquet: no column 'id'"):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "out")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(JobInputError, match=r"empty.jsonl: no rows"):
        score_dataset(tiny_model_dir, tmp_path / "empty.jsonl", tmp_path / "out2")


@pytest.mark.parametrize("kwargs, message", [
    ({"num_cpus_per_worker": -1}, "num_cpus_per_worker must be 0 or more, got -1"),
    ({"num_gpus_per_worker": -0.5}, "num_gpus_per_worker must be 0 or more, got -0.5"),
])
def test_negative_resources_are_refused(tiny_model_dir, tmp_path, kwargs, message):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    with pytest.raises(JobInputError, match=message):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", **kwargs)


def test_more_gpus_than_the_local_ray_has_are_refused_not_waited_for(tiny_model_dir, tmp_path):
    # Only a Ray the job starts itself is known to be this machine (a caller's may be a cluster that can grow), so
    # the job runs in a fresh interpreter, where no Ray is running yet.
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    script = ("from crossencoder.distributed import score_dataset\n"
              f"score_dataset({str(tiny_model_dir)!r}, {str(tmp_path / 'pairs.jsonl')!r}, {str(tmp_path / 'out')!r}, "
              "num_gpus_per_worker=1000)")
    import subprocess

    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "JobInputError: each worker asks for 1000 GPU, but this Ray has" in failed.stderr


class OutOfMemoryModel:
    """A CrossEncoder whose predict() fails as a model out of memory does (a bare exception, no message)."""

    def __init__(self, path: str) -> None:
        self.model = CrossEncoder(path)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict(self, *args, **kwargs):
        raise MemoryError()


def test_a_worker_exception_without_a_message_is_named(local_ray, tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    with pytest.raises(DistributedJobError, match=r"a worker failed: MemoryError \(finished shards are kept"):
        score_dataset(functools.partial(OutOfMemoryModel, str(tiny_model_dir)), tmp_path / "pairs.jsonl",
                      tmp_path / "out", show_progress=False)


def test_bad_queries_and_candidates_are_named_in_one_form():
    from crossencoder.distributed.workers import _candidates_problem

    assert _candidates_problem("q", "one passage") == "candidates: not a list (str)"
    assert _candidates_problem("q", None) == "candidates: missing"
    assert _candidates_problem("q", []) == "candidates: empty list"
    # Every reason in one form, "name: problem", the shared Unicode check's included.
    assert _candidates_problem("q\ud800", ["p"]) == r"query: not valid Unicode: it holds a lone surrogate '\ud800'"
    assert _candidates_problem("q", ["p", "\udc00"]).startswith("candidates[1]: not valid Unicode: ")


def test_rank_with_a_classifier_is_a_bad_input_not_a_failure_to_retry(local_ray, tiny_nli_model_dir, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"query_id": "q1", "query": "berlin", "candidates": ["a", "b"]}])
    with pytest.raises(JobInputError, match="rank needs a 1-label model; this one classifies pairs into 3 labels"):
        rank_dataset(tiny_nli_model_dir, tmp_path / "c.jsonl", tmp_path / "ranked", show_progress=False)


@pytest.fixture(scope="module")
def prompted_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny re-ranker saved with two prompts, ``query`` being its default."""
    path = tmp_path_factory.mktemp("prompted")
    CrossEncoder(tiny_model_dir, prompts={"query": "query: ", "web": "web search: "},
                 default_prompt_name="query").save(path)
    return path


def test_score_job_with_a_prompt_equals_predict_and_resume_keeps_the_prompt(local_ray, prompted_model_dir,
                                                                             tmp_path):
    rows = make_rows(7)  # no bad rows below 7
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    pairs = [(r["text_a"], r["text_b"]) for r in rows]
    model = CrossEncoder(prompted_model_dir)
    result = score_dataset(prompted_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", prompt="find: ",
                           shard_rows=3, show_progress=False)
    out = pd.read_parquet(result.output_dir).sort_values("row")
    expected = model.predict(pairs, prompt="find: ")
    np.testing.assert_allclose(out["score"], expected, atol=1e-5)
    assert not np.allclose(expected, model.predict(pairs), atol=1e-4)  # the prompt changes the scores
    # A resume with another prompt (or none: the model's default) would mix two prompts' scores in one table.
    (tmp_path / "out" / "_done" / "part-000001.json").unlink()
    for other in ({"prompt": "search: "}, {"prompt_name": "web"}, {}):
        with pytest.raises(JobInputError, match="different job .*prompt"):
            score_dataset(prompted_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", shard_rows=3, **other)
    resumed = score_dataset(prompted_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", prompt="find: ",
                            shard_rows=3, show_progress=False)
    assert (resumed.shards, resumed.shards_skipped) == (3, 2)


def test_rank_job_with_a_prompt_name_equals_rank(local_ray, prompted_model_dir, tmp_path):
    queries = [{"query_id": q, "query": f"question about topic {q}",
                "candidates": [f"passage {c} on topic {(q + c) % 3}" for c in range(4)]} for q in range(3)]
    write_jsonl(tmp_path / "cands.jsonl", queries)
    result = rank_dataset(prompted_model_dir, tmp_path / "cands.jsonl", tmp_path / "out", prompt_name="web",
                          top_k=3, shard_rows=2, show_progress=False)
    out = pd.read_parquet(result.output_dir)
    model = CrossEncoder(prompted_model_dir)
    for q in queries:
        hits = out[out["id"] == q["query_id"]].sort_values("rank")
        expected = model.rank(q["query"], q["candidates"], top_k=3, prompt_name="web")
        assert list(hits["corpus_id"]) == [h["corpus_id"] for h in expected]
        np.testing.assert_allclose(hits["score"], [h["score"] for h in expected], atol=1e-5)
    default = model.rank(queries[0]["query"], queries[0]["candidates"], top_k=3)
    assert not np.allclose([h["score"] for h in default], [h["score"] for h in expected], atol=1e-4)


def test_an_unknown_prompt_name_is_a_bad_input_naming_the_prompts(local_ray, prompted_model_dir, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    with pytest.raises(JobInputError, match=r"prompt_name='wbe' is not one of this model's prompts: .*'web'"):
        score_dataset(prompted_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", prompt_name="wbe",
                      show_progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": 3}, "prompt must be a str, got int"),
    ({"prompt_name": ["web"]}, "prompt_name must be a str, got list"),
    ({"prompt": "find: ", "prompt_name": 3}, "prompt_name must be a str, got int"),
    ({"prompt": "\ud800: "}, "prompt is not valid Unicode: it holds a lone surrogate"),
])
def test_prompt_arguments_that_are_not_text_are_refused_before_any_work(tiny_model_dir, tmp_path, kwargs, message):
    write_jsonl(tmp_path / "pairs.jsonl", make_rows(2))
    with pytest.raises(JobInputError, match=message):
        score_dataset(tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_prompt_given_with_a_prompt_name_wins_with_one_warning(caplog):
    from crossencoder.distributed.jobs import _checked_prompt

    assert _checked_prompt("find: ", "web") is None  # neither recorded with the job nor sent to the actors
    assert caplog.text.count("using prompt and ignoring prompt_name='web'") == 1
    assert _checked_prompt(None, "web") == "web" and _checked_prompt("", None) is None
