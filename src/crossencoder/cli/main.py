"""Entry point of the ``crossencoder`` command: one module per command group, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from crossencoder import __version__
from crossencoder.cli.common import HelpFormatter
from crossencoder.errors import CrossEncoderError, missing_extra

# Command modules under crossencoder.cli; heavy imports happen inside their handlers, so --help stays fast.
COMMAND_MODULES = ["predict", "serve", "train", "bench", "retrieval"]

EXAMPLES = """\
examples:
  crossencoder rank --query "How many people live in Berlin?" passages.txt
  crossencoder rank -m ms-marco-MiniLM-L6-v2 -q "berlin population" --top-k 3 --json passages.jsonl
  printf 'A man eats\\tSomeone is eating\\n' | crossencoder score -m nli-deberta-v3-base -
  crossencoder models
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossencoder",
        description="Cross-encoders: re-rank passages, score sentence pairs, train, evaluate and serve.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crossencoder {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"crossencoder.cli.{name}").register(subparsers)
    for command in subparsers.choices.values():
        command.formatter_class = HelpFormatter
    return parser


def _quiet_transformers() -> None:
    """Silence transformers' load reports ("Some weights were not initialized ...") and bars: noise on a command
    line. Through the environment while transformers is not imported yet, so that commands which never load a
    model (``models``, a bad input caught early) do not pay its second-long import; a setting the user exported
    wins."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    else:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit 1 (set CROSSENCODER_DEBUG=1 for a traceback)."""
    args = None
    try:
        # Inside the try: a Ctrl-C while the parser or transformers import (seconds) is an interruption too.
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s: %(message)s")
        if not args.verbose:
            _quiet_transformers()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("crossencoder: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `crossencoder rank ... | head` closes stdout early: not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (CrossEncoderError, OSError, ValueError, TypeError, RuntimeError) as exc:
        if os.environ.get("CROSSENCODER_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"crossencoder: error: {message}", file=sys.stderr)
        return 1
    except ImportError as exc:
        # An optional extra that the command needs is not installed: say which one (anything else is a bug).
        error = missing_extra(exc, f"crossencoder {args.command}" if args is not None else None)
        if error is None or os.environ.get("CROSSENCODER_DEBUG"):
            raise
        print(f"crossencoder: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
