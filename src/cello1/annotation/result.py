"""What :func:`cello1.annotate` returns: the annotated AnnData and the per-cluster table."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cello1.annotation.core import PuzzleAnswer
from cello1.annotation.writeback import plot_labels, unassigned_clusters, write_csv


@dataclass
class AnnotationResult:
    """The outcome of one annotation run.

    Attributes
    ----------
    adata
        The annotated AnnData (a copy, or the input itself with ``inplace=True``): labels
        in ``obs[key_added]``, confidence in ``obs[key_added + "_confidence"]``, details
        in ``uns``.
    table
        One row per (sample, cluster): ``split``, ``cluster``, ``label``, ``confidence``,
        ``n_cells``, ``top_genes``, ``reasoning`` (the evidence).
    answers
        The solver's answer per puzzle (one puzzle per sample).
    settings
        How the run was made (solver, gene mode, assignment rule …).
    key_added
        The obs column holding the labels.
    """

    adata: Any
    table: pd.DataFrame
    answers: list[PuzzleAnswer] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    key_added: str = "cello1_cell_type"

    @property
    def unassigned(self) -> list[str]:
        """Clusters left without a type (``sample/cluster`` when split by sample)."""
        return unassigned_clusters(self.table)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the cluster table (cluster → label → confidence → evidence) as CSV."""
        return write_csv(self.table, path)

    def plot(self, path: str | os.PathLike, basis: str | None = None) -> Path:
        """Save the embedding (``X_umap`` or another ``X_*``) coloured by label."""
        return plot_labels(self.adata, self.key_added, path, basis)


__all__ = ["AnnotationResult"]
