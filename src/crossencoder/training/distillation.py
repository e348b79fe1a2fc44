"""Soft labels that blend gold scores with a teacher's, e.g. a bi-encoder's cosine similarity.

A cross-encoder and a bi-encoder make different mistakes: on STSb dev, the mean of their z-scored predictions beats
both. Training the cross-encoder on ``(1 - weight) * gold + weight * teacher`` labels moves part of that gain into the
single cross-encoder, at no cost at inference time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crossencoder.evaluation.samples import to_labelled_pair
from crossencoder.training.losses import BinaryCrossEntropyLoss
from crossencoder.training.mining import TextEncoder


def bi_encoder_similarity(
    examples: Sequence[Any],
    bi_encoder: TextEncoder | None = None,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> np.ndarray:
    """Cosine similarity of each labelled pair's two texts under a bi-encoder: teacher scores for
    :func:`blend_teacher_labels`.

    Args:
        examples: ``(text_a, text_b, label)`` tuples or dicts with the text and label keys of the trainer's data.
        bi_encoder: An object with ``encode(texts, batch_size, show_progress_bar, normalize)``; default
            :class:`crossencoder.retrieval.BiEncoder` (all-MiniLM-L6-v2).
        batch_size: Texts per encoding batch.
        show_progress_bar: As in the encoder's ``encode``.

    Returns:
        ``float32`` array of ``len(examples)`` cosines.

    Raises:
        TypeError, ValueError: an example is not a labelled pair (the message names its index).

    Example:
        >>> bi_encoder_similarity([("A man plays a guitar.", "A man is playing guitar.", 0.9)])
        array([0.93], dtype=float32)
    """
    parsed = [to_labelled_pair(x, i) for i, x in enumerate(examples)]
    if bi_encoder is None:
        from crossencoder.retrieval import BiEncoder

        bi_encoder = BiEncoder()
    # Training data repeats texts (a query per mined passage, an STS sentence in several pairs): embed each once.
    texts = list(dict.fromkeys(t for p in parsed for t in (p.text_a, p.text_b)))
    row = {text: i for i, text in enumerate(texts)}
    vectors = bi_encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar, normalize=True)
    a = vectors[[row[p.text_a] for p in parsed]]
    b = vectors[[row[p.text_b] for p in parsed]]
    return (a * b).sum(axis=1)


def blend_teacher_labels(
    examples: Sequence[Any],
    teacher_scores: Sequence[float] | np.ndarray,
    weight: float = 0.5,
) -> list[tuple[str, str, float]]:
    """Blend gold labels in [0, 1] with a teacher's scores, for :class:`~crossencoder.training.BinaryCrossEntropyLoss`.

    The teacher's scores are first put on the labels' scale by a least-squares line fitted on these examples (a
    cosine of 0.2 may mean "unrelated"), then clipped to [0, 1]. Each label becomes
    ``(1 - weight) * gold + weight * mapped teacher score``.

    Args:
        examples: ``(text_a, text_b, label)`` regression pairs with labels in [0, 1] (scale STS scores first).
        teacher_scores: One score per example, any scale (cosines, logits).
        weight: The teacher's share of each label, in [0, 1].

    Returns:
        ``(text_a, text_b, blended label)`` tuples in input order.

    Raises:
        ValueError: ``weight`` is outside [0, 1], the lengths differ, a label is not a number in [0, 1], a teacher
            score is not finite, or the teacher gives every example the same score.

    Example:
        >>> pairs = [("a", "b", 1.0), ("c", "d", 0.0), ("e", "f", 0.5)]
        >>> [round(y, 3) for _, _, y in blend_teacher_labels(pairs, [0.9, 0.1, 0.9], weight=0.5)]
        [0.875, 0.0, 0.625]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}.")
    teacher = np.asarray(teacher_scores, dtype=np.float64)
    if teacher.shape != (len(examples),):
        raise ValueError(f"Need one teacher score per example: got {len(examples)} examples and teacher scores of "
                         f"shape {teacher.shape}.")
    bad = np.flatnonzero(~np.isfinite(teacher))
    if bad.size:  # the line fit would fail deep in LAPACK ("SVD did not converge")
        raise ValueError(f"teacher_scores[{bad[0]}] is {teacher[bad[0]]}: teacher scores must be finite numbers.")
    # The same parsing and [0, 1] check as the BCE loss that will train on these labels.
    pairs = [BinaryCrossEntropyLoss().normalize(x, i) for i, x in enumerate(examples)]
    gold = np.array([p.label for p in pairs], dtype=np.float64)
    if teacher.size < 2 or np.ptp(teacher) == 0:
        raise ValueError("The teacher scores are all equal: nothing to learn from them.")
    slope, intercept = np.polyfit(teacher, gold, 1)
    mapped = np.clip(slope * teacher + intercept, 0.0, 1.0)
    blended = (1.0 - weight) * gold + weight * mapped
    return [(p.text_a, p.text_b, float(y)) for p, y in zip(pairs, blended)]
