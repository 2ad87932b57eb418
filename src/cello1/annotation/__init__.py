"""Annotate your own data: cluster-level puzzles on a user's AnnData, labels written back.

>>> import cello1
>>> annotated = cello1.annotate(adata, groupby="louvain", candidates=["B cell", "T cell", "monocyte"])
>>> annotated.obs["cello1_cell_type"]
"""

from __future__ import annotations

from cello1.annotation.api import annotate, annotate_clusters
from cello1.annotation.core import ClusterCall, PuzzleAnswer, margin_confidence, repair_labels
from cello1.annotation.puzzles import UNASSIGNED, ClusterPuzzle, build_cluster_puzzles, parse_candidates
from cello1.annotation.writeback import cluster_table, plot_labels, save_h5ad, write_csv

__all__ = [
    "UNASSIGNED",
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

