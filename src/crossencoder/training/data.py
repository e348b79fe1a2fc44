"""Read training / evaluation examples from files and tell which task they are for.

Formats (chosen by extension): ``.jsonl`` (one object or array per line), ``.json`` (a list of objects or
arrays), ``.tsv`` / ``.txt`` (tab-separated, no quoting) or ``.csv`` (comma-separated, fields with commas in
double quotes as spreadsheets and pandas write them); no header row unless ``header=True``.
A row or array of 3 items is a labelled pair ``a, b, label`` (in text files the label is a float when it parses
as one, else a class name), except ``[query, [documents], [labels]]``; 4+ items are a ranking sample
``query, positive, negative_1, ...`` (for a single negative use an object: ``{"query", "positive", "negative"}``).
In TSV/CSV rows, empty cells after the third (trailing tabs or commas) are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from crossencoder.errors import CrossEncoderError
from crossencoder.evaluation.samples import is_ranking_example, to_labelled_pair
from crossencoder.files import drop_trailing_empty_cells, not_a_file, unicode_problem

Task = Literal["regression", "classification", "ranking"]


class DataFormatError(CrossEncoderError, ValueError):
    """A data file that cannot be read; the message names the file and line."""


def _cell(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


def _check_texts(value: Any, where: str) -> None:
    """Refuse a JSON example holding a string that is not valid Unicode (JSON may escape a lone surrogate,
    ``"\\ud83d"``), naming where it is, rather than failing mid-training."""
    if isinstance(value, str):
        if problem := unicode_problem(value, f"{where} a text"):
            raise DataFormatError(problem + ".")
    elif isinstance(value, (list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            _check_texts(item, where)


def _from_row(row: Sequence[Any]) -> Any:
    """A 3-item row is a labelled pair (a dict, so it is never mistaken for a ranking triple); else a tuple."""
    if len(row) == 3 and not isinstance(row[2], (list, tuple)):
        return {"text_a": row[0], "text_b": row[1], "label": row[2]}
    return tuple(row)


def load_examples(path: str | os.PathLike, header: bool = False) -> list[Any]:
    """Load examples from a JSONL, JSON, TSV or CSV file.

    Args:
        path: The file.
        header: For TSV/CSV, skip the first row.

    Returns:
        A list of examples (dicts, or tuples for ranking rows), as the trainer, losses and evaluators take them.

    Raises:
        DataFormatError: the file is missing, empty, or a line is not valid (the message names the line).

    Example:
        >>> load_examples("sts-dev.tsv")[:1]
        [{'text_a': 'A man is playing a flute.', 'text_b': 'A man is playing a large flute.', 'label': 3.8}]
    """
    if os.fspath(path) == "-":
        raise DataFormatError("-: examples are read from a file (its extension names the format), not stdin.")
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise DataFormatError(problem)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not valid UTF-8 ({exc.reason}).") from None
    examples: list[Any] = []
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}).") from None
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of examples.")
        for i, x in enumerate(data):
            _check_texts(x, f"{path}: example {i}:")
        examples = [_from_row(x) if isinstance(x, list) else x for x in data]
    elif suffix == ".jsonl":
        # Not splitlines(): it also breaks at U+2028 and other separators that JSON strings may hold as is.
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg}).") from None
            _check_texts(example, f"{path}:{lineno}:")
            examples.append(_from_row(example) if isinstance(example, list) else example)
    else:
        if suffix == ".csv":
            reader = csv.reader(io.StringIO(text, newline=""))
            rows = ((reader.line_num, row) for row in reader)
        else:
            # Plain tab splitting: STS sentences may start with a quote that belongs to the text, and a passage may
            # be longer than the csv module's field size limit.
            rows = ((n, line.split("\t")) for n, line in enumerate(text.split("\n"), start=1))
        try:
            for index, (lineno, row) in enumerate(rows):
                if (header and index == 0) or not any(cell.strip() for cell in row):
                    continue
                # Empty cells past the third (a trailing tab or comma, as spreadsheets write ragged rows) would turn
                # a labelled pair into a ranking sample with its label and "" as documents.
                row = drop_trailing_empty_cells(row, keep=3)
                if len(row) < 3:
                    raise DataFormatError(f"{path}:{lineno}: expected at least 3 columns (text_a, text_b, label), "
                                          f"got {len(row)}.")
                if len(row) == 3 and not row[2].strip():
                    raise DataFormatError(f"{path}:{lineno}: the label (column 3) is empty.")
                examples.append(_from_row([row[0], row[1], _cell(row[2])] if len(row) == 3 else row))
        except csv.Error as exc:  # a CSV field over the csv module's size limit
            raise DataFormatError(f"{path}:{reader.line_num}: {exc}.") from None
    if not examples:
        raise DataFormatError(f"{path}: no examples.")
    return examples


def infer_task(examples: Sequence[Any]) -> Task:
    """Guess the task of a dataset: ranking samples, class names (classification) or numeric labels (regression).

    Raises:
        DataFormatError: the first example is neither a ranking sample nor a labelled pair.
    """
    first = examples[0]
    if is_ranking_example(first):
        return "ranking"
    try:
        label = to_labelled_pair(first, 0).label
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"Cannot tell the task: {exc}") from None
    if isinstance(label, str):
        try:
            float(label)
        except ValueError:
            return "classification"
    return "regression"


def is_binary(examples: Sequence[Any]) -> bool:
    """Whether every labelled pair has label 0 or 1 (a binary task, not a similarity score)."""
    try:
        return all(float(to_labelled_pair(x, i).label) in (0.0, 1.0) for i, x in enumerate(examples))
    except (TypeError, ValueError):
        return False
