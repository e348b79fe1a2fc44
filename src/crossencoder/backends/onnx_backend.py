"""ONNX Runtime inference: a cached, fused (and optionally int8-quantized) export of the model."""

from __future__ import annotations

import copy
import os
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


class OnnxBackend:
    """Runs a cross-encoder's ONNX export with onnxruntime.

    Usually built by ``CrossEncoder(..., backend="onnx", backend_kwargs={...})``, which calls
    :meth:`from_cross_encoder`. The first use exports the model (about a second for MiniLM-size models) and caches
    the result; later loads reuse it after checking its sha256.

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
        providers: list[str] | None = None,
        quantize: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.quantize = quantize
        self.num_threads = num_threads
        self.session = open_session(self.path, num_threads, providers)
        self.providers = self.session.get_providers()
        self.device = torch.device("cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu")
        self.input_names = [i.name for i in self.session.get_inputs()]

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
        providers: list[str] | None = None,
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
            providers: onnxruntime execution providers; default CPU, or CUDA first when the cross-encoder's
                device is a GPU and onnxruntime-gpu is installed.

        Returns:
            The backend.

        Raises:
            ValueError: an unknown ``quantize`` mode, or a ``dtype`` other than float32 on the cross-encoder.
            MissingExtraError: onnxruntime / onnx are not installed (``pip install 'crossencoder[onnx]'``).
            RuntimeError: the export failed.

        Example:
            >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2", backend="onnx",
            ...                      backend_kwargs={"quantize": "int8", "num_threads": 2})
        """
        if quantize is not None and quantize not in QUANTIZE_MODES:
            raise ValueError(f"Unknown quantize mode {quantize!r}: use None or one of {', '.join(QUANTIZE_MODES)}.")
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}.")
        require_extra("onnx", "onnxruntime", feature="The onnx backend")
        import onnxruntime as ort
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
        return cls(path, num_threads=num_threads, providers=providers, quantize=quantize)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score one padded batch; returns float32 logits ``[batch, num_labels]`` on the CPU."""
        feed = {name: _as_int64(features[name]) for name in self.input_names if name in features}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        logits = self.session.run(["logits"], feed)[0]
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))

    def __repr__(self) -> str:
        return f"OnnxBackend({str(self.path)!r}, quantize={self.quantize!r}, providers={self.providers})"


def _as_int64(tensor: torch.Tensor | np.ndarray | Any) -> np.ndarray:
    array = tensor.numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return array.astype(np.int64, copy=False)


def _uses_token_types(model: torch.nn.Module) -> bool:
    """Whether the model has a token-type embedding with more than one type (RoBERTa's has one and ignores it)."""
    config = model.config
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1
