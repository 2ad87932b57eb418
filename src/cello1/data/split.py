"""Train/test splits without leakage, and the leakage report.

* ``donor``: whole donors go to test, so no test cell (or donor) is ever seen in train;
* ``cell``: one donor (or none known) — cells are partitioned before any puzzle is
  drawn, and cells sharing an identical ranked gene list always land on the same side;
* ``random``: the original behaviour (a stratified sample of *puzzles*), which leaks
  cells into test; kept on purpose to reproduce the official benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cello1.data.audit import audit


def partition_cells(
    groups: Sequence[np.ndarray],
    labels: Sequence[str],
    gene_keys: Sequence[Any],
    test_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean ``is_test`` per cell: within every group and type, about
    ``test_fraction`` of the cells (at least one when the type has two or more
    distinct gene lists, never all of them) go to test. Cells with the same ranked
    gene list (``gene_keys``) are kept together; a list seen on both sides anywhere
    goes to train.
    """
    is_test = np.zeros(len(labels), dtype=bool)
    for cells in groups:
        by_type: dict[str, list[int]] = {}
        for cell in cells.tolist():
            by_type.setdefault(labels[cell], []).append(cell)
        for label in sorted(by_type):
            by_key: dict[Any, list[int]] = {}
            for cell in by_type[label]:
                by_key.setdefault(gene_keys[cell], []).append(cell)
            keys = list(by_key)
            if len(keys) < 2:
                continue
            target = min(max(1, round(test_fraction * len(by_type[label]))), len(by_type[label]) - 1)
            taken = 0
            for i in rng.permutation(len(keys)).tolist():
                if taken >= target or len(by_key[keys[i]]) + taken > len(by_type[label]) - 1:
                    continue
                is_test[by_key[keys[i]]] = True
                taken += len(by_key[keys[i]])
    # an identical gene list in two groups/types: keep every copy in train
    test_keys = {gene_keys[i] for i in np.flatnonzero(is_test)}
    train_keys = {gene_keys[i] for i in np.flatnonzero(~is_test)}
    for i in np.flatnonzero(is_test):
        if gene_keys[i] in train_keys and gene_keys[i] in test_keys:
            is_test[i] = False
    return is_test


def choose_test_donors(donor_counts: dict[str, int], target: int, rng: np.random.Generator) -> set[str]:
    """Donors (in a seeded random order) added to test until ``target`` puzzles are
    reached; at least one donor always stays in train.
    """
    donors = sorted(donor_counts)
    chosen: set[str] = set()
    total = 0
    for i in rng.permutation(len(donors)).tolist():
        if total >= target or len(chosen) >= len(donors) - 1:
            break
        chosen.add(donors[i])
        total += donor_counts[donors[i]]
    return chosen


def leakage_report(train: Sequence[Any], test: Sequence[Any], split: str) -> dict[str, Any]:
    """How much of the test set was seen in train: test puzzles containing a train
    cell (by source + cell id), or a cell whose exact ranked gene list occurs in train,
    and test donors also present in train.
    """
    train_cells = {(p.source, c) for p in train for c in (p.cell_ids or [])}
    train_donors = {p.donor for p in train if p.donor is not None}
    by_id = sum(any((p.source, c) in train_cells for c in (p.cell_ids or [])) for p in test)
    by_list = audit(train, test).leaked_puzzles  # the same code as `cello1 audit`
    test_cells = [(p.source, c) for p in test for c in (p.cell_ids or [])]
    test_donors = {p.donor for p in test if p.donor is not None}
    n_test = len(test)

    def share(count: int) -> float:
        return round(count / n_test, 6) if n_test else 0.0

    return {
        "split": split,
        "n_train": len(train),
        "n_test": n_test,
        "test_puzzles_with_train_cell": by_id,
        "test_puzzles_with_train_cell_share": share(by_id),
        "test_puzzles_with_train_gene_list": by_list,
        "test_puzzles_with_train_gene_list_share": share(by_list),
        "test_donors": len(test_donors),
        "test_donors_in_train": len(test_donors & train_donors),
        "test_cells": len(test_cells),
        "distinct_test_cells": len(set(test_cells)),
    }
