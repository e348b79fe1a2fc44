"""Long documents: split passages into overlapping token windows and aggregate the window scores per document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _word_start(doc: str, offsets: Sequence[tuple[int, int]], i: int, floor: int) -> int:
    """Token ``i`` moved back (not below ``floor``) to the first token of its word; ``i`` if no word start is found.

    A window that began inside a word ("##ing", "lin") would tokenize that tail as a word of its own. A token begins
    a word when text it does not cover precedes it (WordPiece, byte-level BPE) or when it carries its own leading
    space (SentencePiece's "▁word").
    """
    j = i
    while j > floor and offsets[j][0] <= offsets[j - 1][1] and not doc[offsets[j][0]:offsets[j][0] + 1].isspace():
        j -= 1
    return j if j > floor else i


def _char_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Character offsets of tokens ``[start, end)``; ``(0, 0)`` for a document without tokens."""
    return (offsets[start][0], offsets[end - 1][1]) if offsets else (0, 0)


def _spans(
    doc: str,
    offsets: Sequence[tuple[int, int]],
    room: int,
    stride: int,
    excess: Callable[[tuple[int, int]], int] = lambda span: 0,
) -> list[tuple[int, int]]:
    """Character spans of windows of at most ``room`` tokens of ``doc``, overlapping by at least ``stride`` tokens.

    ``excess(span)`` is how many tokens too long the window of ``span`` is once tokenized as a pair: a window is
    shrunk until that is 0, and the next one starts ``stride`` tokens before its end.
    """
    spans: list[tuple[int, int]] = []
    n, start = len(offsets), 0
    while True:
        end = min(start + room, n)
        while end - start > 1 and (over := excess(_char_span(offsets, start, end))) > 0:
            end = max(start + 1, end - over)
        spans.append(_char_span(offsets, start, end))
        if end >= n:
            return spans
        # A shrunk window may hold fewer than stride + 1 tokens: still move on by at least one token.
        start = _word_start(doc, offsets, max(end - stride, start + 1), start + 1)


def _encode(
    tokenizer: PreTrainedTokenizerBase, query: str, texts: list[str], max_length: int | None
) -> list[dict[str, list[int]]]:
    """Unpadded (query, text) encodings; truncated to ``max_length`` when given."""
    if not texts:
        return []
    truncation = {"truncation": "only_second", "max_length": max_length} if max_length else {}
    enc = tokenizer([query] * len(texts), texts, padding=False, verbose=False, **truncation)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{k: enc[k][w] for k in keys} for w in range(len(texts))]


def split_into_windows(
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    documents: Sequence[str],
    max_length: int,
    stride: int | None = None,
    prompt: str = "",
) -> Windows:
    """Split each (query, document) pair into windows of at most ``max_length`` tokens.

    Every window holds the whole query and a slice of the document; consecutive slices overlap by ``stride``
    tokens. A document that fits is one window. Cuts fall on the model's own token boundaries.

    Args:
        tokenizer: A fast (Rust) tokenizer.
        query: The query, kept whole in every window (after ``prompt``).
        documents: The passages.
        max_length: Tokens per window, special tokens included.
        stride: Overlap in tokens between consecutive windows (default :func:`default_stride`, at most half the
            tokens the query leaves to the passage).
        prompt: Text prepended to the query in every window (its tokens count against the window).

    Returns:
        The windows in document order.

    Raises:
        ValueError: the query leaves no room for the passage, or ``stride`` is negative / too large.
    """
    query = prompt + query
    query_tokens = len(tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"])
    room = max_length - query_tokens - tokenizer.num_special_tokens_to_add(pair=True)
    if room < 8:
        what, fix = ("The query with its prompt", "the query or the prompt") if prompt else ("The query", "the query")
        raise ValueError(
            f"{what} is {query_tokens} tokens long and leaves {room} tokens of the {max_length}-token window "
            f"for the passage; shorten {fix} or use long_documents=None (truncation)."
        )
    if stride is None:
        # Half the room at most: a long query leaves less of the window to the passage.
        stride = min(default_stride(max_length), room // 2)
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
    spans = [_spans(doc, doc_offsets, room, stride) for doc, doc_offsets in zip(documents, offsets)]
    flat = iter(_encode(tokenizer, query, [doc[a:b] for doc, doc_spans in zip(documents, spans)
                                           for a, b in doc_spans], None))
    encodings = [[next(flat) for _ in doc_spans] for doc_spans in spans]
    for d, doc in enumerate(documents):
        if any(len(e["input_ids"]) > max_length for e in encodings[d]):
            # On its own a slice can take more tokens than inside the document (a byte-level BPE word without its
            # leading space, a SentencePiece word given one). Cut again, shrinking each window until its pair
            # fits, so that no token of a reported span is truncated away.
            def excess(span: tuple[int, int], doc: str = doc) -> int:
                return len(tokenizer(query, doc[span[0]:span[1]], verbose=False)["input_ids"]) - max_length

            spans[d] = _spans(doc, offsets[d], room, stride, excess)
            encodings[d] = _encode(tokenizer, query, [doc[a:b] for a, b in spans[d]], max_length)
    for d, (doc_spans, doc_encodings) in enumerate(zip(spans, encodings)):
        windows.doc_index.extend([d] * len(doc_spans))
        windows.spans.extend(doc_spans)
        windows.encodings.extend(doc_encodings)
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
        document) of the window its score comes from: the opening one for ``first``, else the highest-scoring.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}: use one of {', '.join(AGGREGATIONS)}.")
    groups = np.split(np.asarray(scores), np.flatnonzero(np.diff(np.asarray(doc_index))) + 1) if num_docs else []
    if len(groups) != num_docs:
        raise ValueError(f"Expected windows for {num_docs} documents, got {len(groups)}.")
    reduce = {"max": np.max, "mean": np.mean, "first": lambda g: g[0]}[how]
    doc_scores = np.array([reduce(g) for g in groups], dtype=np.float32)
    return doc_scores, [0 if how == "first" else int(np.argmax(g)) for g in groups]
