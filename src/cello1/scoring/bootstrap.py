"""Vectorised, seeded bootstrap confidence intervals (numpy only).

A resample of n items is a row of n indices drawn with replacement; B rows are drawn
in chunks (bounded memory) and turned into a B × n matrix of how often each item was
drawn, so every metric — a mean, or a ratio of sums such as cell accuracy — of every
resample comes out of one matrix product (all metrics at once, not one gather each). All metrics of one
evaluation share the same resamples (so their intervals are mutually consistent), and a
paired comparison applies the same resamples to both systems, which is what makes the
difference's interval tighter than two separate intervals.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95
# Bound the B × n index matrix to about this many entries per chunk.
_CHUNK_ENTRIES = 2_000_000

Ratio = tuple[Sequence[float], Sequence[float] | None]  # (numerator, denominator or None = mean)


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of bootstrap index rows (each row: n indices drawn with replacement)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ENTRIES // max(n, 1))
    done = 0
    while done < resamples:
        size = min(per_chunk, resamples - done)
        yield rng.integers(0, n, size=(size, n), dtype=np.int64 if n > 2**31 - 1 else np.int32)
        done += size


def draw_counts(idx: np.ndarray) -> np.ndarray:
    """How often each of the n items occurs in each resample row (a B × n float matrix)."""
    rows, n = idx.shape
    flat = (idx + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def _stat(counts: np.ndarray, num: np.ndarray, den: np.ndarray | None) -> np.ndarray:
    bottom = counts @ den if den is not None else counts.sum(axis=1)
    return _ratio(counts @ num, bottom)


def _as_arrays(ratio: Ratio) -> tuple[np.ndarray, np.ndarray | None]:
    num, den = ratio
    return np.asarray(num, dtype=np.float64), None if den is None else np.asarray(den, dtype=np.float64)


def bootstrap_cis(
    metrics: Mapping[str, Ratio], resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = LEVEL
) -> dict[str, tuple[float, float]]:
    """Percentile intervals for several metrics over the same items and resamples."""
    arrays = {name: _as_arrays(ratio) for name, ratio in metrics.items()}
    n = len(next(iter(arrays.values()))[0]) if arrays else 0
    if n == 0 or resamples <= 0:
        return {name: (float("nan"), float("nan")) for name in arrays}
    names = list(arrays)
    nums = np.column_stack([arrays[name][0] for name in names])
    ones = np.ones(n)
    dens = np.column_stack([ones if arrays[name][1] is None else arrays[name][1] for name in names])
    chunks = []
    for idx in resample_indices(n, resamples, seed):
        counts = draw_counts(idx)
        chunks.append(_ratio(counts @ nums, counts @ dens))
    stats = np.concatenate(chunks)
    return {name: _percentiles(stats[:, j], level) for j, name in enumerate(names)}


def bootstrap_ci(
    num: Sequence[float],
    den: Sequence[float] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile interval of ``sum(num)/sum(den)`` (or ``mean(num)``) over resampled items."""
    return bootstrap_cis({"x": (num, den)}, resamples, seed, level)["x"]


def paired_bootstrap(
    num_a: Sequence[float],
    num_b: Sequence[float],
    den: Sequence[float] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float]:
    """Difference b − a of a metric over paired items, with a bootstrap interval and a
    two-sided p-value (share of resamples on the other side of zero, doubled).
    """
    a, d = _as_arrays((num_a, den))
    b = np.asarray(num_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired_bootstrap needs the same number of items on both sides")
    n = len(a)
    if n == 0:
        nan = float("nan")
        return {"diff": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
    full = np.ones((1, n))
    point = float(_stat(full, b, d)[0] - _stat(full, a, d)[0])
    diffs = np.concatenate(
        [_stat(c, b, d) - _stat(c, a, d) for c in map(draw_counts, resample_indices(n, max(resamples, 1), seed))]
    )
    low, high = _percentiles(diffs, level)
    diffs = diffs[~np.isnan(diffs)]
    if point == 0 or len(diffs) == 0:
        p = 1.0
    else:
        other_side = np.mean(diffs <= 0) if point > 0 else np.mean(diffs >= 0)
        p = float(min(1.0, 2 * other_side))
    return {"diff": point, "ci_low": low, "ci_high": high, "p_value": p}


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return (float(low), float(high))
