"""Turn a user's clustered AnnData into cluster-level puzzles.

One puzzle per sample (``split_by``; default: one pooled puzzle). Its "cells" are the
clusters present in that sample, each described by a ranked gene list; its candidates
are the user's cell types (sorted, as CellPuzzles shows them); ``answer`` is ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cello1.annotation.clusters import Expression, describe_clusters
from cello1.data.context import context_columns, context_sentence
from cello1.errors import InputError
from cello1.puzzle import Puzzle
from cello1.vocabulary import UNASSIGNED

POOLED = "all"
# Used when the obs holds none of the CELLxGENE context columns.
DEFAULT_CONTEXT = "Each cell below is one cluster of cells from the same dataset, described by its top genes."


@dataclass
class ClusterPuzzle(Puzzle):
    """A :class:`Puzzle` whose cells are clusters, with an optional note after the
    candidate list (how to use ``unassigned`` / repeats) for LLM solvers.
    """

    note: str = ""
    split: str = POOLED
    clusters: list[str] = field(default_factory=list)
    n_cells: list[int] = field(default_factory=list)

    @property
    def user_msg(self) -> str:
        """The puzzle's user message, followed by the note when there is one."""
        base = super().user_msg
        return f"{base}\n\n{self.note}" if self.note else base


# ---- candidates ---------------------------------------------------------------------------


def parse_candidates(value: str | os.PathLike | Iterable[str] | None) -> list[str]:
    """Candidates from a list, a file (one per line, ``#`` comments) or a string.

    A string is split on ``;`` when it holds one (cell type names may contain commas,
    e.g. "CD4-positive, alpha-beta T cell"), else on ``,``. Duplicates are dropped.
    """
    if value is None:
        return []
    if isinstance(value, os.PathLike) or (isinstance(value, str) and _looks_like_file(value)):
        path = Path(value)
        if not path.is_file():
            raise InputError(f"candidates file {path} not found; pass an existing file or a comma-separated list")
        items = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    elif isinstance(value, str):
        items = value.split(";" if ";" in value else ",")
    else:
        items = [str(v) for v in value]
    return list(dict.fromkeys(s.strip() for s in items if s and s.strip()))


def _looks_like_file(value: str) -> bool:
    # names such as "CD4+/CD25 T Reg" contain a slash, so only an existing file or a
    # list-like extension counts as a path
    if os.path.isfile(value):
        return True
    return "," not in value and ";" not in value and value.lower().endswith((".txt", ".csv", ".tsv", ".list"))


def resolve_candidates(candidates, tissue: str | None) -> list[str]:
    """The user's candidates, or the knowledge base's proposal for ``tissue``."""
    chosen = parse_candidates(candidates)
    if not chosen and tissue:
        from cello1.knowledge import candidates_for_tissue

        chosen = parse_candidates(candidates_for_tissue(tissue))
        if not chosen:
            raise InputError(
                f"the marker knowledge base has no cell types for tissue {tissue!r}; pass {{candidates}}",
                params=["candidates"],
            )
    if not chosen:
        raise InputError(
            "no candidate cell types given; pass {candidates}='A,B,C' (or a file, one per line) or {tissue}",
            params=["candidates", "tissue"],
        )
    if any(c.lower() == UNASSIGNED for c in chosen):
        raise InputError(f"{UNASSIGNED!r} is reserved for leftover clusters; remove it from the candidates")
    return chosen


# ---- puzzles ------------------------------------------------------------------------------


def check_column(obs: pd.DataFrame, column: str, param: str) -> None:
    """Raise naming ``param`` and the available columns when ``column`` is not in obs."""
    if column not in obs.columns:
        available = ", ".join(map(str, obs.columns)) or "none"
        raise InputError(f"{{{param}}} column {column!r} not in obs (available: {available})", params=[param])


def cluster_labels(obs: pd.DataFrame, groupby: str) -> pd.Series:
    """The cluster of every cell as strings (NaN stays NaN: such cells are skipped)."""
    check_column(obs, groupby, "groupby")
    col = obs[groupby]
    labels = col.astype(object).where(col.notna(), None)
    labels = labels.map(lambda v: None if v is None else str(v))
    if labels.notna().sum() == 0:
        raise InputError(
            f"{{groupby}} column {groupby!r} has no values; pick the column holding cluster ids", params=["groupby"]
        )
    return labels


def _cluster_order(labels: pd.Series, column: pd.Series) -> list[str]:
    present = set(labels.dropna())
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = [str(c) for c in column.cat.categories]
    else:
        order = sorted(present, key=_natural_key)
    return [c for c in order if c in present]


def _natural_key(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def shared_context(obs: pd.DataFrame, tissue: str | None = None) -> str:
    """Donor context from the obs columns that hold a single value in this sample
    (``tissue`` fills in when obs has no tissue column).
    """
    row: dict[str, str] = {"tissue": tissue} if tissue and "tissue" not in obs.columns else {}
    for col in context_columns(list(obs.columns)):
        values = obs[col].dropna().astype(str).unique()
        if len(values) == 1:
            row[col] = values[0]
    return context_sentence(row) or DEFAULT_CONTEXT


def build_cluster_puzzles(
    adata,
    expr: Expression,
    groupby: str,
    candidates: list[str],
    *,
    split_by: str | None = None,
    genes: str = "markers",
    top_k: int = 50,
    tissue: str | None = None,
    marker_method: str = "wilcoxon",
) -> list[ClusterPuzzle]:
    """One :class:`ClusterPuzzle` per value of ``split_by`` (or one pooled puzzle)."""
    obs = adata.obs
    labels = cluster_labels(obs, groupby)
    if split_by is not None:
        check_column(obs, split_by, "split_by")
        splits = obs[split_by].astype(str).where(obs[split_by].notna(), None)
        names = _cluster_order(splits, obs[split_by])
    else:
        splits = pd.Series(POOLED, index=obs.index)
        names = [POOLED]
    order = _cluster_order(labels, obs[groupby])
    puzzles = []
    for split in names:
        rows = np.flatnonzero((splits == split).to_numpy() & labels.notna().to_numpy())
        if len(rows) == 0:
            continue
        puzzles.append(
            _split_puzzle(adata, expr, labels, rows, order, split, candidates, genes, top_k, tissue, marker_method)
        )
    return puzzles


def _split_puzzle(adata, expr, labels, rows, order, split, candidates, genes, top_k, tissue, marker_method):
    present = set(labels.iloc[rows])
    clusters = [c for c in order if c in present]
    index = {c: i for i, c in enumerate(clusters)}
    codes = np.array([index[c] for c in labels.iloc[rows]], dtype=int)
    sub = Expression(expr.X[rows] if len(rows) != expr.X.shape[0] else expr.X, expr.genes, expr.source)
    gene_lists = describe_clusters(sub, codes, len(clusters), genes=genes, k=top_k, marker_method=marker_method)
    obs = adata.obs.iloc[rows]
    return ClusterPuzzle(
        id=f"annotate:{split}",
        context=shared_context(obs, tissue),
        cells=gene_lists,
        candidates=sorted(candidates),
        answer=None,
        donor=None if split == POOLED else split,
        tissue=tissue or _single_value(obs, "tissue"),
        disease=_single_value(obs, "disease"),
        cell_ids=list(clusters),
        split=split,
        clusters=list(clusters),
        n_cells=[int(n) for n in np.bincount(codes, minlength=len(clusters))],
    )


def _single_value(obs: pd.DataFrame, column: str) -> str | None:
    if column not in obs.columns:
        return None
    values = obs[column].dropna().astype(str).unique()
    return str(values[0]) if len(values) == 1 else None


def llm_view(puzzle: ClusterPuzzle, allow_repeats: bool) -> ClusterPuzzle:
    """The puzzle as shown to an LLM: ``unassigned`` offered as an extra candidate when
    there are more clusters than types, and a note on the rules that differ from
    CellPuzzles (rectangular, repeats).
    """
    n_cells, n_types = puzzle.n, len(puzzle.candidates)
    shown = list(puzzle.candidates)
    notes = []
    if allow_repeats:
        notes.append("A cell type may be assigned to several cells, and some types may not be used at all.")
    elif n_cells > n_types:
        shown.append(UNASSIGNED)
        notes.append(
            f"Note: there are {n_cells} cells but only {n_types} cell types. Use each cell type at most once "
            f"and answer '{UNASSIGNED}' for the {n_cells - n_types} cell(s) that fit no remaining type."
        )
    elif n_cells < n_types:
        notes.append(
            f"Note: there are {n_cells} cells and {n_types} cell types. Use each cell type at most once; "
            f"{n_types - n_cells} type(s) will not be used."
        )
    if notes:
        notes.append(f"Give exactly {n_cells} labels, one per cell, in cell order.")
    return ClusterPuzzle(**{**puzzle.__dict__, "candidates": shown, "note": " ".join(notes)})
