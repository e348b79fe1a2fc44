"""Shard planning and reading without Ray: every row lands in exactly one shard, with its global row number."""

from __future__ import annotations

import json

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from crossencoder.distributed import JobInputError  # noqa: E402
from crossencoder.distributed.shards import (  # noqa: E402
    MANIFEST,
    MARKERS,
    check_manifest,
    input_files,
    input_schema,
    plan_shards,
    read_shard,
    write_atomic,
)


def read_all(files, shard_rows, columns):
    rows, bad = [], []
    for shard in plan_shards(files, shard_rows):
        got, unreadable = read_shard(shard, columns)
        rows += got
        bad += unreadable
    return rows, bad


def test_jsonl_shards_cover_every_line_once_with_crlf_blank_and_broken_lines(tmp_path):
    lines = [json.dumps({"id": i, "t": f"text {i}"}) for i in range(11)]
    lines[4] = ""  # blank: keeps its row number, not a row
    lines[6] = "{not json"
    (tmp_path / "a.jsonl").write_bytes(("\r\n".join(lines)).encode())  # CRLF, no final newline
    rows, bad = read_all([tmp_path / "a.jsonl"], 3, ["id", "t"])
    assert [r["row"] for r in rows] == [0, 1, 2, 3, 5, 7, 8, 9, 10]
    assert all(r["id"] == r["row"] and r["t"] == f"text {r['row']}" for r in rows)
    assert bad == [{"row": 6, "reason": "invalid JSON (Expecting property name enclosed in double quotes)"}]


def test_parquet_shards_cross_row_groups_and_files_keep_global_row_numbers(tmp_path):
    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "a.parquet", row_group_size=4)
    pq.write_table(pa.table({"id": list(range(10, 15))}), tmp_path / "b.parquet", row_group_size=2)
    files = input_files(tmp_path)
    shards = plan_shards(files, 3)
    assert [(s.start, s.stop, s.first_row) for s in shards] == [
        (0, 3, 0), (3, 6, 3), (6, 9, 6), (9, 10, 9), (0, 3, 10), (3, 5, 13),
    ]
    rows, _ = read_all(files, 3, ["id"])
    assert [(r["id"], r["row"]) for r in rows] == [(i, i) for i in range(15)]


def test_unknown_inputs_are_named(tmp_path):
    (tmp_path / "pairs.csv").write_text("a,b\n")
    with pytest.raises(JobInputError, match="pairs.csv: unknown format"):
        input_files(tmp_path / "pairs.csv")
    with pytest.raises(JobInputError, match="no .parquet or .jsonl files"):
        input_files(tmp_path)
    with pytest.raises(JobInputError, match="missing: no such file"):
        input_files(tmp_path / "missing")


def test_a_folder_reads_jsonl_and_parquet_but_not_metadata_json(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text_a": "a", "text_b": "b"}\n')
    (tmp_path / "meta.json").write_text('{"note": "written by the export job"}\n')
    assert input_files(tmp_path) == [tmp_path / "data.jsonl"]
    assert input_files(tmp_path / "meta.json") == [tmp_path / "meta.json"]  # named on its own, it is read


def test_write_atomic_leaves_nothing_when_the_writer_fails(tmp_path):
    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "part-000000.parquet", fail)
    assert list(tmp_path.iterdir()) == []


def test_a_line_that_is_not_utf8_is_a_bad_row_not_a_crash(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"t": "ok"}\n{"t": "caf\xe9"}\n{"t": "fine"}\n')
    assert input_schema(tmp_path / "a.jsonl").names == ["t"]
    rows, bad = read_all([tmp_path / "a.jsonl"], 2, ["t"])
    assert [r["row"] for r in rows] == [0, 2]
    assert bad == [{"row": 1, "reason": "not valid UTF-8"}]
    (tmp_path / "b.jsonl").write_bytes(b'{"t": "caf\xe9"}\n')
    with pytest.raises(JobInputError, match=r"b.jsonl:1: not valid UTF-8"):
        input_schema(tmp_path / "b.jsonl")


def test_a_job_that_finished_no_shard_can_be_rerun_with_other_settings(tmp_path):
    check_manifest(tmp_path, {"kind": "score", "model": {"name": "typo"}})
    (tmp_path / "part-000003.parquet").write_bytes(b"written, but its marker never was")
    # Nothing of the first job finished (its model did not load, say): a corrected command starts over.
    check_manifest(tmp_path, {"kind": "score", "model": {"name": "right"}})
    assert json.loads((tmp_path / MANIFEST).read_text())["model"] == {"name": "right"}
    assert not list(tmp_path.glob("part-*"))
    (tmp_path / MARKERS).mkdir()
    (tmp_path / MARKERS / "part-000000.json").write_text('{"rows": 1, "bad": []}')
    with pytest.raises(JobInputError, match="different job .*model"):
        check_manifest(tmp_path, {"kind": "score", "model": {"name": "other"}})


@pytest.mark.parametrize("batch_rows", [2, 3, 4096])
def test_parquet_shards_are_read_in_batches_that_cross_row_groups(tmp_path, monkeypatch, batch_rows):
    monkeypatch.setattr("crossencoder.distributed.shards.PARQUET_BATCH_ROWS", batch_rows)
    pq.write_table(pa.table({"id": list(range(10)), "t": [f"text {i}" for i in range(10)]}), tmp_path / "a.parquet",
                   row_group_size=4)
    rows, _ = read_all([tmp_path / "a.parquet"], 3, ["t", "id"])
    assert [(r["id"], r["t"], r["row"]) for r in rows] == [(i, f"text {i}", i) for i in range(10)]


def test_a_small_shard_of_a_large_row_group_decodes_a_batch_not_the_group(tmp_path):
    # pyarrow and pandas write a million rows per row group by default: far more than a shard.
    n = 300_000
    texts = [f"passage {i:092d}" for i in range(n)]  # 100 bytes each: 30 MB decoded
    pq.write_table(pa.table({"t": texts}), tmp_path / "big.parquet", row_group_size=n)
    shard = plan_shards([tmp_path / "big.parquet"], 5)[50_000]
    pool, default = pa.proxy_memory_pool(pa.default_memory_pool()), pa.default_memory_pool()
    pa.set_memory_pool(pool)  # the reader allocates from the default pool: measure this read alone
    try:
        rows, _ = read_shard(shard, ["t"])
    finally:
        pa.set_memory_pool(default)
    assert [r["t"] for r in rows] == texts[250_000:250_005]
    assert pool.max_memory() < 10_000_000


@pytest.mark.parametrize("left", ["_done/part-000000.json", "part-00000-1b2c-c000.snappy.parquet"])
def test_part_files_without_a_job_record_are_not_taken_for_finished_shards(tmp_path, left):
    # A job's record is written before its first part: parts without one are another tool's (Spark's names match
    # part-*.parquet), or a job's whose _job.json was deleted; their shards would be skipped as finished.
    (tmp_path / left).parent.mkdir(exist_ok=True)
    (tmp_path / left).write_text('{"rows": 1, "bad": []}')
    with pytest.raises(JobInputError, match=r"holds part files but no _job.json .*use a new output folder"):
        check_manifest(tmp_path, {"kind": "score"})
    assert not (tmp_path / MANIFEST).exists()


def test_a_parquet_file_without_rows_says_nothing_about_the_columns(tmp_path):
    # As an empty JSONL file: its columns (none of the job's, here) are not checked, nor its id type used.
    pq.write_table(pa.table({"other": pa.array([], pa.int64())}), tmp_path / "a.parquet")
    assert input_schema(tmp_path / "a.parquet").names == []
    pq.write_table(pa.table({"t": ["x"]}), tmp_path / "b.parquet")
    assert input_schema(tmp_path / "b.parquet").names == ["t"]


def test_a_row_is_located_by_file_and_line_or_file_row_across_shards_and_files(tmp_path):
    # A folder of a JSONL file (a blank line keeps its number) then a Parquet file, cut into shards of 2 rows: the
    # location restarts in each file and counts from the shard's start, not from the shard or the whole input.
    (tmp_path / "a.jsonl").write_text('{"t": "r0"}\n{"t": "r1"}\n\n{"t": "r3"}\n{"t": "r4"}\n')
    pq.write_table(pa.table({"t": [f"p{i}" for i in range(5)]}), tmp_path / "b.parquet", row_group_size=2)
    shards = plan_shards(input_files(tmp_path), 2)
    located = [(row["t"], shard.location(row["row"])) for shard in shards for row in read_shard(shard, ["t"])[0]]
    assert located == [
        ("r0", {"file": "a.jsonl", "line": 1}), ("r1", {"file": "a.jsonl", "line": 2}),
        ("r3", {"file": "a.jsonl", "line": 4}), ("r4", {"file": "a.jsonl", "line": 5}),
        *[(f"p{i}", {"file": "b.parquet", "file_row": i}) for i in range(5)],
    ]
