"""Figures of an annotation: the embedding by label, the evidence heatmap, the marker dotplot.

Each function returns a matplotlib figure; :func:`save_figure` writes it in the format the
file name asks for (``.png``, ``.pdf``, ``.svg`` …) via a temporary file, and
:func:`figure_data_uri` embeds it in the HTML report.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cello1.errors import InputError
from cello1.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GREY = "#9e9e9e"
NO_CALL = ("unknown", "unassigned")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def palette(n: int) -> list:
    """``n`` distinct colours (tab10 / tab20, cycling)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def embedding_figure(adata, key: str, basis: str | None, groupby: str | None = None) -> Figure:
    """Scatter of ``obsm[basis]`` coloured by ``obs[key]``; each cluster's id is written at its median."""
    if basis is None:
        raise InputError(
            "no 2-D embedding in obsm (e.g. X_umap) to plot; drop {plot} or compute a UMAP first", params=["plot"]
        )
    coords = np.asarray(adata.obsm[basis])[:, :2]
    labels = adata.obs[key]
    fig = _figure(8.0, 5.8)
    ax = fig.add_subplot(1, 1, 1)
    colours = palette(len(labels.cat.categories))
    missing = labels.isna().to_numpy()
    if missing.any():
        ax.scatter(*coords[missing].T, s=6, c="#dddddd", linewidths=0, label="(no cluster)")
    for i, category in enumerate(labels.cat.categories):
        mask = (labels == category).to_numpy()
        colour = GREY if category in NO_CALL else colours[i]
        ax.scatter(*coords[mask].T, s=8, color=colour, linewidths=0, label=f"{category} ({mask.sum()})")
    if groupby is not None:
        _draw_cluster_ids(ax, coords, adata.obs[groupby])
    name = basis[2:].upper() if basis.startswith("X_") else basis
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"cello1 annotation ({key})" + (f", cluster ids of {groupby}" if groupby else ""))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False, markerscale=2)
    fig.tight_layout()
    return fig


def _draw_cluster_ids(ax, coords: np.ndarray, clusters: pd.Series) -> None:
    import matplotlib.patheffects as effects

    values = clusters.astype(str).where(clusters.notna(), None).to_numpy()
    for cluster in pd.unique(values[pd.notna(values)]):
        x, y = np.median(coords[values == cluster], axis=0)
        ax.text(x, y, str(cluster), fontsize=9, weight="bold", ha="center", va="center",
                path_effects=[effects.withStroke(linewidth=3, foreground="white")])  # fmt: skip


def heatmap_figure(z: pd.DataFrame, chosen: list[str | None], title: str = "marker evidence") -> Figure:
    """Clusters × candidates heatmap of ``z`` (SD above random genes); each cluster's label boxed."""
    values = z.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig = _figure(min(2.5 + 0.45 * n_cols, 22), min(1.8 + 0.32 * n_rows, 30))
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    limit = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
    image = ax.imshow(np.nan_to_num(values, nan=0.0), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(n_cols), labels=list(z.columns), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), labels=list(z.index), fontsize=8)
    ax.set_xlabel("candidate")
    ax.set_ylabel("cluster")
    for i, label in enumerate(chosen):
        if label in z.columns:
            j = list(z.columns).index(label)
            ax.add_patch(_box(j, i))
    if n_rows * n_cols <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                if np.isfinite(values[i, j]):
                    text = f"{values[i, j]:.0f}"
                    colour = "white" if abs(values[i, j]) > 0.6 * limit else "#222222"  # readable on dark cells
                    ax.text(j, i, "0" if text == "-0" else text, ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="z: markers vs random genes (SD)")
    ax.set_title(f"{title}; boxed = the cluster's label")
    fig.tight_layout()
    return fig


def _box(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6)


def dotplot_figure(X, genes: np.ndarray, groups: pd.Series, markers: dict[str, list[str]]) -> Figure | None:
    """Scanpy ``dotplot`` of each assigned type's top markers (columns) across clusters (rows)."""
    import anndata as ad
    import matplotlib.pyplot as plt
    import scanpy as sc

    present = {name: genes_ for name, genes_ in markers.items() if genes_}
    if not present:
        return None
    names = pd.Index([str(g) for g in genes])
    keep = ~names.duplicated()
    wanted = sorted({g for gs in present.values() for g in gs})
    cols = np.flatnonzero(keep & names.isin(wanted))
    private = ad.AnnData(
        X=X[:, cols],
        obs=pd.DataFrame({"cluster": groups.to_numpy()}, index=[str(i) for i in range(len(groups))]),
    )
    private.var_names = names[cols]
    private = private[private.obs["cluster"].notna()].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot = sc.pl.dotplot(private, present, groupby="cluster", return_fig=True, show=False, standard_scale="var")
        plot.make_figure()
    fig = plot.fig
    plt.close(fig)  # scanpy draws through pyplot; keep its figure list empty
    return fig


def save_figure(fig, path: str | os.PathLike, param: str = "plot") -> Path:
    """Save ``fig`` in the format of ``path``'s suffix, atomically; an unknown suffix is an error."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InputError(
            f"{{{param}}} {path.name!r}: unknown figure format {fmt!r}; end the file name in one of "
            + ", ".join(f".{s}" for s in ("png", "pdf", "svg", "jpg", "tiff") if s in supported),
            params=[param],
        )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return path


def figure_data_uri(fig, fmt: str = "png", dpi: int = 110) -> str:
    """``data:image/png;base64,…`` of ``fig`` (for a self-contained HTML page)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    mime = "image/svg+xml" if fmt == "svg" else f"image/{fmt}"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


__all__ = [
    "dotplot_figure",
    "embedding_figure",
    "figure_data_uri",
    "heatmap_figure",
    "palette",
    "save_figure",
]
