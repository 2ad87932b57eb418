"""What :func:`cello1.annotate` returns: the annotated AnnData, the per-cluster table, the
warnings, the candidate → Cell Ontology mapping and the evidence behind every call.
"""

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
        in ``obs[key_added]``, broad types in ``obs[key_added + "_coarse"]``, confidence in
        ``obs[key_added + "_confidence"]``, everything else in ``uns[key_added]``.
    table
        One row per (sample, cluster): ``split``, ``cluster``, ``label``, ``coarse_label``,
        ``confidence``, ``n_cells``, ``top_candidate``, ``runner_up``, ``evidence_genes``,
        ``top_genes``, ``warnings``, ``reasoning``.
    answers
        The decisions per sample (one :class:`~cello1.annotation.core.PuzzleAnswer` each).
    settings
        How the run was made (solver, mode, thresholds, expression used, command …).
    key_added
        The obs column holding the labels (and the ``uns`` key of the record).
    warnings
        Everything the user should know before trusting the labels (also in
        ``uns[key_added]["warnings"]``).
    notes
        Smaller facts about the run (how the candidate list was split …).
    mapping
        One row per candidate: the Cell Ontology term it maps to, how, and its markers.
    evidence
        The marker evidence (:class:`~cello1.annotation.evidence.Evidence`; groups × candidates).
    expression
        The (log-normalised) expression the evidence was measured on (for the report's dotplot).
    advice
        The warnings as templates whose ``{parameter}`` fields the command line spells as flags.
    """

    adata: Any
    table: pd.DataFrame
    answers: list[PuzzleAnswer] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    key_added: str = "cello1_cell_type"
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mapping: pd.DataFrame = field(default_factory=pd.DataFrame)
    evidence: Any = field(default=None, repr=False)
    expression: Any = field(default=None, repr=False)
    advice: list[Any] = field(default_factory=list, repr=False)  # the warnings as templates (CLI: flag names)

    @property
    def unassigned(self) -> list[str]:
        """Clusters left without a type by the one-type-per-cluster rule (``sample/cluster`` when split)."""
        return unassigned_clusters(self.table)

    @property
    def unknown(self) -> list[str]:
        """Clusters whose evidence was too weak for any candidate."""
        return unassigned_clusters(self.table, label="unknown")

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the cluster table (cluster → label → confidence → evidence) as CSV."""
        return write_csv(self.table, path)

    def plot(self, path: str | os.PathLike, basis: str | None = None) -> Path:
        """Save the embedding (``X_umap`` or another ``X_*``) coloured by label, cluster ids drawn,
        in the format the file name asks for (``.png``, ``.pdf``, ``.svg`` …).
        """
        return plot_labels(self.adata, self.key_added, path, basis, groupby=self.settings.get("groupby"))

    def report(self, path: str | os.PathLike) -> Path:
        """Write the self-contained HTML report (see :mod:`cello1.annotation.report`)."""
        from cello1.annotation.report import write_report

        return write_report(self, path)


__all__ = ["AnnotationResult"]
