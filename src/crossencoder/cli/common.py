"""Pieces every CLI command shares: model options, model loading, JSON output and the input error."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from crossencoder.files import InputError

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


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


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``CrossEncoder(args.model, **options)`` keyword arguments from the options of :func:`add_model_arguments`."""
    backend_kwargs = {"quantize": args.quantize} if getattr(args, "quantize", None) else None
    if backend_kwargs and args.backend != "onnx":
        raise InputError("--quantize needs --backend onnx.")
    return {"max_length": args.max_length, "device": args.device, "dtype": args.dtype, "backend": args.backend,
            "backend_kwargs": backend_kwargs, "max_batch_tokens": args.max_batch_tokens, "revision": args.revision,
            "trust_remote_code": args.trust_remote_code}


def load_model(args: argparse.Namespace):
    """Build a :class:`~crossencoder.CrossEncoder` from the options of :func:`add_model_arguments`."""
    from crossencoder import CrossEncoder

    return CrossEncoder(args.model, **model_options(args))


def to_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes standard JSON: NaN and infinities (a constant column's correlation, a model
    that overflowed) become ``null`` instead of the ``NaN`` tokens that strict parsers reject."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), allow_nan=False, **kwargs)
