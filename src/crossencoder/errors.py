"""Exceptions raised by crossencoder for user-facing problems (bad input, missing models)."""

from __future__ import annotations


class CrossEncoderError(Exception):
    """Base class of every error crossencoder raises on purpose; the CLI prints these as one line."""


class ModelNotFoundError(CrossEncoderError, OSError):
    """A model could not be found locally, in the Hub cache, or on the Hub."""
