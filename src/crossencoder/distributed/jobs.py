"""``score_dataset`` and ``rank_dataset``: Ray Data jobs over a pool of cross-encoder actors, resumable by shard."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa

from crossencoder.distributed.errors import DistributedJobError, JobInputError, RayNotInstalledError
from crossencoder.distributed.shards import (
    ERRORS_FILE,
    Shard,
    check_manifest,
    file_fingerprints,
    first_value_type,
    input_files,
    input_schema,
    is_done,
    plan_shards,
    read_marker,
)
from crossencoder.distributed.workers import RankWorker, ScoreWorker
from crossencoder.errors import CrossEncoderError
from crossencoder.files import write_atomic
from crossencoder.model.prompts import checked_prompt_text, resolve_prompt

if TYPE_CHECKING:
    from crossencoder import CrossEncoder

logger = logging.getLogger(__name__)

DEFAULT_SHARD_ROWS = 10_000
# A model name/folder, or a zero-argument factory called once in each actor.
ModelSpec = Union[str, "os.PathLike[str]", Callable[[], "CrossEncoder"]]


@dataclass
class JobResult:
    """What a distributed job did.

    Attributes:
        output_dir: Folder of the ``part-NNNNNN.parquet`` files (read it whole with ``pandas.read_parquet``).
        shards: Shards in the input.
        shards_skipped: Shards already complete from an earlier run (resume), not recomputed.
        rows_written: Output rows over all shards (scored pairs, or kept hits for rank).
        bad_rows: Rows that could not be processed, over all shards: ``{"row", "file", "line" | "file_row", "id",
            "reason"}`` (see :func:`score_dataset`).
        seconds: Wall time of this call.
    """

    output_dir: Path
    shards: int
    shards_skipped: int
    rows_written: int
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors_path(self) -> Path | None:
        """``_errors.jsonl`` in the output folder when there were bad rows, else None."""
        return self.output_dir / ERRORS_FILE if self.bad_rows else None


_RAY_LOGGERS = ("ray", "ray.data")


def _import_ray() -> Any:
    # Importing Ray Data configures its loggers, resetting a level the caller chose for them (the CLI mutes
    # Ray's notices unless --verbose): keep that level.
    levels = {name: logging.getLogger(name).level for name in _RAY_LOGGERS}
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayNotInstalledError() from None
    for name, level in levels.items():
        if level != logging.NOTSET:
            logging.getLogger(name).setLevel(level)
    return ray


def score_dataset(
    model: ModelSpec,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    text_columns: tuple[str, str] = ("text_a", "text_b"),
    id_column: str | None = "id",
    num_workers: int = 1,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    symmetric: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    address: str | None = None,
    num_cpus_per_worker: float = 1,
    num_gpus_per_worker: float = 0,
    model_kwargs: dict[str, Any] | None = None,
    show_progress: bool | None = None,
) -> JobResult:
    """Score every pair of a Parquet/JSONL dataset on a pool of Ray actors, writing Parquet per shard.

    The input is cut into shards of ``shard_rows`` rows; each shard becomes ``output_dir/part-NNNNNN.parquet``
    (columns ``id`` when the input has ``id_column``, ``row`` = row number in the input, then ``score``, or
    ``label`` and a ``probabilities`` struct for classifiers) plus a marker in ``output_dir/_done/``. Calling
    again with the same input and output folder skips finished shards (resume). Rows with a missing or empty
    text, or a missing id, are not scored: they are returned in ``JobResult.bad_rows`` and written to
    ``output_dir/_errors.jsonl``, each as ``{"row", "file", "line", "id", "reason"}``: ``row`` as in the output,
    ``file`` the input file's name, ``line`` its 1-based line number in a JSONL file (for a Parquet file,
    ``file_row``: its 0-based row index in that file), ``id`` when the input has ids.

    Args:
        model: Model folder / Hub id / catalog name, or a zero-argument callable returning a ``CrossEncoder``
            (called once in each actor).
        input_path: A ``.parquet`` or ``.jsonl`` file, or a folder of them (read in sorted name order).
            On a cluster it must be readable at the same path on every node, like ``output_dir``.
        output_dir: Folder for the results (created).
        text_columns: The two text columns of a pair.
        id_column: Column copied to the output as ``id``, each value as given with the type of the first id, or a
            wider one when files differ (integers of two widths: int64; string and large_string: large_string).
            A row whose id is null, of another kind or does not fit is a bad row. When the input has no such
            column, or it is null in every row, rows are identified by ``row`` alone.
        num_workers: Actors in the pool, each holding one model.
        batch_size, max_batch_tokens: As in ``CrossEncoder.predict``.
        symmetric: Score each pair in both orders and average (``CrossEncoder.predict(symmetric=True)``). It is
            recorded with the job, so a resume cannot mix symmetric and one-way shards.
        prompt_name, prompt: As in ``CrossEncoder.predict``: the model's prompt of that name, or this text, goes
            before the first text of every pair (neither: the model's default prompt, if any; ``prompt=""`` turns
            it off). Recorded with the job, so a resume with another prompt is refused.
        shard_rows: Rows per shard: the unit of work, of output files and of resume.
        address: Ray cluster to join (``"auto"``, ``"ray://host:10001"``); None starts a local Ray (or reuses
            the one this process already started).
        num_cpus_per_worker: CPUs reserved per actor (also torch's thread count on CPU).
        num_gpus_per_worker: GPUs reserved per actor (fractions share a GPU).
        model_kwargs: Keyword arguments of ``CrossEncoder(...)`` (``backend="onnx"``, ``max_length`` ...).
        show_progress: Progress bar of rows; None shows it on a terminal.

    Returns:
        A :class:`JobResult`.

    Raises:
        RayNotInstalledError: Ray is not installed.
        JobInputError: missing or empty input, a file without a text column, files with ids of different kinds,
            a negative resource or a worker larger than the local Ray, a ``prompt`` or ``prompt_name`` that is not
            a string, a ``prompt_name`` the model does not have, an ``output_dir`` that is a file or holds the
            input, or one that holds a different job's finished shards.
        DistributedJobError: a worker failed (its error is in the message); finished shards are kept.

    Example:
        >>> result = score_dataset("cross-encoder/ms-marco-MiniLM-L6-v2", "pairs.parquet", "scores/",
        ...                        text_columns=("query", "passage"), num_workers=4)
        >>> pandas.read_parquet("scores/").sort_values("row")
    """
    return _run_job(
        ScoreWorker, "score", model, input_path, output_dir,
        text_columns=list(text_columns), id_column=id_column,
        options={"text_columns": list(text_columns),
                 "predict_kwargs": {"batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
                                    "symmetric": symmetric}},
        output_settings={"symmetric": True} if symmetric else {}, prompt_name=prompt_name, prompt=prompt,
        num_workers=num_workers, shard_rows=shard_rows, address=address, num_cpus_per_worker=num_cpus_per_worker,
        num_gpus_per_worker=num_gpus_per_worker, model_kwargs=model_kwargs, show_progress=show_progress,
    )


def rank_dataset(
    model: ModelSpec,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    query_column: str = "query",
    candidates_column: str = "candidates",
    id_column: str | None = "query_id",
    top_k: int | None = None,
    num_workers: int = 1,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    long_documents: str | None = None,
    stride: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    shard_rows: int = 1_000,
    address: str | None = None,
    num_cpus_per_worker: float = 1,
    num_gpus_per_worker: float = 0,
    model_kwargs: dict[str, Any] | None = None,
    show_progress: bool | None = None,
) -> JobResult:
    """Re-rank each query's candidate passages on a pool of Ray actors; keep the ``top_k`` best per query.

    Input rows are ``(query_id, query, candidates)`` with ``candidates`` a list of passages. The output has
    one row per kept hit: ``id`` (the query id), ``row``, ``rank`` (1 = best), ``corpus_id`` (index in the
    candidate list) and ``score``, exactly as ``CrossEncoder.rank`` orders them. Shards, resume, bad rows
    (missing/empty query or candidate: the whole query is reported, not ranked) and the other arguments work
    as in :func:`score_dataset`.

    Args:
        query_column, candidates_column: Input columns of the query text and of the candidate list.
        id_column: Column copied to the output as ``id`` (default ``query_id``).
        top_k: Hits kept per query (None keeps all).
        long_documents, stride: As in ``CrossEncoder.rank`` (window long passages instead of truncating).
        prompt_name, prompt: As in ``CrossEncoder.rank``: the prompt goes before each query (recorded with the job,
            as in :func:`score_dataset`).
        shard_rows: Queries per shard.

    Returns:
        A :class:`JobResult` (``rows_written`` counts hits).

    Raises:
        As :func:`score_dataset`; also JobInputError for a non-positive ``top_k``.

    Example:
        >>> rank_dataset("cross-encoder/ms-marco-MiniLM-L6-v2", "candidates.jsonl", "ranked/", top_k=10)
    """
    if top_k is not None and top_k < 1:
        raise JobInputError(f"top_k must be a positive integer or None, got {top_k}.")
    rank_kwargs = {"top_k": top_k, "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
                   "long_documents": long_documents, "stride": stride}
    return _run_job(
        RankWorker, "rank", model, input_path, output_dir,
        text_columns=[query_column, candidates_column], id_column=id_column,
        options={"query_column": query_column, "candidates_column": candidates_column, "rank_kwargs": rank_kwargs},
        output_settings={"rank": {"top_k": top_k, "long_documents": long_documents, "stride": stride}},
        prompt_name=prompt_name, prompt=prompt,
        num_workers=num_workers, shard_rows=shard_rows, address=address, num_cpus_per_worker=num_cpus_per_worker,
        num_gpus_per_worker=num_gpus_per_worker, model_kwargs=model_kwargs, show_progress=show_progress,
    )


def _run_job(
    worker: type,
    kind: str,
    model: Any,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    text_columns: list[str],
    id_column: str | None,
    options: dict[str, Any],
    output_settings: dict[str, Any] | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    num_workers: int,
    shard_rows: int,
    address: str | None,
    num_cpus_per_worker: float,
    num_gpus_per_worker: float,
    model_kwargs: dict[str, Any] | None,
    show_progress: bool | None,
) -> JobResult:
    """Plan shards, run the unfinished ones on the actor pool, gather markers into a :class:`JobResult`.

    ``output_settings`` are the options that change the values written (not just how fast); they go into the job
    manifest with the model's name and ``model_kwargs``, and the prompt arguments when given, so resuming with
    different ones is refused.
    """
    started = time.perf_counter()
    if num_workers < 1:
        raise JobInputError(f"num_workers must be a positive integer, got {num_workers}.")
    prompt_name = _checked_prompt(prompt, prompt_name)
    for name, value in (("num_cpus_per_worker", num_cpus_per_worker), ("num_gpus_per_worker", num_gpus_per_worker)):
        if not value >= 0:
            raise JobInputError(f"{name} must be 0 or more, got {value}.")
    ray = _import_ray()
    files = input_files(input_path)
    # Every file's columns, so a file without one is named now instead of failing its worker mid-job. A file
    # with no rows has no columns (JSONL) and nothing to check.
    schemas = [(file, schema) for file in files if (schema := input_schema(file)).names]
    if not schemas:
        raise JobInputError(f"{input_path}: no rows.")
    first, schema = schemas[0]
    if id_column is not None and id_column not in schema.names:
        logger.warning("%s: no %r column; rows are identified by their row number only.", first, id_column)
        id_column = None
    columns = [*text_columns, *([id_column] if id_column else [])]
    for file, file_schema in schemas:
        missing = [c for c in columns if c not in file_schema.names]
        if missing:
            raise JobInputError(f"{file}: no column {', '.join(repr(c) for c in missing)} "
                                f"(columns: {', '.join(file_schema.names)}).")
    id_type, widened = _id_type(schemas, id_column) if id_column is not None else (None, False)
    if id_column is not None and id_type is None:
        logger.warning("%s: column %r is null in every row; rows are identified by their row number only.",
                       input_path, id_column)
        id_column, columns = None, list(text_columns)
    shards = plan_shards(files, shard_rows)
    if not shards:
        raise JobInputError(f"{input_path}: no rows.")
    out = _output_folder(output_dir, files)
    check_manifest(out, {
        "kind": kind, "inputs": file_fingerprints(files), "shard_rows": shard_rows, "columns": columns,
        "model": _model_identity(model, model_kwargs),
        **(output_settings or {}),
        # Only when given, like symmetric: a job recorded before prompts existed resumes without one.
        **{k: v for k, v in (("prompt", prompt), ("prompt_name", prompt_name)) if v is not None},
        # Only when widened: parts an earlier version wrote in the first file's type would not read back with
        # parts in the wider one, so such a job must not resume.
        **({"id_type": str(id_type)} if widened else {}),
    })
    pending = [s for s in shards if not is_done(out, s)]
    if pending:
        owns_ray = not ray.is_initialized()
        if owns_ray:
            _start_ray(ray, address, num_workers, num_cpus_per_worker)
        try:
            if owns_ray and address is None:  # a Ray the caller started may be a cluster that can still grow
                _check_worker_fits(ray, num_cpus_per_worker, num_gpus_per_worker)
            worker_kwargs = {
                "model": model, "model_kwargs": dict(model_kwargs or {}), "output_dir": str(out.resolve()),
                "columns": columns, "id_column": id_column, "id_type": id_type,
                "num_threads": max(1, int(num_cpus_per_worker)) if not num_gpus_per_worker else None,
                "options": options, "prompt_name": prompt_name, "prompt": prompt,
            }
            # No idle actors (each loads a model) when fewer shards are left than workers.
            _run_pending(ray, worker, worker_kwargs, pending, min(num_workers, len(pending)), num_cpus_per_worker,
                         num_gpus_per_worker, show_progress)
        finally:
            if owns_ray:
                ray.shutdown()
    return _collect(out, shards, len(shards) - len(pending), time.perf_counter() - started)


def _checked_prompt(prompt: str | None, prompt_name: str | None) -> str | None:
    """Check the prompt arguments on the driver, as ``predict`` would; returns the ``prompt_name`` the job uses (None
    when ``prompt`` is given too, as the text wins: warned once here, not by every actor on every shard).

    Raises:
        JobInputError: ``prompt`` or ``prompt_name`` is not a string, or holds a lone surrogate.
    """
    try:
        if prompt_name is not None:
            checked_prompt_text(prompt_name, "prompt_name")
        if prompt is not None:
            # No model here: the text alone is resolved, checked and warned about as predict() does it.
            resolve_prompt({}, None, prompt, prompt_name)
            return None
    except (TypeError, ValueError) as exc:
        raise JobInputError(str(exc)) from None
    return prompt_name


def _output_folder(output_dir: str | os.PathLike[str], files: list[Path]) -> Path:
    """``output_dir``, created when missing.

    Raises:
        JobInputError: it is a file, cannot be created, or holds input files (reading the folder would mix them
            with the parts, and a folder input would take the parts for inputs on the next run).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise JobInputError(f"{out}: the output folder is a file; name a folder for the results.")
    if any(file.resolve().parent == out.resolve() for file in files):
        raise JobInputError(f"{out}: the output folder holds the input; use a folder of its own for the results.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobInputError(f"{out}: cannot create the output folder ({exc.strerror or exc}).") from None
    return out


# Load options that choose where and how fast the model runs, not what it outputs: a resume may change them (a job
# started on CPU can finish on a GPU).
_PLACEMENT_OPTIONS = {"device", "max_batch_tokens"}


def _model_identity(model: Any, model_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a resume compares about the model: its name and the load options that change its scores. None for a
    callable, which cannot be compared (pass a name and ``model_kwargs`` to have resumes checked)."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k not in _PLACEMENT_OPTIONS}
    return {"name": os.fspath(model), "kwargs": json.loads(json.dumps(kwargs, default=str))}


def _start_ray(ray: Any, address: str | None, num_workers: int, num_cpus_per_worker: float) -> None:
    # ray.init sets the "ray" logger's level: WARNING, or the stricter level the caller gave that logger.
    level = max(logging.WARNING, logging.getLogger("ray").level)
    if address is not None:
        ray.init(address=address, logging_level=level)
        return
    # A local Ray sized so the whole pool fits even when it oversubscribes the cores (then it is just slower).
    num_cpus = max(os.cpu_count() or 1, math.ceil(num_workers * num_cpus_per_worker))
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=level)


def _check_worker_fits(ray: Any, num_cpus_per_worker: float, num_gpus_per_worker: float) -> None:
    """Refuse a worker larger than the whole local Ray: Ray Data would wait for it forever.

    (On a cluster, ``address`` set, an autoscaler may still add the nodes.)

    Raises:
        JobInputError: one worker asks for more CPUs or GPUs than the local Ray has.
    """
    resources = ray.cluster_resources()
    for kind, wanted in (("CPU", num_cpus_per_worker), ("GPU", num_gpus_per_worker)):
        have = resources.get(kind, 0)
        if wanted > have:
            raise JobInputError(f"each worker asks for {wanted:g} {kind}, but this Ray has {have:g}: ask for fewer, "
                                "or join a cluster that has them (address).")


def _id_type(schemas: list[tuple[Path, pa.Schema]], id_column: str) -> tuple[pa.DataType | None, bool]:
    """The Arrow type every shard writes its ids with, so the parts read back as one table with the ids as given:
    that of the first id value in the input, widened when another file holds ids of the same kind in another type
    (None when every id is null); and whether it was widened.

    A JSONL file's schema holds the type of the column's first non-null value in its first lines; when those are
    all null, the file is read on until one is found (else a later shard would guess the type on its own).

    Raises:
        JobInputError: two files hold ids of different kinds (integers and strings, say).
    """
    found: tuple[Path, pa.DataType] | None = None
    common: pa.DataType | None = None
    for file, schema in schemas:
        id_type = schema.field(id_column).type
        if pa.types.is_null(id_type):
            if found is not None:  # the type is known: this file's rows are checked one by one by the workers
                continue
            id_type = first_value_type(file, id_column)
            if pa.types.is_null(id_type):
                continue
        if found is None:
            found, common = (file, id_type), id_type
            continue
        common = _common_type(common, id_type)
        if common is None:
            raise JobInputError(f"{file}: column {id_column!r} holds {id_type} ids, but those of {found[0]} are "
                                f"{found[1]}; use one type for every id.")
    return (common, common != found[1]) if found else (None, False)


def _common_type(first: pa.DataType, other: pa.DataType) -> pa.DataType | None:
    """A type that holds every id of types ``first`` and ``other``, or None when they are of different kinds.

    Integers of two widths (or signs) are written as int64 and strings of two widths as large_string: keeping the
    first file's type would make the other file's ids that do not fit it bad rows.
    """
    # A dictionary-encoded column (pandas' categorical) holds values of its value type.
    values = [t.value_type if pa.types.is_dictionary(t) else t for t in (first, other)]
    if values[0] == values[1]:
        return first
    if all(pa.types.is_integer(t) for t in values):
        return pa.int64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in values):
        return pa.large_string() if any(pa.types.is_large_string(t) for t in values) else pa.string()
    return None


@contextlib.contextmanager
def _ray_progress_off(ray: Any) -> Iterator[None]:
    """Turn Ray Data's own progress output off for one job, restoring the caller's settings afterwards."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start
    context.enable_progress_bars = context.print_on_execution_start = False
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved


def _run_pending(
    ray: Any,
    worker: type,
    worker_kwargs: dict[str, Any],
    pending: list[Shard],
    num_workers: int,
    num_cpus_per_worker: float,
    num_gpus_per_worker: float,
    show_progress: bool | None,
) -> None:
    """Run the pending shards on a fixed pool of ``num_workers`` actors, with one progress bar of rows."""
    from tqdm.auto import tqdm

    # Ray's own progress output off (one bar of rows instead); a dataset copies the context when it is built.
    with _ray_progress_off(ray):
        # One block per shard, so every shard is its own call and the pool balances them.
        items = [{"shard": json.dumps(s.to_dict())} for s in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            worker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            fn_constructor_kwargs=worker_kwargs,
            num_cpus=num_cpus_per_worker,
            num_gpus=num_gpus_per_worker or None,
        )
    total = sum(s.stop - s.start for s in pending)
    disable = None if show_progress is None else not show_progress
    desc = f"{len(pending)} shards on {num_workers} workers"
    with tqdm(total=total, unit="row", desc=desc, disable=disable) as bar:
        try:
            for summary in dataset.iter_rows():
                bar.update(int(summary["rows"]))
        except Exception as exc:  # Ray wraps worker errors in several layers: report the worker's own error
            error = _worker_error(exc)
            raise error from (exc if isinstance(error, DistributedJobError) else None)


# One "module.Name: message" line of a traceback (a bare "module.Name" for an exception without a message), as
# Ray carries a worker's traceback in its errors' text.
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception))(?:: (.+))?$")


def _worker_error(exc: BaseException) -> Exception:
    """The error to raise for a failed Ray job: the worker's own crossencoder error (a bad input stays a
    :class:`JobInputError`), else a :class:`DistributedJobError` naming the worker's exception.

    Ray wraps it in ``RayTaskError`` / ``UserCodeException`` layers; depending on the Ray version the original
    object is in the chain (``cause`` / ``__cause__``) or only in the traceback text, whose last non-Ray error
    line is it (Ray's own last line is a hint about retries).
    """
    chain, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CrossEncoderError):
            return current
        chain.append(current)
        inner = getattr(current, "cause", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__
    found = None
    for error in chain:
        for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines():
            match = _ERROR_LINE.match(line.strip())
            if match and not match.group(1).startswith("ray."):
                found = match.groups()
    kept = "(finished shards are kept; re-run to resume)"
    if found is None:
        return DistributedJobError(f"a worker failed: {type(chain[-1]).__name__}: {chain[-1]} {kept}")
    name, message = found  # no message for a bare `raise MemoryError()`
    name = name.rsplit(".", 1)[-1]
    if name == JobInputError.__name__:
        return JobInputError(message)
    return DistributedJobError(f"a worker failed: {name}{f': {message}' if message else ''} {kept}")


def _collect(out: Path, shards: list[Shard], skipped: int, seconds: float) -> JobResult:
    """Totals and bad rows from every shard's marker; writes (or clears) ``_errors.jsonl``.

    Each bad row's record gets its input file and line (or row index) from its shard here, so shards finished by
    an earlier run (resume) are reported the same way.
    """
    rows_written, bad_rows = 0, []
    for shard in shards:
        marker = read_marker(out, shard)
        rows_written += marker["rows"]
        bad_rows.extend({"row": r["row"], **shard.location(r["row"]), **{k: v for k, v in r.items() if k != "row"}}
                        for r in marker["bad"])
    errors = out / ERRORS_FILE
    if bad_rows:
        write_atomic(errors, lambda tmp: tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in bad_rows)))
        # Escaped: an id may hold a lone surrogate, which a UTF-8 log file cannot take.
        shown = ", ".join(_where(r).encode("utf-8", "backslashreplace").decode() for r in bad_rows[:10])
        logger.warning("%d row(s) could not be processed (ids/lines: %s%s); listed in %s.",
                       len(bad_rows), shown, ", ..." if len(bad_rows) > 10 else "", errors)
    else:
        errors.unlink(missing_ok=True)
    return JobResult(out, len(shards), skipped, rows_written, bad_rows, seconds)


def _where(record: dict[str, Any]) -> str:
    """A bad row as the log names it: its id, else (no id column, or a missing id) ``file:line`` (JSONL) or
    ``file row N`` (Parquet, 0-based)."""
    if record.get("id") is not None:
        return str(record["id"])
    if "line" in record:
        return f"{record['file']}:{record['line']}"
    return f"{record['file']} row {record['file_row']}"
