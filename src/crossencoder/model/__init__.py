"""The cross-encoder model and its inference."""

from crossencoder.model.cross_encoder import CrossEncoder

__all__ = ["CrossEncoder"]
