"""ONNX Runtime inference: a cached, fused (and optionally int8-quantized) export of the model."""

from __future__ import annotations

import copy
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crossencoder.backends.onnx_export import (
    QUANTIZE_MODES,
    ExportSettings,
    build_export,
    cpu_int8_profile,
    open_session,
)
from crossencoder.errors import require_extra

if TYPE_CHECKING:
    from crossencoder.model.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)


class OnnxBackend:
    """Runs a cross-encoder's ONNX export with onnxruntime.

    Usually built by ``CrossEncoder(..., backend="onnx", backend_kwargs={...})``, which calls
    :meth:`from_cross_encoder`. The first use exports the model (about a second for MiniLM-size models) and caches
    the result; later loads reuse it after checking its sha256. A backend built that way exports again when the
    cross-encoder's torch weights are written in place afterwards (``model.model.load_state_dict(...)``, an
    optimizer step, ``+=`` under ``no_grad``) or ``model.model`` is replaced, so it never scores with stale weights.
    Writes through ``tensor.data`` and parameters swapped for new objects (``load_state_dict(..., assign=True)``)
    are invisible to torch's version counters and are not noticed.

    Args:
        path: The ``.onnx`` file.
        num_threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        quantize: The quantization the file carries, for display (``None`` or ``"int8"``).

    Raises:
        RuntimeError: the file cannot be loaded by onnxruntime.
    """

    name = "onnx"

    def __init__(
        self,
        path: str | os.PathLike,
        num_threads: int | None = None,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
        quantize: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.quantize = quantize
        self.num_threads = num_threads
        self.session = open_session(self.path, num_threads, providers)
        self.providers = self.session.get_providers()
        self.device = torch.device("cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu")
        self.input_names = [i.name for i in self.session.get_inputs()]
        # Set by from_cross_encoder: what to watch for weight changes, and the options to export again with.
        self._watch: _WeightsWatch | None = None
        self._options: dict[str, Any] = {}
        self._reexport_lock = threading.Lock()

    @classmethod
    def from_cross_encoder(
        cls,
        cross_encoder: CrossEncoder,
        quantize: str | None = None,
        num_threads: int | None = None,
        optimize: bool = True,
        first_token: bool = True,
        opset: int = 17,
        per_channel: bool | None = None,
        reduce_range: bool | None = None,
        quantize_attention: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
    ) -> OnnxBackend:
        """Export (or reuse the cached export of) a loaded cross-encoder and open it with onnxruntime.

        Args:
            cross_encoder: The loaded model; its torch weights are what gets exported.
            quantize: ``None`` (fp32) or ``"int8"``: dynamic int8 weights and activations for the matrix
                multiplications, with settings chosen for this CPU (see :func:`cpu_int8_profile`).
            num_threads: onnxruntime intra-op threads (None: one per physical core).
            optimize: Fuse attention / layer-norm / GELU with onnxruntime's transformer optimizer (BERT-like models;
                other architectures get onnxruntime's generic graph optimisations only).
            first_token: Compute the last encoder layer for the first token only, the one position the
                classification head reads (BERT / RoBERTa / XLM-R / ELECTRA; about a sixth less work for a 6-layer
                model, same scores up to float rounding; kept only if its logits match the full model's).
            opset: ONNX opset of the export.
            per_channel, reduce_range, quantize_attention: Override the int8 settings chosen for this CPU.
            cache_dir: Folder for exports (default: beside a writable local model folder, else
                ``~/.cache/crossencoder/onnx`` or ``$CROSSENCODER_CACHE/onnx``).
            providers: onnxruntime execution providers, as onnxruntime takes them: names, or (name, options)
                tuples such as ``("CUDAExecutionProvider", {"device_id": 1})``; default CPU, or CUDA first when
                the cross-encoder's device is a GPU and onnxruntime-gpu is installed.

        Returns:
            The backend.

        Raises:
            ValueError: an option of the wrong type or range (named as ``backend_kwargs['name']``), a provider
                this onnxruntime lacks, or a ``dtype`` other than float32 on the cross-encoder.
            MissingExtraError: onnxruntime / onnx are not installed (``pip install 'crossencoder[onnx]'``).
            RuntimeError: the export failed.

        Example:
            >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2", backend="onnx",
            ...                      backend_kwargs={"quantize": "int8", "num_threads": 2})
        """
        _check_options(quantize=quantize, num_threads=num_threads, optimize=optimize, first_token=first_token,
                       opset=opset, per_channel=per_channel, reduce_range=reduce_range,
                       quantize_attention=quantize_attention, cache_dir=cache_dir, providers=providers)
        require_extra("onnx", "onnxruntime", feature="The onnx backend")
        import onnxruntime as ort

        if providers is not None:
            unknown = [name for name in map(_provider_name, providers) if name not in ort.get_available_providers()]
            if unknown:
                # onnxruntime would print a notice and quietly run on the CPU instead.
                raise ValueError(f"backend_kwargs['providers']: {', '.join(map(repr, unknown))} not available in "
                                 f"this onnxruntime; available: {', '.join(ort.get_available_providers())}.")
        profile = cpu_int8_profile()
        settings = ExportSettings(
            opset=opset, optimize=optimize, first_token=first_token, quantize=quantize,
            per_channel=profile["per_channel"] if per_channel is None else per_channel,
            reduce_range=profile["reduce_range"] if reduce_range is None else reduce_range,
            quantize_attention=profile["quantize_attention"] if quantize_attention is None else quantize_attention,
        )
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if cross_encoder.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        if cross_encoder.dtype != torch.float32:
            raise ValueError(
                f"dtype={cross_encoder.dtype} applies to the torch backend; the onnx backend runs float32 "
                "(use backend_kwargs={'quantize': 'int8'} for a smaller, faster model)."
            )
        model = cross_encoder.model
        parameter = next(model.parameters())
        if parameter.dtype != torch.float32 or parameter.device.type != "cpu":
            # Export from a float32 CPU copy: the cross-encoder's own weights stay as loaded (save() writes them).
            model = copy.deepcopy(model).float().cpu()
        input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                       if n in cross_encoder.tokenizer.model_input_names or n == "attention_mask"]
        if "token_type_ids" in input_names and not _uses_token_types(model):
            input_names.remove("token_type_ids")
        path = build_export(
            model, input_names, settings, cross_encoder.model_path, cross_encoder.model_name_or_path, cache_dir,
        )
        backend = cls(path, num_threads=num_threads, providers=providers, quantize=quantize)
        backend._watch = _WeightsWatch(cross_encoder)
        backend._options = {
            "quantize": quantize, "num_threads": num_threads, "optimize": optimize, "first_token": first_token,
            "opset": opset, "per_channel": per_channel, "reduce_range": reduce_range,
            "quantize_attention": quantize_attention, "cache_dir": cache_dir, "providers": providers,
        }
        return backend

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score one padded batch; returns float32 logits ``[batch, num_labels]`` on the CPU."""
        if self._watch is not None and self._watch.changed():
            self._export_again()
        feed = {name: _as_int64(features[name]) for name in self.input_names if name in features}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        logits = self.session.run(["logits"], feed)[0]
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))

    def _export_again(self) -> None:
        """Replace the session with an export of the cross-encoder's current weights (once, across threads)."""
        with self._reexport_lock:
            owner = self._watch.owner() if self._watch is not None else None
            if owner is None or not self._watch.changed():  # another thread already did it
                return
            logger.warning("The torch weights of %r changed after their ONNX export; exporting them again.",
                           owner.model_name_or_path)
            fresh = OnnxBackend.from_cross_encoder(owner, **self._options)
            self.path, self.session, self.providers = fresh.path, fresh.session, fresh.providers
            self.input_names, self._watch = fresh.input_names, fresh._watch

    def __repr__(self) -> str:
        return f"OnnxBackend({str(self.path)!r}, quantize={self.quantize!r}, providers={self.providers})"


class _WeightsWatch:
    """Notices when a cross-encoder's torch weights change after the export.

    Compares the model object and the version counter of each parameter and buffer, which torch bumps on every
    in-place write: about ten microseconds per batch for a MiniLM, where hashing the weights again would take as
    long as scoring. Holds the cross-encoder weakly (it owns the backend).
    """

    def __init__(self, cross_encoder: CrossEncoder) -> None:
        self.owner = weakref.ref(cross_encoder)
        self.model = cross_encoder.model
        self.tensors = [*self.model.parameters(), *self.model.buffers()]
        self.versions = [t._version for t in self.tensors]

    def changed(self) -> bool:
        owner = self.owner()
        if owner is None:
            return False
        return owner.model is not self.model or [t._version for t in self.tensors] != self.versions


def _check_options(**options: Any) -> None:
    """Refuse backend_kwargs of the wrong type or range by name, before anything is exported.

    Raises:
        ValueError: the first bad option, named as ``backend_kwargs['name']``.
    """
    def refuse(name: str, expected: str) -> None:
        raise ValueError(f"backend_kwargs[{name!r}] must be {expected}, got {options[name]!r}.")

    if options["quantize"] is not None and options["quantize"] not in QUANTIZE_MODES:
        refuse("quantize", "None or one of " + ", ".join(map(repr, QUANTIZE_MODES)))
    threads = options["num_threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        refuse("num_threads", "a positive integer or None")
    # A string such as "no" would otherwise count as True (and fragment the cache key).
    for name in ("optimize", "first_token"):
        if not isinstance(options[name], bool):
            refuse(name, "True or False")
    for name in ("per_channel", "reduce_range", "quantize_attention"):
        if options[name] is not None and not isinstance(options[name], bool):
            refuse(name, "True, False or None")
    opset = options["opset"]
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
        refuse("opset", "a positive integer")
    if options["cache_dir"] is not None and not isinstance(options["cache_dir"], (str, os.PathLike)):
        refuse("cache_dir", "a folder path")
    providers = options["providers"]
    if providers is not None and (isinstance(providers, str) or not isinstance(providers, (list, tuple))
                                  or not providers or not all(map(_is_provider, providers))):
        refuse("providers", 'a non-empty list of provider names or (name, options dict) tuples such as '
                            '["CPUExecutionProvider"] or [("CUDAExecutionProvider", {"device_id": 1})]')


def _is_provider(entry: Any) -> bool:
    """Whether ``entry`` is what onnxruntime takes in its ``providers`` list: a name or a (name, options) tuple."""
    return isinstance(entry, str) or (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
                                      and isinstance(entry[1], dict))


def _provider_name(entry: str | tuple[str, dict[str, Any]]) -> str:
    """The provider name of a ``providers`` entry (see :func:`_is_provider`)."""
    return entry if isinstance(entry, str) else entry[0]


def _as_int64(tensor: torch.Tensor | np.ndarray | Any) -> np.ndarray:
    array = tensor.numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return array.astype(np.int64, copy=False)


def _uses_token_types(model: torch.nn.Module) -> bool:
    """Whether the model has a token-type embedding with more than one type (RoBERTa's has one and ignores it)."""
    config = model.config
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1
