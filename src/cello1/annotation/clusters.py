"""The expression a cluster is judged on, and how each cluster is described by genes.

:func:`expression_source` picks and checks the matrix (``layer`` > ``.raw`` > ``.X``),
recognises its state from a sample of its stored values and, when it is not
log-normalised, works on a **normalised copy** (counts per 10,000 + ``log1p``; the user's
object is never changed); a scaled matrix (negative values) is refused unless ``.raw``
can stand in. Gene ids become symbols: ``gene_key`` (a var column) when given, else the
var names, or — when those are Ensembl ids — the first var column holding symbols
(``feature_name``, ``gene_symbols``, …).

Cluster descriptions for puzzle solvers, chosen with ``genes``:

* ``"markers"`` — scanpy's ``rank_genes_groups`` (one cluster vs the rest), top-K genes
  by test score. Run on a private, minimal AnnData that shares the expression matrix,
  so the user's object (its ``uns``, ``obs``) is never touched.
* ``"mean"`` — the K genes with the highest mean expression in the cluster, the way
  CellPuzzles describes single cells (top expressed genes, descending).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cello1.errors import InputError
from cello1.genes import strip_ensembl_suffix

GENE_MODES = ("markers", "mean")
# rank_genes_groups cannot test a cluster with fewer cells than this; such clusters
# are described by their mean expression instead.
MIN_CELLS_FOR_MARKERS = 2
# var columns that hold gene symbols in common files (CELLxGENE, 10x via scanpy, …), in order
SYMBOL_COLUMNS = ("feature_name", "gene_symbols", "gene_symbol", "symbol", "symbols", "gene_name", "gene_names", "gene")
ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
# target sum of the normalised copy made from counts / TPM (scanpy's usual 1e4)
TARGET_SUM = 1e4
STATES = {
    "log": "log-normalised",
    "counts": "raw counts",
    "linear": "unlogged normalised values (TPM/CPM-like)",
}


@dataclass
class Expression:
    """The matrix clusters are judged on (log-normalised), and where it came from.

    Attributes
    ----------
    X
        Cells × genes, log-normalised (a normalised copy when the source was counts/TPM).
    genes
        Gene symbols, one per column (Ensembl suffixes stripped).
    source
        ``"X"``, ``"raw"`` or ``"layers/<name>"``.
    state
        What the source held: ``"log"``, ``"counts"`` or ``"linear"`` (see ``STATES``).
    gene_ids
        Where the symbols came from: ``"var_names"`` or ``"var['<column>']"``.
    notes
        Sentences on what was done to the data (normalisation, a scaled ``.X`` skipped …).
    """

    X: np.ndarray | sp.spmatrix
    genes: np.ndarray
    source: str
    state: str = "log"
    gene_ids: str = "var_names"
    notes: list[str] = field(default_factory=list)

    @property
    def ensembl_like(self) -> bool:
        """Whether most gene names are still Ensembl ids (no symbols were found)."""
        return looks_like_ensembl(self.genes)


def looks_like_ensembl(names) -> bool:
    """Whether most of (the first 2,000 of) ``names`` are Ensembl gene ids."""
    sample = [str(n) for n in list(names)[:2000]]
    return bool(sample) and np.mean([bool(ENSEMBL_ID.match(n)) for n in sample]) > 0.5


def expression_source(
    adata, layer: str | None = None, use_raw: bool | None = None, gene_key: str | None = None
) -> Expression:
    """The log-normalised expression to judge clusters on (see the module docstring).

    ``layer`` wins; else ``.raw`` when present (or when ``use_raw=True``), else ``.X`` —
    scanpy's convention, since ``.X`` is often scaled. A ``.X`` with negative values falls
    back to ``.raw`` when there is one; otherwise it is refused with the fix.
    """
    if layer is not None and use_raw:
        raise InputError("use either {layer} or {use_raw}, not both", params=["layer", "use_raw"])
    matrix, var, source = _pick_matrix(adata, layer, use_raw)
    state = matrix_state(matrix)
    notes: list[str] = []
    if state == "scaled":
        if source == "X" and adata.raw is not None and use_raw is not False:
            matrix, var, source = adata.raw.X, adata.raw.var, "raw"
            state = matrix_state(matrix)
            notes.append("X has negative values (scaled data), so .raw was used")
        if state == "scaled":
            raise InputError(
                f"{source} has negative values (scaled or regressed data) and marker evidence needs log-normalised "
                "or raw expression; pass {layer} naming a layer with counts or log-normalised values, or keep .raw",
                params=["layer"],
            )
    X = _as_float_csr(matrix)
    if state in ("counts", "linear"):
        X = log_normalise(X)
        notes.append(
            f"{source} holds {STATES[state]}: a normalised copy was used (counts per {TARGET_SUM:,.0f} + log1p); "
            "your data is unchanged"
        )
    genes, gene_ids = gene_symbols(var, gene_key)
    return Expression(X, genes, source, state, gene_ids, notes)


def _pick_matrix(adata, layer: str | None, use_raw: bool | None):
    if layer is not None:
        if layer not in adata.layers:
            available = ", ".join(adata.layers.keys()) or "none"
            raise InputError(
                f"layer {layer!r} not found (available layers: {available}); check {{layer}}", params=["layer"]
            )
        return adata.layers[layer], adata.var, f"layers/{layer}"
    if use_raw and adata.raw is None:
        raise InputError(
            "{use_raw} given but the data has no .raw; drop {use_raw} or pass {layer}", params=["use_raw", "layer"]
        )
    if adata.raw is not None and use_raw is not False:
        return adata.raw.X, adata.raw.var, "raw"
    return adata.X, adata.var, "X"


def _sample_values(X, n: int = 200_000) -> np.ndarray:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if values.size > n:  # evenly spaced: deterministic and spread over all cells
        values = values[np.linspace(0, values.size - 1, n).astype(np.int64)]
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def matrix_state(X) -> str:
    """``"scaled"`` (negative values), ``"counts"`` (integers), ``"linear"`` (non-integer,
    max > 50: TPM/CPM) or ``"log"``, judged from up to 200,000 stored values.
    """
    values = _sample_values(X)
    if values.size == 0 or not values.any():
        raise InputError("the expression matrix holds no non-zero values; pass {layer} with expression data",
                         params=["layer"])  # fmt: skip
    if values.min() < 0:
        return "scaled"
    nonzero = values[values != 0]
    if np.allclose(nonzero, np.round(nonzero)):
        return "counts"  # log-normalised data is (almost) never all integers
    return "linear" if nonzero.max() > 50 else "log"


def _as_float_csr(matrix) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.float32)
    return sp.csr_matrix(np.asarray(matrix, dtype=np.float32))


def log_normalise(X: sp.csr_matrix) -> sp.csr_matrix:
    """Counts per ``TARGET_SUM`` + ``log1p``, on a copy (what ``sc.pp.normalize_total`` + ``log1p`` do)."""
    out = sp.csr_matrix(X, dtype=np.float32, copy=True)
    sums = np.asarray(out.sum(axis=1), dtype=np.float64).ravel()
    sums[sums == 0] = 1.0
    out.data *= np.repeat((TARGET_SUM / sums).astype(np.float32), np.diff(out.indptr))  # row scaling in place
    np.log1p(out.data, out=out.data)
    return out


def gene_symbols(var: pd.DataFrame, gene_key: str | None = None) -> tuple[np.ndarray, str]:
    """Gene symbols for the columns of a matrix with this ``var``, and where they came from."""
    if gene_key is not None:
        if gene_key not in var.columns:
            available = ", ".join(map(str, var.columns)) or "none"
            raise InputError(
                f"{{gene_key}} column {gene_key!r} not in var (available: {available})", params=["gene_key"]
            )
        return _clean(var[gene_key]), f"var[{gene_key!r}]"
    if looks_like_ensembl(var.index):
        for column in SYMBOL_COLUMNS:
            if column in var.columns and not looks_like_ensembl(var[column].astype(str)):
                return _clean(var[column]), f"var[{column!r}]"
    return _clean(var.index), "var_names"


def _clean(names) -> np.ndarray:
    return np.asarray([strip_ensembl_suffix(str(n)) for n in names], dtype=object)


def cluster_means(X, codes: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean expression per cluster (clusters × genes, dense) via one sparse product."""
    n_cells = X.shape[0]
    indicator = sp.csr_matrix((np.ones(n_cells), (codes, np.arange(n_cells))), shape=(n_clusters, n_cells))
    sums = indicator @ X
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    return sums / np.maximum(counts, 1)[:, None]


def _top_genes(matrix: np.ndarray, genes: np.ndarray, k: int) -> list[list[str]]:
    from cello1.data import top_genes  # the builder's: descending, deterministic ties, no zeros

    return top_genes(matrix, list(genes), k=k)


def mean_gene_lists(expr: Expression, codes: np.ndarray, n_clusters: int, k: int) -> list[list[str]]:
    """Top ``k`` genes of each cluster by mean expression, highest first."""
    return _top_genes(cluster_means(expr.X, codes, n_clusters), expr.genes, k)


def marker_gene_lists(
    expr: Expression, codes: np.ndarray, n_clusters: int, k: int, method: str = "wilcoxon"
) -> list[list[str]]:
    """Top-K marker genes per cluster (one vs rest) from ``scanpy.tl.rank_genes_groups``."""
    import anndata as ad
    import scanpy as sc

    counts = np.bincount(codes, minlength=n_clusters)
    testable = np.flatnonzero(counts >= MIN_CELLS_FOR_MARKERS)
    fallback = mean_gene_lists(expr, codes, n_clusters, k)  # for untestable clusters
    if len(testable) < 2:  # a one-vs-rest test needs two groups
        return fallback
    group = pd.Categorical([str(c) for c in codes], categories=[str(i) for i in range(n_clusters)])
    private = ad.AnnData(X=expr.X, obs=pd.DataFrame({"cluster": group}, index=[str(i) for i in range(len(codes))]))
    private.var_names = pd.Index(_unique(expr.genes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "not log-transformed" / fragmentation notes
        sc.tl.rank_genes_groups(
            private, "cluster", groups=[str(i) for i in testable], method=method, n_genes=k, use_raw=False
        )
    names = private.uns["rank_genes_groups"]["names"]
    lists = list(fallback)
    for i in testable:
        lists[i] = [_strip_suffix(str(g)) for g in names[str(i)][:k]]
    return lists


def _unique(genes: np.ndarray) -> list[str]:
    """AnnData needs unique var names: repeats get a private suffix, stripped afterwards."""
    seen: dict[str, int] = {}
    out = []
    for g in map(str, genes):
        if g in seen:
            seen[g] += 1
            out.append(f"{g}\x00{seen[g]}")
        else:
            seen[g] = 0
            out.append(g)
    return out


def _strip_suffix(name: str) -> str:
    return name.split("\x00", 1)[0]


def describe_clusters(
    expr: Expression,
    cluster_codes: np.ndarray,
    n_clusters: int,
    genes: str = "markers",
    k: int = 50,
    marker_method: str = "wilcoxon",
) -> list[list[str]]:
    """Ranked gene list per cluster code ``0..n_clusters-1`` (cells with code -1 ignored)."""
    if genes not in GENE_MODES:
        raise InputError(f"{{genes}} must be one of {', '.join(GENE_MODES)}, not {genes!r}", params=["genes"])
    keep = cluster_codes >= 0
    X = expr.X[np.flatnonzero(keep)] if not keep.all() else expr.X
    sub = Expression(X, expr.genes, expr.source)
    codes = cluster_codes[keep]
    if genes == "mean":
        return mean_gene_lists(sub, codes, n_clusters, k)
    return marker_gene_lists(sub, codes, n_clusters, k, method=marker_method)
