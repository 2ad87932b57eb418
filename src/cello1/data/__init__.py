"""Building CellPuzzles from annotated single-cell data (AnnData / CELLxGENE .h5ad).

>>> from cello1.data import build_puzzles, pbmc68k_reduced, write_build
>>> result = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4)
>>> write_build(result, "puzzles/")
"""

from __future__ import annotations

from cello1.data.build import BuildConfig, BuildResult, build_puzzles
from cello1.data.card import dataset_card, write_build
from cello1.data.context import context_sentence, is_missing
from cello1.data.embedded import EMBEDDED_LABEL_KEY, pbmc68k_reduced
from cello1.data.topgenes import strip_ensembl_suffix, top_gene_indices, top_genes

__all__ = [
    "EMBEDDED_LABEL_KEY",
    "BuildConfig",
    "BuildResult",
    "build_puzzles",
    "context_sentence",
    "dataset_card",
    "is_missing",
    "pbmc68k_reduced",
    "strip_ensembl_suffix",
    "top_gene_indices",
    "top_genes",
    "write_build",
]
