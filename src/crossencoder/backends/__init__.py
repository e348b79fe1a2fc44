"""Inference backends: how a padded batch of token ids becomes logits."""

from __future__ import annotations

from crossencoder.backends.base import Backend
from crossencoder.backends.torch_backend import TorchBackend, resolve_device, resolve_dtype

BACKENDS = ("torch", "onnx")

__all__ = ["BACKENDS", "Backend", "TorchBackend", "resolve_device", "resolve_dtype"]
