"""Building CellPuzzles from annotated single-cell data (AnnData / CELLxGENE .h5ad).

>>> from cello1.data import build_puzzles, pbmc68k_reduced, write_build
>>> result = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4)
>>> write_build(result, "puzzles/")
"""

from __future__ import annotations

from cello1._lazy import lazy_getattr
from cello1.data.config import BuildConfig
from cello1.data.context import context_sentence, is_missing

# Heavier parts (numpy, scipy, AnnData) load on first use, so `cello1 --help` stays quick.
_LAZY = {
    "BuildResult": "cello1.data.build",
    "build_puzzles": "cello1.data.build",
    "dataset_card": "cello1.data.card",
    "write_build": "cello1.data.card",
    "EMBEDDED_LABEL_KEY": "cello1.data.embedded",
    "pbmc68k_reduced": "cello1.data.embedded",
    "strip_ensembl_suffix": "cello1.genes",
    "top_gene_indices": "cello1.data.topgenes",
    "top_genes": "cello1.data.topgenes",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["BuildConfig", "context_sentence", "is_missing", *_LAZY]
