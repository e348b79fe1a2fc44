"""Errors of the distributed jobs (kept free of pyarrow and ray imports, so they exist when those are missing)."""

from __future__ import annotations

from crossencoder.errors import CrossEncoderError, MissingExtraError, install_hint


class RayNotInstalledError(MissingExtraError):
    """Ray or pyarrow (the ``crossencoder[ray]`` extra) is needed for distributed jobs but is not installed."""

    def __init__(self) -> None:
        super().__init__(f"Distributed jobs need Ray: {install_hint('ray')}.", extra="ray")


class JobInputError(CrossEncoderError, ValueError):
    """A bad input or output location for a distributed job (missing file, column, mismatched resume)."""


class DistributedJobError(CrossEncoderError, RuntimeError):
    """A distributed job failed on a worker (the message carries the worker's error)."""
