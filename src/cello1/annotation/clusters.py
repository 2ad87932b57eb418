"""Describe each cluster of a user's AnnData by a ranked gene list (the puzzle's "cell").

Two ways, chosen with ``genes``:

* ``"markers"`` — scanpy's ``rank_genes_groups`` (one cluster vs the rest), top-K genes
  by test score. Run on a private, minimal AnnData that shares the expression matrix,
  so the user's object (its ``uns``, ``obs``) is never touched.
* ``"mean"`` — the K genes with the highest mean expression in the cluster, the way
  CellPuzzles describes single cells (top expressed genes, descending).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cello1.errors import InputError

GENE_MODES = ("markers", "mean")
# rank_genes_groups cannot test a cluster with fewer cells than this; such clusters
# are described by their mean expression instead.
MIN_CELLS_FOR_MARKERS = 2


@dataclass
class Expression:
    """The matrix the descriptions are computed from, and where it came from."""

    X: np.ndarray | sp.spmatrix
    genes: np.ndarray  # gene symbols, one per column
    source: str  # "X", "raw" or "layers/<name>"


def expression_source(adata, layer: str | None = None, use_raw: bool | None = None) -> Expression:
    """Pick the expression matrix: ``layer``, else ``.raw`` (when present, or when
    ``use_raw=True``), else ``.X`` — scanpy's convention, since ``.X`` is often scaled.
    """
    if layer is not None and use_raw:
        raise InputError("use either {layer} or {use_raw}, not both", params=["layer", "use_raw"])
    if layer is not None:
        if layer not in adata.layers:
            available = ", ".join(adata.layers.keys()) or "none"
            raise InputError(
                f"layer {layer!r} not found (available layers: {available}); check {{layer}}", params=["layer"]
            )
        return Expression(adata.layers[layer], _gene_symbols(adata.var), f"layers/{layer}")
    if use_raw and adata.raw is None:
        raise InputError(
            "{use_raw} given but the data has no .raw; drop {use_raw} or pass {layer}", params=["use_raw", "layer"]
        )
    if adata.raw is not None and use_raw is not False:
        return Expression(adata.raw.X, _gene_symbols(adata.raw.var), "raw")
    return Expression(adata.X, _gene_symbols(adata.var), "X")


def _gene_symbols(var: pd.DataFrame) -> np.ndarray:
    # CELLxGENE files index genes by Ensembl id and keep the symbol in feature_name.
    names = var["feature_name"] if "feature_name" in var.columns else var.index
    return np.asarray(names.astype(str))


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
