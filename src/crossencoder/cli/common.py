"""Pieces every CLI command shares: help layout, model options, model loading, JSON output and the input error."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from crossencoder.files import InputError

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


class HelpFormatter(argparse.HelpFormatter):
    """The help layout of every command: descriptions and epilogs wrap line by line, indented lines (examples,
    tables) stay as written, and each option shows its default unless its help already speaks of one."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n".join(indent + line if not line or line[0].isspace() else fill(line, width, indent)
                         for line in text.splitlines())

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or default == []):
            return text
        return f"{text} (default %(default)s)".lstrip()


def add_model_arguments(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL) -> None:
    """Add the options that choose and configure a model (``--model``, ``--device``, ``--backend`` ...)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=default, required=default is None,
                       help="local folder, Hugging Face Hub id or catalog short name (see `crossencoder models`)"
                       + (f"; default {default}" if default else ""))
    group.add_argument("--revision", help="Hub branch, tag or commit")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    group.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="precision (GPU)")
    group.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                       help="onnx: ONNX Runtime, faster on CPU (exported once, then cached)")
    group.add_argument("--quantize", choices=["int8"], help="onnx backend: quantize the exported model")
    group.add_argument("--max-length", type=int, help="maximum tokens per pair (default: the model's)")
    group.add_argument("--batch-size", type=int, default=32, help="maximum pairs per batch (default 32)")
    group.add_argument("--max-batch-tokens", type=int, help="maximum padded tokens per batch")
    group.add_argument("--trust-remote-code", action="store_true", help="allow code from the model folder")


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Refuse a zero or negative value of the named integer options (unset ones pass), by their flag names."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``CrossEncoder(args.model, **options)`` keyword arguments from the options of :func:`add_model_arguments`."""
    check_positive(args, "batch_size", "max_batch_tokens")
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


def require_one_label(model: Any, name: str, purpose: str) -> None:
    """Refuse a pair classifier where one score per pair is needed (``purpose``: what needs it)."""
    if model.num_labels != 1:
        raise InputError(f"{name} classifies pairs into {model.num_labels} labels; {purpose} needs a 1-label model "
                         "(classify pairs with `crossencoder score`).")


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
