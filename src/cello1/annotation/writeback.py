"""Write the decisions back: ``obs`` column, ``uns['cello1']``, CSV, plot, h5ad file.

Everything put in ``uns`` is a plain string / number / bool / numpy array or a dict of
those, so ``write_h5ad`` + ``read_h5ad`` round-trips it. Files are written to a temporary
path and renamed, so a failure never leaves half a file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cello1.annotation.core import PuzzleAnswer
from cello1.annotation.puzzles import POOLED
from cello1.errors import InputError
from cello1.io import atomic_path
from cello1.vocabulary import UNASSIGNED

UNS_KEY = "cello1"


def cluster_table(answers: list[PuzzleAnswer]) -> pd.DataFrame:
    """One row per (sample, cluster): label, confidence, size, genes, reasoning."""
    rows = [
        {
            "split": call.split,
            "cluster": call.cluster,
            "label": call.label,
            "confidence": call.confidence,
            "n_cells": call.n_cells,
            "top_genes": ", ".join(call.genes[:10]),
            "reasoning": call.reasoning,
        }
        for answer in answers
        for call in answer.calls
    ]
    return pd.DataFrame(rows, columns=["split", "cluster", "label", "confidence", "n_cells", "top_genes", "reasoning"])


def label_categories(labels: list[str], candidates: list[str]) -> list[str]:
    """Used labels in candidate order, ``unassigned`` last."""
    used = set(labels)
    ordered = [c for c in sorted(candidates) if c in used]
    return ordered + ([UNASSIGNED] if UNASSIGNED in used else [])


def write_labels(
    adata,
    answers: list[PuzzleAnswer],
    *,
    groupby: str,
    split_by: str | None,
    candidates: list[str],
    settings: dict[str, Any],
    key_added: str = "cello1_cell_type",
) -> pd.DataFrame:
    """Set ``obs[key_added]`` (categorical), ``obs[key_added + '_confidence']`` and
    ``uns['cello1']``; returns the cluster table.
    """
    table = cluster_table(answers)
    clusters = adata.obs[groupby].astype(str).where(adata.obs[groupby].notna(), None)
    splits = (
        adata.obs[split_by].astype(str).where(adata.obs[split_by].notna(), None)
        if split_by is not None
        else pd.Series(POOLED, index=adata.obs.index)
    )
    keys = splits + "\x00" + clusters  # NaN where either is missing
    lookup = table.assign(key=table["split"] + "\x00" + table["cluster"]).set_index("key")
    categories = label_categories(list(table["label"]), candidates)
    adata.obs[key_added] = pd.Categorical(keys.map(lookup["label"]), categories=categories)
    adata.obs[f"{key_added}_confidence"] = keys.map(lookup["confidence"]).astype(float).to_numpy()
    adata.uns[UNS_KEY] = uns_record(answers, table, candidates, settings)
    return table


def uns_record(
    answers: list[PuzzleAnswer], table: pd.DataFrame, candidates: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The ``uns["cello1"]`` record: settings, candidates, per-cluster results, the
    clusters × candidates score matrix (NaN without solver scores), the unassigned
    clusters and per-puzzle texts, as HDF5-writable values.
    """
    sorted_candidates = sorted(candidates)
    scores = np.full((len(table), len(sorted_candidates)), np.nan)
    calls = [call for answer in answers for call in answer.calls]
    for i, call in enumerate(calls):
        if call.scores is not None and len(call.scores) == len(sorted_candidates):
            scores[i] = call.scores
    unassigned = table.loc[table["label"] == UNASSIGNED]
    return {
        "settings": h5_safe(settings),
        "candidates": _str_array(sorted_candidates),
        "clusters": {
            "split": _str_array(table["split"]),
            "cluster": _str_array(table["cluster"]),
            "label": _str_array(table["label"]),
            "confidence": table["confidence"].to_numpy(dtype=float),
            "n_cells": table["n_cells"].to_numpy(dtype=np.int64),
            "top_genes": _str_array(table["top_genes"]),
            "reasoning": _str_array(table["reasoning"]),
        },
        # rows follow "clusters", columns follow "candidates"; NaN when the solver gives no scores
        "scores": scores,
        "unassigned": _str_array(_cluster_names(unassigned)),
        "puzzles": {
            "split": _str_array([a.puzzle.split for a in answers]),
            "context": _str_array([a.puzzle.context for a in answers]),
            "text": _str_array([a.text for a in answers]),
            "repaired": np.array([bool(a.repaired) for a in answers]),
        },
    }


def _cluster_names(table: pd.DataFrame) -> list[str]:
    return [c if s == POOLED else f"{s}/{c}" for s, c in zip(table["split"], table["cluster"], strict=True)]


def unassigned_clusters(table: pd.DataFrame) -> list[str]:
    """Names of the table's clusters labelled ``unassigned``."""
    return _cluster_names(table.loc[table["label"] == UNASSIGNED])


def _str_array(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def h5_safe(value: Any) -> Any:
    """Settings → types h5ad can store: None becomes "", lists become arrays."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): h5_safe(v) for k, v in value.items()}
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        items = [h5_safe(v) for v in value]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return np.asarray(items, dtype=float)
        return _str_array(items)
    return str(value)


# ---- files --------------------------------------------------------------------------------


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Cluster → label → confidence (+ sample, size, top genes, reasoning), atomically."""
    path = Path(path)
    columns = ["cluster", "label", "confidence", "n_cells", "top_genes", "reasoning"]
    if (table["split"] != POOLED).any():
        columns.insert(0, "split")
    with atomic_path(path) as tmp:
        table[columns].to_csv(tmp, index=False, float_format="%.4f")
    return path


def embedding_basis(adata) -> str | None:
    """``X_umap`` if present, else the first ``X_*`` embedding with at least 2 columns."""
    if "X_umap" in adata.obsm:
        return "X_umap"
    for key in adata.obsm:
        value = adata.obsm[key]
        if key.startswith("X_") and getattr(value, "ndim", 0) == 2 and value.shape[1] >= 2:
            return key
    return None


def plot_labels(adata, key: str, path: str | os.PathLike, basis: str | None = None) -> Path:
    """Scatter of the embedding coloured by ``obs[key]`` (matplotlib Agg), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    basis = basis or embedding_basis(adata)
    if basis is None:
        raise InputError(
            "no 2-D embedding in obsm (e.g. X_umap) to plot; drop {plot} or compute a UMAP first", params=["plot"]
        )
    coords = np.asarray(adata.obsm[basis])[:, :2]
    labels = adata.obs[key]
    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _palette(len(labels.cat.categories))
    missing = labels.isna().to_numpy()
    if missing.any():
        ax.scatter(*coords[missing].T, s=6, c="#dddddd", linewidths=0, label="(no cluster)")
    for i, category in enumerate(labels.cat.categories):
        mask = (labels == category).to_numpy()
        colour = "#9e9e9e" if category == UNASSIGNED else cmap[i]
        ax.scatter(*coords[mask].T, s=8, color=colour, linewidths=0, label=f"{category} ({mask.sum()})")
    name = basis[2:].upper() if basis.startswith("X_") else basis
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"cello1 annotation ({key})")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False, markerscale=2)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (by inode when both exist, else by resolved path)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def save_h5ad(adata, out: str | os.PathLike, *, source: str | os.PathLike | None = None, inplace: bool = False) -> Path:
    """Write ``adata`` to ``out`` via a temp file + rename; refuse to overwrite the input
    file ``source`` unless ``inplace``.
    """
    out = Path(out)
    if source is not None and same_file(out, source) and not inplace:
        raise InputError(
            f"output {out} is the input file; choose another {{out}} path or pass {{inplace}} to overwrite it",
            params=["out", "inplace"],
        )
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return out
