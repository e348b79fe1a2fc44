"""Ray Data actors of the distributed jobs: each holds one ``CrossEncoder`` and turns whole shards into output files.

A call receives a batch of shard descriptors (JSON strings), reads each shard from the input, scores its valid
rows, writes the shard's Parquet file and completion marker, and returns one summary row per shard. Rows with
missing or empty text, or an id that cannot be written as given, are not scored; they are listed (row number, id,
reason) in the marker so the driver can report them, with their file and line. Nothing here imports ray: Ray Data
instantiates these classes inside its actors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from crossencoder.distributed.errors import JobInputError
from crossencoder.distributed.shards import Shard, read_shard, write_shard_output
from crossencoder.files import unicode_defect
from crossencoder.model.prompts import resolve_prompt


def _load_model(model: Any, model_kwargs: dict[str, Any], num_threads: int | None) -> Any:
    """Build this actor's model: ``model()`` for a factory, else ``CrossEncoder(model, **model_kwargs)``."""
    import torch
    from transformers.utils import logging as hf_logging

    from crossencoder import CrossEncoder

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per actor is noise in the driver's log

    if num_threads:
        # One actor per CPU slot: keep torch from starting a thread per core in every actor.
        torch.set_num_threads(num_threads)
    return model() if callable(model) else CrossEncoder(model, **model_kwargs)


def _unicode_problem(value: str, name: str) -> str | None:
    """``"name: not valid Unicode: ..."`` when ``value`` holds a lone surrogate (a JSON ``"\\ud800"`` escape), else
    None: the shared check, in the ``name: problem`` form of every reason here."""
    defect = unicode_defect(value)
    return f"{name}: {defect}" if defect else None


def _text_problem(value: Any, name: str) -> str | None:
    """Why ``value`` (of column ``name``) cannot be scored as a text, or None when it can."""
    if value is None:
        return f"{name}: missing"
    if not isinstance(value, str):
        return f"{name}: not a string ({type(value).__name__})"
    if not value.strip():
        return f"{name}: empty"
    # The tokenizer would fail the whole shard on it.
    return _unicode_problem(value, name)


def _id_problem(value: Any, name: str, id_type: pa.DataType) -> str | None:
    """Why ``value`` (of id column ``name``) cannot be written as an id of ``id_type``, or None when it can.

    Each id must keep its value and kind: a null would turn a column of integer ids into floats in pandas, and
    Arrow would truncate a float into an integer column (3.5 -> 3) or refuse a string there.
    """
    if value is None:
        return f"{name}: missing"
    values_type = id_type.value_type if pa.types.is_dictionary(id_type) else id_type  # pandas' categorical
    strings = pa.types.is_string(values_type) or pa.types.is_large_string(values_type)
    if strings and isinstance(value, str):
        return _unicode_problem(value, name)  # no Parquet file can hold it
    if strings:
        return f"{name}: not a string like the other ids ({type(value).__name__})"
    if pa.types.is_integer(values_type) and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name}: not an integer like the other ids ({type(value).__name__})"
    try:
        pa.scalar(value, type=id_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return f"{name}: {value!r} does not fit the ids' type ({id_type})"
    return None


class _ShardWorker:
    """Shared plumbing: model loading, shard loop, summaries. Subclasses implement :meth:`process`."""

    def __init__(
        self,
        model: Any,
        model_kwargs: dict[str, Any],
        output_dir: str,
        columns: list[str],
        id_column: str | None,
        id_type: pa.DataType | None,
        num_threads: int | None,
        options: dict[str, Any],
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> None:
        """Load the model and resolve the job's prompt against it.

        Raises:
            JobInputError: ``prompt_name`` is not one of the model's prompts (a bad input, refused before any
                shard rather than failing each one).
        """
        self.model = _load_model(model, model_kwargs, num_threads)
        self.output_dir = Path(output_dir)
        self.columns = columns
        self.id_column = id_column
        self.id_type = id_type
        self.options = options
        try:
            # The name is looked up once; every predict()/rank() call gets the text ("" when no prompt applies).
            self.prompt = resolve_prompt(self.model.prompts, self.model.default_prompt_name, prompt, prompt_name)
        except (TypeError, ValueError) as exc:
            raise JobInputError(str(exc)) from None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[int]]:
        """Process each shard of ``batch`` end to end; returns the input rows of each (for the progress bar)."""
        summary: dict[str, list[int]] = {"rows": []}
        for descriptor in batch["shard"]:
            shard = Shard(**json.loads(descriptor))
            started = time.perf_counter()
            rows, bad = read_shard(shard, self.columns)
            if self.id_column:
                rows = self._drop_bad_ids(rows, bad)
            table, bad_rows = self.process(rows)
            bad = sorted(bad + bad_rows, key=lambda r: r["row"])
            marker = {"rows": table.num_rows, "bad": bad, "seconds": round(time.perf_counter() - started, 3)}
            write_shard_output(self.output_dir, shard, table, marker)
            summary["rows"].append(shard.stop - shard.start)
        return summary

    def _bad(self, row: dict[str, Any], reason: str) -> dict[str, Any]:
        record = {"row": row["row"], "reason": reason}
        if self.id_column:
            record["id"] = row.get(self.id_column)
        return record

    def _drop_bad_ids(self, rows: list[dict[str, Any]], bad: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows whose id can be written as given; a record of each other row is appended to ``bad``."""
        kept = []
        for row in rows:
            problem = _id_problem(row[self.id_column], self.id_column, self.id_type)
            if problem:
                bad.append(self._bad(row, problem))
            else:
                kept.append(row)
        return kept

    def _ids(self, rows: list[dict[str, Any]]) -> dict[str, pa.Array]:
        """The ``id`` (when the input has one) and ``row`` columns of the output."""
        columns = {"row": pa.array([r["row"] for r in rows], type=pa.int64())}
        if self.id_column:
            columns = {"id": pa.array([r[self.id_column] for r in rows], type=self.id_type), **columns}
        return columns

    def process(self, rows: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
        """The output table of a shard's valid rows, and a ``{"row", "id", "reason"}`` record per invalid row."""
        raise NotImplementedError


class ScoreWorker(_ShardWorker):
    """Scores pairs: ``id, row, score`` (1-label models) or ``id, row, label, probabilities`` (classifiers)."""

    def process(self, rows: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
        first, second = self.options["text_columns"]
        good, bad = [], []
        for row in rows:
            problem = _text_problem(row[first], first) or _text_problem(row[second], second)
            if problem:
                bad.append(self._bad(row, problem))
            else:
                good.append(row)
        pairs = [(r[first], r[second]) for r in good]
        model, predict_kwargs = self.model, self.options["predict_kwargs"]
        columns = self._ids(good)
        if model.num_labels == 1:
            scores = (model.predict(pairs, show_progress_bar=False, prompt=self.prompt, **predict_kwargs) if pairs
                      else np.empty(0))
            columns["score"] = pa.array(np.asarray(scores, dtype=np.float32))
            return pa.table(columns), bad
        names = [model.id2label.get(i, str(i)) for i in range(model.num_labels)]
        probabilities = (
            model.predict(pairs, show_progress_bar=False, apply_softmax=True, prompt=self.prompt, **predict_kwargs)
            if pairs else np.empty((0, len(names)), dtype=np.float32)
        )
        columns["label"] = pa.array([names[i] for i in probabilities.argmax(axis=1)], type=pa.string())
        columns["probabilities"] = pa.StructArray.from_arrays(
            [pa.array(probabilities[:, i], type=pa.float32()) for i in range(len(names))], names=names
        )
        return pa.table(columns), bad


class RankWorker(_ShardWorker):
    """Ranks each query's candidates: one output row per kept hit, ``id, row, rank, corpus_id, score``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A bad input, not a failure a re-run could get past: refused as such, before any shard.
        if self.model.num_labels != 1:
            raise JobInputError(f"rank needs a 1-label model; this one classifies pairs into {self.model.num_labels} "
                                "labels (classify them with score_dataset / crossencoder score --ray).")

    def process(self, rows: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
        query_column, candidates_column = self.options["query_column"], self.options["candidates_column"]
        kept, hits, bad = [], [], []
        for row in rows:
            problem = _candidates_problem(row[query_column], row[candidates_column])
            if problem:
                bad.append(self._bad(row, problem))
                continue
            ranked = self.model.rank(row[query_column], list(row[candidates_column]), show_progress_bar=False,
                                     prompt=self.prompt, **self.options["rank_kwargs"])
            for position, hit in enumerate(ranked, start=1):
                kept.append(row)
                hits.append((position, hit["corpus_id"], hit["score"]))
        columns = self._ids(kept)
        columns["rank"] = pa.array([h[0] for h in hits], type=pa.int32())
        columns["corpus_id"] = pa.array([h[1] for h in hits], type=pa.int32())
        columns["score"] = pa.array([h[2] for h in hits], type=pa.float32())
        return pa.table(columns), bad


def _candidates_problem(query: Any, candidates: Any) -> str | None:
    """Why a (query, candidates) row cannot be ranked, or None when it can."""
    problem = _text_problem(query, "query")
    if problem:
        return problem
    if candidates is None:
        return "candidates: missing"
    if not isinstance(candidates, (list, tuple, np.ndarray)):
        return f"candidates: not a list ({type(candidates).__name__})"
    if len(candidates) == 0:
        return "candidates: empty list"
    for i, text in enumerate(candidates):
        problem = _text_problem(text, f"candidates[{i}]")
        if problem:
            return problem
    return None
