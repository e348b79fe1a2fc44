"""User inputs: validation of pairs, queries and documents (errors name the offending index), and the two pair
orders of symmetric scoring."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from crossencoder.files import unicode_problem

if TYPE_CHECKING:
    import torch


def _check_unicode(text: str, name: str) -> None:
    if problem := unicode_problem(text, name):
        raise ValueError(problem + ".")


def is_single_pair(pairs: Any) -> bool:
    """True for one pair (``("q", "d")``), False for a batch of pairs (sentence-transformers' rule)."""
    if isinstance(pairs, np.ndarray):
        return pairs.ndim == 1 and pairs.size > 0
    if isinstance(pairs, (list, tuple)):
        return len(pairs) > 0 and isinstance(pairs[0], str)
    return False


def _as_list(items: Any) -> list | None:
    """``items`` as a list when it is a collection of items (list, tuple, numpy array, pandas Series, generator...);
    None for a string, a mapping or a non-iterable."""
    if isinstance(items, np.ndarray):
        return items.tolist()
    if items is None or isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        return None
    return items if isinstance(items, list) else list(items)


def validate_pairs(pairs: Any) -> list[tuple[str, str]]:
    """Return ``pairs`` as a list of ``(str, str)``.

    Any collection of pairs is accepted (list, tuple, 2-D numpy array, pandas Series, generator), and each pair may
    be a tuple, a list or a numpy array.

    Raises:
        TypeError: ``pairs`` is not a collection of pairs, or an element is not a pair of strings.
        ValueError: a pair does not have exactly two texts, or a text is not valid Unicode.
    """
    items = _as_list(pairs)
    if items is None:
        raise TypeError(f"pairs must be a list of (text_a, text_b) pairs, got {type(pairs).__name__}.")
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(items):
        if isinstance(pair, np.ndarray):
            pair = pair.tolist()
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence):
            raise TypeError(f"pairs[{i}] must be a (text_a, text_b) pair, got {type(pair).__name__}.")
        if len(pair) != 2:
            raise ValueError(f"pairs[{i}] must have exactly 2 texts, got {len(pair)}.")
        a, b = pair
        for j, text in enumerate((a, b)):
            if not isinstance(text, str):
                raise TypeError(f"pairs[{i}][{j}] must be a str, got {type(text).__name__}.")
            _check_unicode(text, f"pairs[{i}][{j}]")
        out.append((a, b))
    return out


def validate_documents(query: Any, documents: Any) -> list[str]:
    """Check ``rank()`` inputs and return the documents as a list (from any collection: list, tuple, numpy array,
    pandas Series, generator).

    Raises:
        TypeError: the query is not a string, or a document is not a string.
        ValueError: the query or a document is not valid Unicode (a lone surrogate).
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}.")
    _check_unicode(query, "query")
    docs = _as_list(documents)
    if docs is None:
        raise TypeError(f"documents must be a list of str, got {type(documents).__name__}.")
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"documents[{i}] must be a str, got {type(doc).__name__}.")
        _check_unicode(doc, f"documents[{i}]")
    return list(docs)


def with_swapped(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` followed by each pair in the other order: the input of symmetric scoring."""
    return pairs + [(b, a) for a, b in pairs]


def average_orders(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the two halves of logits scored on :func:`with_swapped` pairs: one row per original pair."""
    n = len(logits) // 2
    return (logits[:n] + logits[n:]) / 2
