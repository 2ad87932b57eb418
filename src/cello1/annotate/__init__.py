"""Annotate your own data: cluster-level puzzles on a user's AnnData, labels written back.

>>> import cello1
>>> annotated = cello1.annotate(adata, groupby="louvain", candidates=["B cell", "T cell", "monocyte"])
>>> annotated.obs["cello1_cell_type"]
"""

from __future__ import annotations

import sys
import types

from cello1.annotate.api import annotate, annotate_clusters
from cello1.annotate.core import ClusterCall, PuzzleAnswer, margin_confidence, repair_labels
from cello1.annotate.puzzles import UNASSIGNED, ClusterPuzzle, build_cluster_puzzles, parse_candidates
from cello1.annotate.writeback import cluster_table, plot_labels, save_h5ad, write_csv

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


class _CallableModule(types.ModuleType):
    """Once imported, ``cello1.annotate`` is this module (Python sets the submodule as an
    attribute of the package), which would shadow the function of the same name in
    ``cello1``'s flat API. Making the module callable keeps
    ``cello1.annotate(adata, ...)`` working either way."""

    def __call__(self, *args, **kwargs):
        return annotate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
