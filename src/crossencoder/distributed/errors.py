"""Errors of the distributed jobs (kept free of pyarrow and ray imports, so they exist when those are missing)."""

from __future__ import annotations

from crossencoder.errors import CrossEncoderError

INSTALL_HINT = "Distributed jobs need Ray: pip install 'crossencoder[ray]'."


# ImportError for callers that test for a missing extra; RuntimeError so the CLI prints it as one line.
class RayNotInstalledError(CrossEncoderError, ImportError, RuntimeError):
    """Ray or pyarrow (the ``crossencoder[ray]`` extra) is needed for distributed jobs but is not installed."""


class JobInputError(CrossEncoderError, ValueError):
    """A bad input or output location for a distributed job (missing file, column, mismatched resume)."""


class DistributedJobError(CrossEncoderError, RuntimeError):
    """A distributed job failed on a worker (the message carries the worker's error)."""
