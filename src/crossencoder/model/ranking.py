"""The one ordering every ranked list in crossencoder uses."""

from __future__ import annotations

import math
from collections.abc import Sequence


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores`` from best to worst: descending, stable on ties, NaN last.

    Example:
        >>> best_first([0.2, float("nan"), 0.9, 0.2])
        [2, 0, 3, 1]
    """
    return sorted(range(len(scores)), key=lambda i: math.inf if math.isnan(scores[i]) else -scores[i])
