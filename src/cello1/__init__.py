"""cello1: CellPuzzles and Cell-o1 — build, solve, score, train, annotate.

The public API is flat, celltypist-style; heavy parts load lazily::

    import cello1
    train, test = cello1.build_puzzles(adata)          # AnnData -> puzzles
    preds = cello1.solve(test, solver="markers")        # any solver
    cello1.evaluate(preds)                              # the paper's metrics
    cello1.annotate(adata, groupby="louvain", candidates=[...])
"""

from __future__ import annotations

from cello1._lazy import lazy_dir, lazy_getattr
from cello1.puzzle import SYSTEM_MSG, Puzzle, parse_record, render_record

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "read_puzzles": "cello1.io",
    "write_puzzles": "cello1.io",
    "build_puzzles": "cello1.data",
    "pbmc68k_reduced": "cello1.data",
    "get_solver": "cello1.solvers",
    "solve": "cello1.solvers.run",
    "batch_reward": "cello1.scoring",
    "evaluate": "cello1.scoring",
    "annotate": "cello1.annotation",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
__dir__ = lazy_dir(globals(), _LAZY)


__all__ = ["SYSTEM_MSG", "Puzzle", "__version__", "parse_record", "render_record", *_LAZY]
