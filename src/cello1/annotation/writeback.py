"""Write the decisions back: ``obs`` columns, ``uns[key_added]``, CSV, plot, h5ad file.

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
from cello1.annotation.evidence import UNKNOWN
from cello1.annotation.puzzles import POOLED
from cello1.errors import InputError
from cello1.io import atomic_path
from cello1.vocabulary import UNASSIGNED

TABLE_COLUMNS = [
    "split", "cluster", "label", "coarse_label", "confidence", "n_cells", "top_candidate", "runner_up",
    "evidence_genes", "top_genes", "warnings", "reasoning",
]  # fmt: skip


def cluster_table(answers: list[PuzzleAnswer]) -> pd.DataFrame:
    """One row per (sample, cluster): label, coarse label, confidence, size, evidence, warnings, reasoning."""
    rows = [
        {
            "split": call.split,
            "cluster": call.cluster,
            "label": call.label,
            "coarse_label": call.coarse or call.label,
            "confidence": call.confidence,
            "n_cells": call.n_cells,
            "top_candidate": call.top_candidate,
            "runner_up": call.runner_up,
            "evidence_genes": ", ".join(call.evidence_genes),
            "top_genes": ", ".join(call.genes[:10]),
            "warnings": " | ".join(call.warnings),
            "reasoning": call.reasoning,
        }
        for answer in answers
        for call in answer.calls
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def label_categories(labels: list[str], candidates: list[str]) -> list[str]:
    """Used labels in candidate order, then ``unknown`` and ``unassigned``."""
    used = set(labels)
    ordered = [c for c in sorted(candidates) if c in used]
    ordered += sorted(used - set(ordered) - {UNKNOWN, UNASSIGNED})  # e.g. coarse labels
    return ordered + [x for x in (UNKNOWN, UNASSIGNED) if x in used]


def write_labels(
    adata,
    answers: list[PuzzleAnswer],
    *,
    groupby: str,
    split_by: str | None,
    candidates: list[str],
    settings: dict[str, Any],
    key_added: str = "cello1_cell_type",
    extra: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Set ``obs[key_added]`` (categorical), ``obs[key_added + '_coarse']``,
    ``obs[key_added + '_confidence']`` and ``uns[key_added]``; returns the cluster table.
    ``extra`` adds entries to the ``uns`` record (evidence, mapping, warnings …).
    """
    table = cluster_table(answers)
    clusters = adata.obs[groupby].astype(str).where(adata.obs[groupby].notna(), None)
    splits = (
        adata.obs[split_by].astype(str).where(adata.obs[split_by].notna(), None)
        if split_by is not None
        else pd.Series(POOLED, index=adata.obs.index)
    )
    cells = pd.MultiIndex.from_arrays([splits.to_numpy(dtype=object), clusters.to_numpy(dtype=object)])
    rows = pd.MultiIndex.from_arrays([table["split"].astype(str), table["cluster"].astype(str)]).get_indexer(cells)
    found = rows >= 0

    def per_cell(column: str) -> np.ndarray:
        values = np.full(len(rows), None, dtype=object)
        values[found] = table[column].to_numpy(dtype=object)[rows[found]]
        return values

    categories = label_categories(list(table["label"]), candidates)
    adata.obs[key_added] = pd.Categorical(per_cell("label"), categories=categories)
    coarse = label_categories(list(table["coarse_label"]), [])
    adata.obs[f"{key_added}_coarse"] = pd.Categorical(per_cell("coarse_label"), categories=coarse)
    adata.obs[f"{key_added}_confidence"] = pd.to_numeric(pd.Series(per_cell("confidence")), errors="coerce").to_numpy(
        dtype=float
    )
    adata.uns[key_added] = uns_record(answers, table, candidates, settings) | h5_safe(extra or {})
    return table


def uns_record(
    answers: list[PuzzleAnswer], table: pd.DataFrame, candidates: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The ``uns[key_added]`` record: settings, candidates, per-cluster results, the
    clusters × candidates score matrix (NaN without solver scores), the unassigned and
    unknown clusters and per-puzzle texts, as HDF5-writable values.
    """
    sorted_candidates = sorted(candidates)
    scores = np.full((len(table), len(sorted_candidates)), np.nan)
    calls = [call for answer in answers for call in answer.calls]
    for i, call in enumerate(calls):
        if call.scores is not None and len(call.scores) == len(sorted_candidates):
            scores[i] = call.scores
    clusters = {
        column: _str_array(table[column]) for column in TABLE_COLUMNS if column not in ("confidence", "n_cells")
    }
    clusters["confidence"] = table["confidence"].to_numpy(dtype=float)
    clusters["n_cells"] = table["n_cells"].to_numpy(dtype=np.int64)
    return {
        "settings": h5_safe(settings),
        "candidates": _str_array(sorted_candidates),
        "clusters": clusters,
        # rows follow "clusters", columns follow "candidates"; NaN when the solver gives no scores
        "scores": scores,
        "unassigned": _str_array(_cluster_names(table.loc[table["label"] == UNASSIGNED])),
        "unknown": _str_array(_cluster_names(table.loc[table["label"] == UNKNOWN])),
        "puzzles": {
            "split": _str_array([a.puzzle.split for a in answers]),
            "context": _str_array([a.puzzle.context for a in answers]),
            "text": _str_array([a.text for a in answers]),
            "repaired": np.array([bool(a.repaired) for a in answers]),
        },
    }


def _cluster_names(table: pd.DataFrame) -> list[str]:
    return [c if s == POOLED else f"{s}/{c}" for s, c in zip(table["split"], table["cluster"], strict=True)]


def unassigned_clusters(table: pd.DataFrame, label: str = UNASSIGNED) -> list[str]:
    """Names of the table's clusters labelled ``label`` (``unassigned`` by default)."""
    return _cluster_names(table.loc[table["label"] == label])


def _str_array(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def h5_safe(value: Any) -> Any:
    """Values → types h5ad can store: None becomes "", lists and string arrays become str arrays,
    frames become dicts of columns.
    """
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): h5_safe(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return {str(c): h5_safe(value[c].tolist()) for c in value.columns}
    if isinstance(value, np.ndarray):
        return _str_array(value.ravel()).reshape(value.shape) if value.dtype == object else value
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        items = [h5_safe(v) for v in value]
        if items and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in items
        ):
            return np.asarray(items, dtype=float)
        return _str_array(items)
    return str(value)


# ---- files --------------------------------------------------------------------------------


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Cluster → label → confidence (+ sample, coarse label, size, evidence, warnings, reasoning), atomically."""
    path = Path(path)
    columns = ["cluster", "label", "confidence", "coarse_label", "n_cells", "runner_up", "evidence_genes", "top_genes",
               "warnings", "reasoning"]  # fmt: skip
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


def plot_labels(adata, key: str, path: str | os.PathLike, basis: str | None = None, groupby: str | None = None) -> Path:
    """The embedding coloured by ``obs[key]`` (cluster ids of ``groupby`` drawn on it), saved
    in the format the file name asks for (``.png``, ``.pdf``, ``.svg`` …), atomically.
    """
    from cello1.annotation.figures import embedding_figure, save_figure

    fig = embedding_figure(adata, key, basis=basis or embedding_basis(adata), groupby=groupby)
    return save_figure(fig, path, param="plot")


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
