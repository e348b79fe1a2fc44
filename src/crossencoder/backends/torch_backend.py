"""PyTorch inference: CPU or GPU, fp32/fp16/bf16, SDPA attention where the model supports it."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from crossencoder.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks cuda, then mps, then cpu; anything else is parsed by torch."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Invalid device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps' or None.") from exc
    # Checked here so a missing GPU is named plainly instead of failing inside torch on the first .to().
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} was asked for, but CUDA is not available "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Use device='cpu'.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"Device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible.")
    if parsed.type == "mps" and not _mps_available():
        raise ValueError(f"Device {device!r} was asked for, but MPS is not available. Use device='cpu'.")
    return parsed


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Parse a precision name or ``torch.dtype``; ``None`` means float32.

    Raises:
        ValueError: anything but float32, float16 or bfloat16 (an integer dtype would otherwise fail inside
            torch's ``Module.to``).
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"Unsupported dtype {dtype}: use one of float32, float16, bfloat16.")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"Unknown dtype {dtype!r}: use one of float32, float16, bfloat16.") from None


def load_torch_model(
    source: str,
    config: PretrainedConfig,
    hub_kwargs: dict[str, Any],
    model_kwargs: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """Load ``AutoModelForSequenceClassification`` weights (safetensors preferred).

    The attention implementation is left to transformers: it picks SDPA where the architecture has it and eager
    attention elsewhere (asking for SDPA explicitly refuses architectures without it, such as MPNet).
    """
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, config=config, **hub_kwargs,
                                                                  **(model_kwargs or {}))
    except OSError as exc:
        raise ModelNotFoundError(f"Could not load the weights of {source!r}: {str(exc).splitlines()[0]}") from exc


class TorchBackend:
    """Runs a transformers sequence-classification model with torch.

    Args:
        model: The loaded model.
        device: Where to run it.
        dtype: Precision; float16/bfloat16 are meant for GPUs.
    """

    name = "torch"

    def __init__(self, model: PreTrainedModel, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device = device
        self.dtype = dtype
        self.model = model.to(device=device, dtype=dtype).eval()

    @torch.inference_mode()
    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
        logits = self.model(**features).logits
        return logits.float().cpu()
