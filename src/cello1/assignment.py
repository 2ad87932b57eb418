"""Assigning candidates to cells from a cells × candidates score matrix (higher = better)."""

from __future__ import annotations

import numpy as np


def optimal_assignment(scores: np.ndarray) -> list[int | None]:
    """Cell i -> candidate column maximising the total score, each column used once.

    ``scores`` is cells × candidates (higher is better), rectangular allowed: with more
    cells than candidates the leftover cells get ``None``.
    """
    from scipy.optimize import linear_sum_assignment

    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-D cells × candidates matrix")
    finite = np.where(np.isfinite(scores), scores, np.nanmin(scores[np.isfinite(scores)], initial=0.0) - 1e6)
    rows, cols = linear_sum_assignment(finite, maximize=True)
    result: list[int | None] = [None] * scores.shape[0]
    for r, c in zip(rows, cols, strict=True):
        result[int(r)] = int(c)
    return result


def argmax_assignment(scores: np.ndarray) -> list[int]:
    """Independent best candidate per cell (no one-to-one constraint)."""
    return [int(i) for i in np.argmax(np.asarray(scores, dtype=float), axis=1)]
