"""crossencoder: cross-encoders for re-ranking, semantic similarity and sentence-pair classification.

Example:
    >>> from crossencoder import CrossEncoder
    >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
    >>> model.rank("How many people live in Berlin?", ["Berlin has 3.5 million inhabitants.", "Paris is in France."])
"""

__version__ = "0.1.0"

from crossencoder.catalog import CATALOG, CatalogEntry
from crossencoder.errors import CrossEncoderError, ModelNotFoundError
from crossencoder.model import CrossEncoder

# The layers above the core are exported lazily: `import crossencoder` stays light and never imports an optional
# extra (faiss, bm25s, fastapi, onnxruntime, ray) until its name is used.
_LAZY = {
    "Trainer": "crossencoder.training",
    "TrainingArguments": "crossencoder.training",
    "BiEncoder": "crossencoder.retrieval",
    "Index": "crossencoder.retrieval",
    "build_index": "crossencoder.retrieval",
    "search": "crossencoder.retrieval",
    "score_dataset": "crossencoder.distributed",
    "rank_dataset": "crossencoder.distributed",
}

__all__ = ["CATALOG", "CatalogEntry", "CrossEncoder", "CrossEncoderError", "ModelNotFoundError", "__version__",
           *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crossencoder' has no attribute {name!r}")
