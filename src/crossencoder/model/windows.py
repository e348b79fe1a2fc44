"""Long documents: split passages into overlapping token windows and aggregate the window scores per document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from transformers import PreTrainedTokenizerBase

Aggregation = Literal["max", "mean", "first"]
AGGREGATIONS: tuple[str, ...] = ("max", "mean", "first")


@dataclass
class Windows:
    """Token windows of (query, passage) pairs.

    Attributes:
        encodings: Unpadded token ids of each window (``input_ids``[, ``token_type_ids``]).
        doc_index: The document each window belongs to.
        spans: ``(start, end)`` character offsets of each window's passage text in its document.
    """

    encodings: list[dict[str, list[int]]] = field(default_factory=list)
    doc_index: list[int] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)


def default_stride(max_length: int) -> int:
    """Tokens shared by consecutive windows: enough to keep a sentence that straddles a cut in one window."""
    return max(1, min(64, max_length // 8))


def _token_windows(offsets: Sequence[tuple[int, int]], room: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of at most ``room`` tokens, overlapping by at least ``stride`` tokens.

    Window starts are moved back to word starts where possible: a window that began inside a word ("##ing") would
    tokenize differently on its own. Ends need no such care (greedy sub-word tokenizers cut a word's prefix the same
    way), so the first window equals plain truncation.
    """
    n = len(offsets)

    def word_start(i: int, floor: int) -> int:
        j = i
        while j > floor and offsets[j][0] == offsets[j - 1][1]:  # no gap before token j: it continues a word
            j -= 1
        return j if j > floor else i

    ranges, start = [], 0
    while True:
        end = min(start + room, n)
        ranges.append((start, end))
        if end >= n:
            return ranges
        start = word_start(end - stride, start + 1)


def split_into_windows(
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    documents: Sequence[str],
    max_length: int,
    stride: int | None = None,
) -> Windows:
    """Split each (query, document) pair into windows of at most ``max_length`` tokens.

    Every window holds the whole query and a slice of the document; consecutive slices overlap by ``stride``
    tokens. A document that fits is one window. Cuts fall on the model's own token boundaries.

    Args:
        tokenizer: A fast (Rust) tokenizer.
        query: The query, kept whole in every window.
        documents: The passages.
        max_length: Tokens per window, special tokens included.
        stride: Overlap in tokens between consecutive windows (default :func:`default_stride`).

    Returns:
        The windows in document order.

    Raises:
        ValueError: the query leaves no room for the passage, or ``stride`` is negative / too large.
    """
    stride = default_stride(max_length) if stride is None else stride
    query_tokens = len(tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"])
    room = max_length - query_tokens - tokenizer.num_special_tokens_to_add(pair=True)
    if room < 8:
        raise ValueError(
            f"The query is {query_tokens} tokens long and leaves {room} tokens of the {max_length}-token window "
            "for the passage; shorten the query or use long_documents=None (truncation)."
        )
    if stride < 0 or stride >= room:
        raise ValueError(f"stride must be between 0 and {room - 1} tokens for this query, got {stride}.")
    windows = Windows()
    if not documents:
        return windows
    # Windows are cut on the passage's own token offsets and each window's text is then tokenized as an ordinary
    # pair, so a window's score is exactly predict((query, document[start:end])). (The tokenizer's built-in overflow
    # for pairs is not used: its behaviour differs between transformers releases.)
    # verbose=False: documents longer than the window are the point here, not a problem to warn about.
    offsets = tokenizer(list(documents), add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    texts: list[str] = []
    for d, (doc, doc_offsets) in enumerate(zip(documents, offsets)):
        for start, end in _token_windows(doc_offsets, room, stride):
            span = (doc_offsets[start][0], doc_offsets[end - 1][1]) if doc_offsets else (0, 0)
            windows.doc_index.append(d)
            windows.spans.append(span)
            texts.append(doc[span[0]:span[1]])
    enc = tokenizer([query] * len(texts), texts, truncation="only_second", max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    windows.encodings = [{k: enc[k][w] for k in keys} for w in range(len(texts))]
    return windows


def aggregate(
    scores: np.ndarray, doc_index: Sequence[int], num_docs: int, how: Aggregation = "max"
) -> tuple[np.ndarray, list[int]]:
    """Combine window scores into one score per document.

    Args:
        scores: One score per window.
        doc_index: The document of each window (windows of a document are consecutive).
        num_docs: Number of documents.
        how: ``max`` (best window), ``mean`` (all windows) or ``first`` (the opening window only).

    Returns:
        ``(document_scores, best_window)``: the aggregated scores and, per document, the index (within that
        document) of its highest-scoring window.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}: use one of {', '.join(AGGREGATIONS)}.")
    groups = np.split(np.asarray(scores), np.flatnonzero(np.diff(np.asarray(doc_index))) + 1) if num_docs else []
    if len(groups) != num_docs:
        raise ValueError(f"Expected windows for {num_docs} documents, got {len(groups)}.")
    reduce = {"max": np.max, "mean": np.mean, "first": lambda g: g[0]}[how]
    doc_scores = np.array([reduce(g) for g in groups], dtype=np.float32)
    return doc_scores, [int(np.argmax(g)) for g in groups]
