"""Ids of distributed jobs round-trip as given: one type per job, each bad id reported as a bad row (no Ray here)."""

from __future__ import annotations

import json

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from crossencoder.distributed import JobInputError, score_dataset  # noqa: E402
from crossencoder.distributed.jobs import _id_type  # noqa: E402
from crossencoder.distributed.shards import input_files, input_schema, plan_shards, read_marker  # noqa: E402
from crossencoder.distributed.workers import ScoreWorker  # noqa: E402


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def pair(i: int, id_value) -> dict:
    return {"id": id_value, "text_a": f"question {i}", "text_b": f"answer {i}"}


@pytest.fixture(scope="module")
def worker(tiny_model_dir, tmp_path_factory):
    """One score worker (as a Ray actor holds it), called here in-process on shard descriptors."""
    options = {"text_columns": ["text_a", "text_b"],
               "predict_kwargs": {"batch_size": 8, "max_batch_tokens": None, "symmetric": False}}
    return ScoreWorker(str(tiny_model_dir), {}, str(tmp_path_factory.mktemp("unused")), ["text_a", "text_b", "id"],
                       "id", None, 1, options)


def run_worker(worker, path, out, id_type):
    """Every shard of ``path`` (a file or folder) through ``worker`` with ids of ``id_type``: (output table of all
    parts, bad rows)."""
    worker.output_dir, worker.id_type = out, id_type
    out.mkdir()
    shards = plan_shards(input_files(path), 100)
    worker({"shard": [json.dumps(s.to_dict()) for s in shards]})
    bad = [b for s in shards for b in read_marker(out, s)["bad"]]
    return pa.concat_tables(pq.read_table(part) for part in sorted(out.glob("part-*.parquet"))), bad


def test_ids_of_another_kind_or_null_are_bad_rows_the_others_keep_type_and_value(worker, tmp_path):
    big = 2**60 + 1  # a float64 (pandas' type for integers with nulls) would change it
    ids = [big, None, 3.5, "4", True, 7]
    write_jsonl(tmp_path / "pairs.jsonl", [pair(i, v) for i, v in enumerate(ids)])
    table, bad = run_worker(worker, tmp_path / "pairs.jsonl", tmp_path / "out", pa.int64())
    assert table.schema.field("id").type == pa.int64() and table.column("id").null_count == 0
    assert table.column("id").to_pylist() == [big, 7] and table.to_pandas()["id"].tolist() == [big, 7]
    assert bad == [
        {"row": 1, "reason": "id: missing", "id": None},
        {"row": 2, "reason": "id: not an integer like the other ids (float)", "id": 3.5},
        {"row": 3, "reason": "id: not an integer like the other ids (str)", "id": "4"},
        {"row": 4, "reason": "id: not an integer like the other ids (bool)", "id": True},
    ]


def test_an_id_with_a_lone_surrogate_is_named_as_not_valid_unicode(worker, tmp_path):
    lines = [json.dumps(pair(0, "q0")), json.dumps(pair(1, "q1")).replace("q1", r"q\ud800")]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    table, bad = run_worker(worker, tmp_path / "pairs.jsonl", tmp_path / "out", pa.string())
    assert table.column("id").to_pylist() == ["q0"]
    assert bad == [{"row": 1, "id": "q\ud800",
                    "reason": r"id: not valid Unicode: it holds a lone surrogate '\ud800'"}]


def test_categorical_ids_are_checked_as_strings(worker, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [pair(0, "q0"), pair(1, 1)])
    table, bad = run_worker(worker, tmp_path / "pairs.jsonl", tmp_path / "out", pa.dictionary(pa.int32(), pa.string()))
    assert table.column("id").to_pylist() == ["q0"]
    assert bad == [{"row": 1, "id": 1, "reason": "id: not a string like the other ids (int)"}]


def test_an_id_too_large_for_the_column_is_a_bad_row(worker, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [pair(0, 1), pair(1, 2**40)])
    table, bad = run_worker(worker, tmp_path / "pairs.jsonl", tmp_path / "out", pa.int32())
    assert table.column("id").to_pylist() == [1]
    assert bad == [{"row": 1, "id": 2**40, "reason": "id: 1099511627776 does not fit the ids' type (int32)"}]


def schemas_of(path):
    return [(f, input_schema(f)) for f in input_files(path)]


def test_id_type_is_read_past_a_sample_of_null_ids(tmp_path, monkeypatch):
    monkeypatch.setattr("crossencoder.distributed.shards.SCHEMA_SAMPLE_LINES", 3)
    write_jsonl(tmp_path / "ints.jsonl", [pair(i, None) for i in range(4)] + [pair(4, 10), pair(5, "x")])
    write_jsonl(tmp_path / "strings.jsonl", [pair(i, None) for i in range(3)] + [pair(3, "a")])
    write_jsonl(tmp_path / "nulls.jsonl", [pair(i, None) for i in range(5)])
    assert input_schema(tmp_path / "ints.jsonl").field("id").type == pa.null()  # what the sample says
    assert _id_type(schemas_of(tmp_path / "ints.jsonl"), "id") == (pa.int64(), False)
    assert _id_type(schemas_of(tmp_path / "strings.jsonl"), "id") == (pa.string(), False)
    assert _id_type(schemas_of(tmp_path / "nulls.jsonl"), "id") == (None, False)


def test_an_id_over_64_bits_in_the_sample_does_not_crash_planning(tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [pair(0, 2**70), pair(1, 5)])
    assert input_schema(tmp_path / "pairs.jsonl").field("id").type == pa.int64()


def test_files_with_ids_of_different_types_are_named_before_any_work(tiny_model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", [pair(0, "p0")])
    pq.write_table(pa.Table.from_pylist([pair(1, 1)]), tmp_path / "in" / "b.parquet")
    with pytest.raises(JobInputError, match=r"b.parquet: column 'id' holds int64 ids, but those of .*a.jsonl are "
                                            r"string; use one type for every id"):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # A categorical column of pandas (dictionary-encoded strings) holds strings.
    categorical = pa.array(["a"]).dictionary_encode()
    pq.write_table(pa.table({"id": categorical}), tmp_path / "e.parquet")
    schemas = [(p, input_schema(p)) for p in (tmp_path / "e.parquet", tmp_path / "in" / "a.jsonl")]
    assert _id_type(schemas, "id") == (categorical.type, False)


def test_ids_of_one_kind_in_types_of_two_widths_are_written_in_the_wider_one(worker, tmp_path):
    (tmp_path / "ints").mkdir()
    big = 2**40  # valid in the second file, but no int32
    int32_ids = pa.schema([("id", pa.int32()), ("text_a", pa.string()), ("text_b", pa.string())])
    pq.write_table(pa.Table.from_pylist([pair(0, 1), pair(1, 2)], schema=int32_ids), tmp_path / "ints" / "a.parquet")
    pq.write_table(pa.Table.from_pylist([pair(2, big)]), tmp_path / "ints" / "b.parquet")
    assert [input_schema(f).field("id").type for f in input_files(tmp_path / "ints")] == [pa.int32(), pa.int64()]
    id_type, widened = _id_type(schemas_of(tmp_path / "ints"), "id")
    assert id_type == pa.int64() and widened
    table, bad = run_worker(worker, tmp_path / "ints", tmp_path / "out", id_type)
    assert bad == [] and table.column("id").to_pylist() == [1, 2, big]
    # Strings of two widths: large_string, whichever file comes first.
    pq.write_table(pa.table({"id": pa.array(["a"], pa.large_string())}), tmp_path / "c.parquet")
    pq.write_table(pa.table({"id": pa.array(["b"], pa.string())}), tmp_path / "d.parquet")
    for order in (("c", "d"), ("d", "c")):
        schemas = [(p, input_schema(p)) for p in (tmp_path / f"{name}.parquet" for name in order)]
        assert _id_type(schemas, "id")[0] == pa.large_string()
    # Files of one integer width keep it.
    assert _id_type(schemas_of(tmp_path / "ints" / "a.parquet") * 2, "id") == (pa.int32(), False)


def test_a_kind_mismatch_after_widening_names_the_first_files_own_type(tmp_path):
    schema32 = pa.schema([("id", pa.int32())])
    pq.write_table(pa.Table.from_pylist([{"id": 1}], schema=schema32), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([2], pa.int64())}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"id": ["x"]}), tmp_path / "c.parquet")
    schemas = [(p, input_schema(p)) for p in (tmp_path / f"{name}.parquet" for name in "abc")]
    with pytest.raises(JobInputError, match=r"c.parquet: .* holds string ids, but those of .*a.parquet are int32;"):
        _id_type(schemas, "id")


def test_widened_ids_are_part_of_the_job_record(tiny_model_dir, tmp_path, monkeypatch):
    """Parts written in the first file's type (by an earlier version) do not read back beside wider ones."""
    recorded = []

    def record_and_stop(out, manifest):
        recorded.append(manifest)
        raise _Stop

    monkeypatch.setattr("crossencoder.distributed.jobs.check_manifest", record_and_stop)
    (tmp_path / "in").mkdir()
    schema32 = pa.schema([("id", pa.int32()), ("text_a", pa.string()), ("text_b", pa.string())])
    pq.write_table(pa.Table.from_pylist([pair(0, 1)], schema=schema32), tmp_path / "in" / "a.parquet")
    with pytest.raises(_Stop):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "out")
    pq.write_table(pa.Table.from_pylist([pair(1, 2**40)]), tmp_path / "in" / "b.parquet")
    with pytest.raises(_Stop):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "out2")
    assert "id_type" not in recorded[0] and recorded[1]["id_type"] == "int64"


class _Stop(Exception):
    """Ends a job once its record is made: the test needs nothing after."""


def test_an_output_folder_that_is_a_file_or_holds_the_input_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist([pair(0, "p0")]), tmp_path / "in" / "a.parquet")
    # Its parts would be read back with the inputs (pandas), and taken for inputs by the next run (a changed job).
    for input_path in (tmp_path / "in", tmp_path / "in" / "a.parquet"):
        with pytest.raises(JobInputError, match=r"in: the output folder holds the input; use a folder of its own"):
            score_dataset(tiny_model_dir, input_path, tmp_path / "in")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.parquet"]
    (tmp_path / "scores").write_text("")
    with pytest.raises(JobInputError, match=r"scores: the output folder is a file"):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "scores")
    with pytest.raises(JobInputError, match=r"scores/out: cannot create the output folder"):
        score_dataset(tiny_model_dir, tmp_path / "in", tmp_path / "scores" / "out")


def test_bad_ids_in_the_log_are_escaped_for_a_utf8_log_file(tmp_path):
    import io
    import logging

    from crossencoder.distributed.jobs import _collect
    from crossencoder.distributed.shards import write_shard_output

    write_jsonl(tmp_path / "pairs.jsonl", [pair(0, "q")])
    shard = plan_shards([tmp_path / "pairs.jsonl"], 10)[0]
    bad = [{"row": 0, "id": "q\ud800", "reason": "id is not valid Unicode"}]
    write_shard_output(tmp_path, shard, pa.table({"row": pa.array([], pa.int64())}), {"rows": 0, "bad": bad})
    log = io.BytesIO()
    handler = logging.StreamHandler(io.TextIOWrapper(log, encoding="utf-8", write_through=True))
    logger = logging.getLogger("crossencoder.distributed.jobs")
    logger.addHandler(handler)
    try:
        result = _collect(tmp_path, [shard], 0, 0.0)
    finally:
        logger.removeHandler(handler)
    located = {"row": 0, "file": "pairs.jsonl", "line": 1, "id": "q\ud800", "reason": "id is not valid Unicode"}
    assert result.bad_rows == [located] and json.loads(result.errors_path.read_text()) == located
    assert rb"ids/lines: q\ud800)" in log.getvalue()
