"""Input shards and per-shard output files: the unit of work, of output and of resume for distributed jobs.

The input (one Parquet/JSONL file or a folder of them) is cut into shards of ``shard_rows`` consecutive rows,
numbered in file order, so the same input always gives the same shards. Each shard's output is written to a
temporary name and renamed into place, then a small JSON marker (``_done/part-NNNNNN.json``) is written the same
way; a shard counts as done only when its marker exists, so a file left by a crash is never taken for a finished one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crossencoder.distributed.errors import JobInputError
from crossencoder.files import write_atomic

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Names starting with "_" are skipped by pyarrow/pandas/Ray readers, so `read_parquet(output_dir)` sees only parts.
MANIFEST = "_job.json"
ERRORS_FILE = "_errors.jsonl"
MARKERS = "_done"


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one input file; for JSONL also the byte range of those lines.

    ``first_row`` is the global number of the shard's first row over all input files (the ``row`` column of
    the output), and ``index`` the shard's position in the job (its output file name).
    """

    index: int
    path: str
    fmt: str
    start: int
    stop: int
    first_row: int
    byte_start: int = 0
    byte_stop: int = 0

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}"

    def location(self, row: int) -> dict[str, Any]:
        """Where global row ``row`` of this shard is in its input file, for a bad-row record.

        ``file`` is the file's name (an input folder is read without its subfolders, so this is also its path
        relative to the folder); then, for JSONL, ``line``: the 1-based line number an editor shows; for Parquet,
        ``file_row``: the 0-based index of the row in that file, as pyarrow and pandas count.
        """
        in_file = self.start + row - self.first_row
        position = {"line": in_file + 1} if self.fmt == "jsonl" else {"file_row": in_file}
        return {"file": Path(self.path).name, **position}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_files(input_path: str | os.PathLike) -> list[Path]:
    """The Parquet/JSONL files of ``input_path`` (a file, or a folder read in sorted name order).

    Raises:
        JobInputError: the path does not exist, or holds no file with a known suffix.
    """
    path = Path(input_path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        # Not .json in a folder: that is more often a metadata file beside the data than one JSON object per line.
        known = PARQUET_SUFFIXES + tuple(s for s in JSONL_SUFFIXES if s != ".json")
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
        if not files:
            raise JobInputError(f"{path}: no .parquet or .jsonl files in this folder.")
    else:
        raise JobInputError(f"{path}: no such file or folder.")
    for file in files:
        _format(file)
    return files


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise JobInputError(f"{path}: unknown format; use .parquet or .jsonl (one JSON object per line).")


SCHEMA_SAMPLE_LINES = 1000


def input_schema(path: Path) -> pa.Schema:
    """Arrow schema of a Parquet file (empty when it has no rows), or the one Arrow infers from the objects of a
    JSONL file's first :data:`SCHEMA_SAMPLE_LINES` non-blank lines (so one line without a field does not hide it
    from the job).

    Raises:
        JobInputError: the first non-blank JSONL line is not a JSON object.
    """
    if _format(path) == "parquet":
        parquet = pq.ParquetFile(path)
        # Like an empty JSONL file: no rows say nothing about the job's columns (nor its ids' type).
        return parquet.schema_arrow if parquet.metadata.num_rows else pa.schema([])
    objects: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            obj, problem = _parse_line(line)
            if problem:
                if objects:  # a bad row later on: reported by its worker, with its row number
                    continue
                raise JobInputError(f"{path}:{lineno}: {problem}.")
            if isinstance(obj, dict):
                objects.append(obj)
            elif not objects:
                raise JobInputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}.")
            if len(objects) == SCHEMA_SAMPLE_LINES:
                break
    # Each field's type is that of its first non-null value; the workers check (and report) the other rows.
    types: dict[str, pa.DataType] = {}
    for obj in objects:
        for name, value in obj.items():
            if pa.types.is_null(types.get(name, pa.null())):
                types[name] = _value_type(value)
    return pa.schema([pa.field(name, kind) for name, kind in types.items()])


def first_value_type(path: Path, column: str) -> pa.DataType:
    """Arrow type of the first non-null ``column`` value anywhere in a JSONL file (``pa.null()`` when there is
    none), for a column whose values are all null in the lines :func:`input_schema` sampled.

    Reads the whole file in the worst case: only called for such a column. For a Parquet file, the column's type.
    """
    if _format(path) == "parquet":
        return pq.ParquetFile(path).schema_arrow.field(column).type
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            obj, problem = _parse_line(line)
            if not problem and isinstance(obj, dict) and obj.get(column) is not None:
                return _value_type(obj[column])
    return pa.null()


def _value_type(value: Any) -> pa.DataType:
    """The Arrow type of one JSON value; ``pa.null()`` for None or a value Arrow cannot type (an int over 64 bits)."""
    if value is None:
        return pa.null()
    try:
        return pa.array([value]).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.null()


def plan_shards(files: list[Path], shard_rows: int) -> list[Shard]:
    """Cut ``files`` into shards of ``shard_rows`` rows (the last shard of each file may be shorter).

    Parquet row counts come from the file footer; JSONL files are scanned once for the byte offset of every
    ``shard_rows``-th line, so a worker can seek straight to its shard. In JSONL, a row is a line: blank lines
    keep their number but are not scored.
    """
    if shard_rows < 1:
        raise JobInputError(f"shard_rows must be a positive integer, got {shard_rows}.")
    shards: list[Shard] = []
    first_row = 0
    for path in files:
        fmt = _format(path)
        if fmt == "parquet":
            total = pq.ParquetFile(path).metadata.num_rows
            ranges = [(start, min(start + shard_rows, total), 0, 0) for start in range(0, total, shard_rows)]
        else:
            ranges = list(_jsonl_ranges(path, shard_rows))
            total = ranges[-1][1] if ranges else 0
        for start, stop, byte_start, byte_stop in ranges:
            shards.append(Shard(len(shards), str(path), fmt, start, stop, first_row + start, byte_start, byte_stop))
        first_row += total
    return shards


def _jsonl_ranges(path: Path, shard_rows: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start_line, stop_line, byte_start, byte_stop)`` of each run of ``shard_rows`` lines."""
    offset = start_offset = 0
    lines = 0
    with open(path, "rb") as f:
        for line in f:
            offset += len(line)
            lines += 1
            if lines % shard_rows == 0:
                yield lines - shard_rows, lines, start_offset, offset
                start_offset = offset
    if lines % shard_rows:
        yield lines - lines % shard_rows, lines, start_offset, offset


def read_shard(shard: Shard, columns: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of ``shard`` as dicts restricted to ``columns`` (each with its global ``row`` number).

    Returns:
        ``(rows, unreadable)``: ``unreadable`` lists JSONL lines that are not JSON objects, as
        ``{"row", "reason"}`` records, so they are reported instead of dropped.
    """
    if shard.fmt == "parquet":
        table = _read_parquet_rows(Path(shard.path), shard.start, shard.stop, columns)
        rows = table.to_pylist()
        for offset, row in enumerate(rows):
            row["row"] = shard.first_row + offset
        return rows, []
    rows, unreadable = [], []
    with open(shard.path, "rb") as f:
        f.seek(shard.byte_start)
        data = f.read(shard.byte_stop - shard.byte_start)
    for offset, line in enumerate(data.split(b"\n")[: shard.stop - shard.start]):
        row_number = shard.first_row + offset
        if not line.strip():
            continue
        obj, problem = _parse_line(line)
        if problem:
            unreadable.append({"row": row_number, "reason": problem})
            continue
        if not isinstance(obj, dict):
            unreadable.append({"row": row_number, "reason": f"expected a JSON object, got {type(obj).__name__}"})
            continue
        rows.append({**{c: obj.get(c) for c in columns}, "row": row_number})
    return rows, unreadable


def _parse_line(line: bytes) -> tuple[Any, str | None]:
    """The JSON value of a JSONL line, or ``(None, why it cannot be read)``."""
    try:
        return json.loads(line), None
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg})"


# Rows decoded at a time from a Parquet file: a shard's memory is bounded by this, not by the file's row groups
# (pyarrow and pandas write up to a million rows per group by default).
PARQUET_BATCH_ROWS = 4096


def _read_parquet_rows(path: Path, start: int, stop: int, columns: list[str]) -> pa.Table:
    """Rows ``[start, stop)`` of a Parquet file, streamed from the row groups that overlap them in batches of
    :data:`PARQUET_BATCH_ROWS` rows (the rows of a group before ``start`` are decoded and dropped)."""
    # Pages streamed through a small buffer rather than whole column chunks held in memory.
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    groups, group_start, skip = [], 0, 0
    for i in range(parquet.metadata.num_row_groups):
        group_stop = group_start + parquet.metadata.row_group(i).num_rows
        if group_stop > start and group_start < stop:
            if not groups:
                skip = start - group_start
            groups.append(i)
        group_start = group_stop
    wanted, batches = stop - start, []
    for batch in parquet.iter_batches(PARQUET_BATCH_ROWS, row_groups=groups, columns=columns, use_threads=False):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        batch = batch.slice(skip, wanted)
        skip, wanted = 0, wanted - batch.num_rows
        batches.append(batch)
        if not wanted:
            break
    if batches:
        return pa.Table.from_batches(batches)
    return parquet.schema_arrow.empty_table().select(columns)


def is_done(output_dir: Path, shard: Shard) -> bool:
    """True when the shard's completion marker (written only after its output file is in place) and that file exist:
    a part deleted later, by hand, is redone rather than counted as written."""
    return _marker_path(output_dir, shard).is_file() and (output_dir / f"{shard.name}.parquet").is_file()


def read_marker(output_dir: Path, shard: Shard) -> dict[str, Any]:
    """The completion marker of a finished shard: ``{"rows", "bad", "seconds"}``."""
    return json.loads(_marker_path(output_dir, shard).read_text())


def _marker_path(output_dir: Path, shard: Shard) -> Path:
    return output_dir / MARKERS / f"{shard.name}.json"


def write_shard_output(output_dir: Path, shard: Shard, table: pa.Table, marker: dict[str, Any]) -> None:
    """Write a shard's Parquet output, then its completion marker, each atomically."""
    write_atomic(output_dir / f"{shard.name}.parquet", lambda tmp: pq.write_table(table, tmp))
    marker_path = _marker_path(output_dir, shard)
    marker_path.parent.mkdir(exist_ok=True)
    write_atomic(marker_path, lambda tmp: tmp.write_text(json.dumps(marker, default=str)))


def check_manifest(output_dir: Path, manifest: dict[str, Any]) -> None:
    """Record the job's settings in ``output_dir``, or check that an earlier run there used the same ones.

    Resuming is only safe when shards mean the same rows and the same values: same input files (size and mtime),
    ``shard_rows``, job kind, columns, model (name and load options) and output settings. A model given as a
    callable is recorded as None and not compared. An earlier job that finished no shard (its model did not
    load, say) is replaced, with the part files it left unfinished.

    Raises:
        JobInputError: ``output_dir`` holds finished shards of a different job, or part files without a record.
    """
    path = output_dir / MANIFEST
    if path.is_file():
        previous = json.loads(path.read_text())
        # Both sides' keys: a setting recorded only when it is on (symmetric) must match when it is off too.
        uncomparable = previous.get("model") is None or manifest.get("model") is None
        changed = sorted(k for k in manifest.keys() | previous.keys()
                         if not (k == "model" and uncomparable) and previous.get(k) != manifest.get(k))
        if not changed:
            return
        if any((output_dir / MARKERS).glob("part-*.json")):
            raise JobInputError(
                f"{output_dir} holds the output of a different job ({', '.join(changed)} changed); "
                "resume needs the same input and settings, or use a new output folder."
            )
        # Unfinished parts of the old job may be shards the new one does not have: pandas would read them.
        for part in output_dir.glob("part-*.parquet"):
            part.unlink()
    elif any(output_dir.glob("part-*.parquet")) or any((output_dir / MARKERS).glob("part-*.json")):
        # Not written by a job (the record comes first): another tool's parts, or a job whose record was deleted,
        # whose finished shards would be taken for this job's.
        raise JobInputError(f"{output_dir} holds part files but no {MANIFEST} (not a job's output, or its record "
                            "was deleted); use a new output folder.")
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def file_fingerprints(files: list[Path]) -> list[dict[str, Any]]:
    """Path, size and modification time of each input file (what resume compares)."""
    return [{"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in files]
