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

__all__ = ["CATALOG", "CatalogEntry", "CrossEncoder", "CrossEncoderError", "ModelNotFoundError", "__version__"]
