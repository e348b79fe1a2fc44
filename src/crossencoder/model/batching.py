"""Length-sorted, token-budget batching and padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> Iterator[list[int]]:
    """Group indices into batches, longest first, so each batch's padded size stays within a budget.

    Inputs are sorted by length (descending, stable), so the first item of a batch is its longest and the padded
    size of a batch is ``len(batch) * lengths[batch[0]]``. A batch closes when it holds ``batch_size`` items or when
    one more item would exceed ``max_batch_tokens`` padded tokens (a single over-budget item still forms a batch).

    Args:
        lengths: Token count of each input.
        batch_size: Maximum number of inputs per batch.
        max_batch_tokens: Maximum padded tokens per batch, or None for no token limit.

    Yields:
        Lists of indices into ``lengths``.

    Example:
        >>> list(token_budget_batches([3, 10, 5, 4], batch_size=8, max_batch_tokens=20))
        [[1, 2], [3, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be a positive integer or None, got {max_batch_tokens}.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (
            len(batch) >= batch_size
            or (max_batch_tokens is not None and (len(batch) + 1) * lengths[batch[0]] > max_batch_tokens)
        ):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def pad_batch(
    encodings: Sequence[dict[str, list[int]]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad token-id lists into int64 tensors: ``input_ids``, ``attention_mask`` and ``token_type_ids`` if present."""
    width = max(len(e["input_ids"]) for e in encodings)
    keys = [k for k in ("input_ids", "token_type_ids") if k in encodings[0]]
    out = {k: torch.zeros((len(encodings), width), dtype=torch.long) for k in keys}
    out["input_ids"].fill_(pad_token_id)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for row, enc in enumerate(encodings):
        n = len(enc["input_ids"])
        cols = slice(0, n) if padding_side == "right" else slice(width - n, width)
        for k in keys:
            out[k][row, cols] = torch.tensor(enc[k], dtype=torch.long)
        mask[row, cols] = 1
    out["attention_mask"] = mask
    return out
