"""Annotate your own data: cluster-level puzzles on a user's AnnData, labels written back.

>>> import cello1
>>> result = cello1.annotate(adata, groupby="louvain", candidates=["B cell", "T cell", "monocyte"])
>>> result.adata.obs["cello1_cell_type"], result.table
"""

from __future__ import annotations

from cello1.annotation.api import annotate, annotate_clusters
from cello1.annotation.core import ClusterCall, PuzzleAnswer, margin_confidence, repair_labels
from cello1.annotation.puzzles import ClusterPuzzle, build_cluster_puzzles, parse_candidates
from cello1.annotation.result import AnnotationResult
from cello1.annotation.writeback import cluster_table, plot_labels, save_h5ad, write_csv
from cello1.vocabulary import UNASSIGNED

__all__ = [
    "UNASSIGNED",
    "AnnotationResult",
    "ClusterCall",
    "ClusterPuzzle",
    "PuzzleAnswer",
    "annotate",
    "annotate_clusters",
    "build_cluster_puzzles",
    "cluster_table",
    "margin_confidence",
    "parse_candidates",
    "plot_labels",
    "repair_labels",
    "save_h5ad",
    "write_csv",
]
