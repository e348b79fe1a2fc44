"""Pieces every CLI command shares: model options, input readers, one-line errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from crossencoder.errors import CrossEncoderError

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


class InputError(CrossEncoderError, ValueError):
    """A bad input file or line; the message names the file and line."""


def add_model_arguments(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL) -> None:
    """Add the options that choose and configure a model (``--model``, ``--device``, ``--backend`` ...)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=default, required=default is None,
                       help="local folder, Hugging Face Hub id or catalog short name (see `crossencoder models`)"
                       + (f"; default {default}" if default else ""))
    group.add_argument("--revision", help="Hub branch, tag or commit")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    group.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="precision (GPU)")
    group.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    group.add_argument("--quantize", choices=["int8"], help="onnx backend: quantize the exported model")
    group.add_argument("--max-length", type=int, help="maximum tokens per pair (default: the model's)")
    group.add_argument("--batch-size", type=int, default=32, help="maximum pairs per batch (default 32)")
    group.add_argument("--max-batch-tokens", type=int, help="maximum padded tokens per batch")
    group.add_argument("--trust-remote-code", action="store_true", help="allow code from the model folder")


def load_model(args: argparse.Namespace):
    """Build a :class:`~crossencoder.CrossEncoder` from the options of :func:`add_model_arguments`."""
    from crossencoder import CrossEncoder

    backend_kwargs = {"quantize": args.quantize} if getattr(args, "quantize", None) else None
    if backend_kwargs and args.backend != "onnx":
        raise InputError("--quantize needs --backend onnx.")
    return CrossEncoder(
        args.model, max_length=args.max_length, device=args.device, dtype=args.dtype, backend=args.backend,
        backend_kwargs=backend_kwargs, max_batch_tokens=args.max_batch_tokens, revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )


def _open_binary(path: str) -> IO:
    if path == "-":
        # Tests (and some embedders) replace stdin with a text stream that has no byte buffer.
        return getattr(sys.stdin, "buffer", sys.stdin)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file.")
    return open(path, "rb")


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a UTF-8 file (``-`` = stdin).

    Lines are decoded one by one so a decoding error names the right line.

    Raises:
        InputError: the file does not exist or a line is not valid UTF-8.
    """
    stream = _open_binary(path)
    name = "<stdin>" if path == "-" else path
    try:
        for lineno, raw in enumerate(stream, start=1):
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"{name}:{lineno}: not valid UTF-8 ({exc.reason}).") from None
            line = raw.rstrip("\r\n").lstrip("\ufeff") if lineno == 1 else raw.rstrip("\r\n")
            if line.strip():
                yield lineno, line
    finally:
        if path != "-":
            stream.close()


def parse_json_line(name: str, lineno: int, line: str) -> dict[str, Any]:
    """Parse one JSONL line that must hold an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(obj, dict):
        raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}.")
    return obj


def pick_text(obj: dict[str, Any], keys: tuple[str, ...], name: str, lineno: int) -> str:
    """The first of ``keys`` present in a JSON object, which must be a string."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, str):
                raise InputError(f"{name}:{lineno}: field {key!r} must be a string, got {type(value).__name__}.")
            return value
    raise InputError(f"{name}:{lineno}: missing field, expected one of {', '.join(repr(k) for k in keys)}.")
