"""Drawing puzzles from a pool of cells: N distinct types, one random cell of each.

Mirrors the original recipe (docs/format.md §4.2): per group (donor, and batch when present)
and per N, a quota of puzzles; each picks N distinct types at random and one random
cell per type, in the random order the types were drawn. We also skip exact repeats
(the same cells again), trying a bounded number of times.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

MAX_TRIES_PER_PUZZLE = 20


def rng_for(seed: int, *tags: object) -> np.random.Generator:
    """A generator that depends only on the seed and the tags (e.g. the group name), so
    one group's puzzles do not change when other files or groups are added.
    """
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(tag).encode("utf-8")) for tag in tags]
    return np.random.default_rng(words)


def n_values(n_min: int, n_max: int, n_types: int) -> range:
    """The N actually drawn for a group with ``n_types`` distinct types."""
    return range(n_min, min(n_max, n_types) + 1)


def sample_group(
    cells: np.ndarray,
    labels: Sequence[str],
    n_min: int,
    n_max: int,
    per_n: int | dict[int, int],
    rng: np.random.Generator,
) -> list[list[int]]:
    """Puzzles (lists of cell indices, in cell order) drawn from ``cells``.

    ``labels[i]`` is the type of cell ``i`` (indices into the global cell table).
    ``per_n`` is the target count for each N (or a mapping N -> count).
    """
    by_type: dict[str, list[int]] = {}
    for cell in cells.tolist():
        by_type.setdefault(labels[cell], []).append(cell)
    types = sorted(by_type)
    members = [np.asarray(by_type[t]) for t in types]
    puzzles: list[list[int]] = []
    for n in n_values(n_min, n_max, len(types)):
        quota = per_n.get(n, 0) if isinstance(per_n, dict) else per_n
        seen: set[frozenset[int]] = set()
        for _ in range(quota):
            for _try in range(MAX_TRIES_PER_PUZZLE):
                picked = rng.choice(len(types), size=n, replace=False)
                chosen = [int(members[t][rng.integers(len(members[t]))]) for t in picked]
                key = frozenset(chosen)
                if key not in seen:
                    seen.add(key)
                    puzzles.append(chosen)
                    break
    return puzzles


def stratified_sample(strata: Sequence[int], n_take: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_take`` items drawn so each stratum (e.g. N) keeps its share
    (largest-remainder rounding). Returned sorted.
    """
    strata = np.asarray(strata)
    total = strata.size
    if n_take >= total:
        return np.arange(total)
    values, counts = np.unique(strata, return_counts=True)
    exact = counts * (n_take / total)
    quota = np.floor(exact).astype(int)
    remainder = n_take - quota.sum()
    order = np.lexsort((values, -(exact - quota)))  # biggest remainders first, then by N
    quota[order[:remainder]] += 1
    picked = [
        rng.choice(np.flatnonzero(strata == v), size=q, replace=False) for v, q in zip(values, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)
