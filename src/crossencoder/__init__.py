"""crossencoder: cross-encoders for re-ranking, semantic similarity and sentence-pair classification.

Example:
    >>> from crossencoder import CrossEncoder
    >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
    >>> model.rank("How many people live in Berlin?", ["Berlin has 3.5 million inhabitants.", "Paris is in France."])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from crossencoder.catalog import CATALOG, CatalogEntry
from crossencoder.errors import CrossEncoderError, MissingExtraError, ModelNotFoundError
from crossencoder.errors import missing_extra as _missing_extra

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from crossencoder.distributed import rank_dataset, score_dataset
    from crossencoder.model import CrossEncoder
    from crossencoder.retrieval import BiEncoder, Index, build_index, search
    from crossencoder.training import Trainer, TrainingArguments

# Everything that imports torch or an optional extra is exported lazily: `import crossencoder` (and so
# `crossencoder --help`) stays light, never imports torch/transformers until CrossEncoder is used, and never
# imports an extra (faiss, bm25s, fastapi, onnxruntime, ray) until its name is used.
_LAZY = {
    "CrossEncoder": "crossencoder.model",
    "Trainer": "crossencoder.training",
    "TrainingArguments": "crossencoder.training",
    "BiEncoder": "crossencoder.retrieval",
    "Index": "crossencoder.retrieval",
    "build_index": "crossencoder.retrieval",
    "search": "crossencoder.retrieval",
    "score_dataset": "crossencoder.distributed",
    "rank_dataset": "crossencoder.distributed",
}

__all__ = ["CATALOG", "CatalogEntry", "CrossEncoderError", "MissingExtraError", "ModelNotFoundError", "__version__",
           *_LAZY]


def _unavailable(name: str, error: ImportError) -> Any:
    """A stand-in for a function whose extra is missing: it raises ``error`` (which names the extra) when called.

    ``from crossencoder import *``, ``hasattr`` and ``help(crossencoder)`` then work on an install without the
    extra, and calling the function still says what to install.
    """

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise error.with_traceback(None)

    unavailable.__name__ = unavailable.__qualname__ = name
    unavailable.__doc__ = f"Unavailable: {error}"
    return unavailable


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            # An extra's module that is not installed gets "install the extra"; anything else is a real failure.
            error = _missing_extra(exc, f"crossencoder.{name}")
            if error is None:
                raise
            return _unavailable(name, error)
        value = getattr(module, name)
        globals()[name] = value  # resolve once
        return value
    raise AttributeError(f"module 'crossencoder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
