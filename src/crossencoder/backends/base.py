"""The interface every inference backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Backend(Protocol):
    """Turns one padded batch of token ids into logits.

    Attributes:
        name: Short name (``"torch"``, ``"onnx"``).
        device: Where the batch is computed.
    """

    name: str
    device: torch.device

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score one batch.

        Args:
            features: ``input_ids``, ``attention_mask`` and, for models that use them, ``token_type_ids``:
                int64 CPU tensors of shape ``[batch, seq_len]``.

        Returns:
            float32 logits of shape ``[batch, num_labels]`` on the CPU.
        """
        ...
