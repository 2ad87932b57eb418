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
from cello1.annotation.evidence import UNKNOWN
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
    e.g. "CD4-positive, alpha-beta T cell"), else on ``,`` — but comma-separated pieces
    that together spell a Cell Ontology name are kept together. Duplicates are dropped.
    """
    return split_candidates(value)[0]


def split_candidates(value: str | os.PathLike | Iterable[str] | None) -> tuple[list[str], str]:
    """:func:`parse_candidates` plus a sentence saying how a string was split ("" for lists and files)."""
    if value is None:
        return [], ""
    note = ""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and _looks_like_file(value)):
        path = Path(value)
        if not path.is_file():
            raise InputError(
                f"candidates file {path} not found; pass an existing file (one name a line) or a list 'A;B;C'"
            )
        items = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    elif isinstance(value, str):
        if ";" in value:
            items = value.split(";")
        else:
            items, note = _split_on_commas(value)
    else:
        items = [str(v) for v in value]
    return list(dict.fromkeys(s.strip() for s in items if s and s.strip())), note


def _split_on_commas(value: str) -> tuple[list[str], str]:
    """Split on commas, re-joining runs of pieces that form a Cell Ontology name or synonym."""
    pieces = [p.strip() for p in value.split(",")]
    if len([p for p in pieces if p]) < 2:
        return pieces, ""
    from cello1.knowledge import map_label

    items, kept, i = [], [], 0
    while i < len(pieces):
        for j in range(len(pieces), i + 1, -1):  # longest run first
            joined = ", ".join(pieces[i:j])
            if map_label(joined).how in ("exact", "synonym"):
                items.append(joined)
                kept.append(joined)
                i = j
                break
        else:
            items.append(pieces[i])
            i += 1
    names = [s for s in items if s]
    note = f"candidates split on ',' into {len(names)} names: {' | '.join(names)}"
    if kept:
        note += f" (kept whole as Cell Ontology names: {' | '.join(kept)})"
    return items, note + "; separate names with ';' when they contain commas"


def _looks_like_file(value: str) -> bool:
    # names such as "CD4+/CD25 T Reg" contain a slash, so only an existing file or a
    # list-like extension counts as a path
    if os.path.isfile(value):
        return True
    return "," not in value and ";" not in value and value.lower().endswith((".txt", ".csv", ".tsv", ".list"))


def resolve_candidates(candidates, tissue: str | None, marker_types: list[str] | None = None) -> list[str]:
    """The user's candidates, else the panel / knowledge-base proposal for ``tissue``,
    else the types of the user's marker file (``marker_types``).
    """
    chosen = parse_candidates(candidates)
    if not chosen and tissue:
        from cello1.annotation.ontology import propose_candidates

        chosen = parse_candidates(propose_candidates(tissue))
        if not chosen:
            raise InputError(
                f"the marker knowledge base has no cell types for tissue {tissue!r}; pass {{candidates}}",
                params=["candidates"],
            )
    if not chosen and marker_types:
        chosen = list(dict.fromkeys(marker_types))
    if not chosen:
        raise InputError(
            "no candidate cell types given; pass {candidates}='A;B;C' (or a file, one per line), {tissue} or {markers}",
            params=["candidates", "tissue", "markers"],
        )
    reserved = [c for c in chosen if c.lower() in (UNASSIGNED, UNKNOWN)]
    if reserved:
        raise InputError(
            f"{reserved[0]!r} is reserved for clusters without a type; remove it from the candidates",
            params=["candidates"],
        )
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


def check_groupby(obs: pd.DataFrame, groupby: str) -> list[str]:
    """Refuse a ``groupby`` column that holds measurements, not cluster ids; return warnings
    for numeric columns that plausibly hold cluster ids.
    """
    check_column(obs, groupby, "groupby")
    column = obs[groupby]
    if isinstance(column.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(column):
        return []
    values = column.dropna().to_numpy(dtype=float)
    n_distinct = len(np.unique(values))
    fractional = values.size > 0 and not np.allclose(values, np.round(values))
    if fractional or n_distinct > max(100, len(values) // 10):
        raise InputError(
            f"{{groupby}} column {groupby!r} looks continuous ({column.dtype}, {n_distinct} distinct values), not "
            "like cluster ids; pick the column holding clusters (e.g. leiden or louvain)",
            params=["groupby"],
        )
    return [f"groupby column {groupby!r} is numeric ({column.dtype}); its {n_distinct} values are taken as cluster ids"]


@dataclass
class GroupLayout:
    """The (sample, cluster) groups of a run: per cell its group row, per group its names and size."""

    codes: np.ndarray  # per cell; -1 for cells without a cluster or sample
    splits: list[str]
    clusters: list[str]
    n_cells: list[int]
    groupby: str = ""

    @property
    def names(self) -> list[str]:
        """``cluster``, or ``sample/cluster`` when split by sample."""
        return [c if s == POOLED else f"{s}/{c}" for s, c in zip(self.splits, self.clusters, strict=True)]

    def batches(self) -> list[np.ndarray]:
        """Group rows of each sample, in order (one-to-one assignment is per sample)."""
        order = list(dict.fromkeys(self.splits))
        return [np.flatnonzero(np.asarray(self.splits) == s) for s in order]


def group_layout(obs: pd.DataFrame, groupby: str, split_by: str | None = None) -> GroupLayout:
    """Groups = clusters within each sample (``split_by``), in sample then cluster order."""
    labels = cluster_labels(obs, groupby)
    if split_by is not None:
        check_column(obs, split_by, "split_by")
        splits = obs[split_by].astype(str).where(obs[split_by].notna(), None)
        split_names = _cluster_order(splits, obs[split_by])
    else:
        splits = pd.Series(POOLED, index=obs.index)
        split_names = [POOLED]
    order = _cluster_order(labels, obs[groupby])
    keys = list(zip(splits.tolist(), labels.tolist(), strict=True))
    valid = (splits.notna() & labels.notna()).to_numpy()
    group_splits, group_clusters, index = [], [], {}
    for split in split_names:
        present = set(labels[valid & (splits == split).to_numpy()])
        for cluster in order:
            if cluster in present:
                index[(split, cluster)] = len(group_splits)
                group_splits.append(split)
                group_clusters.append(cluster)
    codes = np.array([index.get(k, -1) if ok else -1 for k, ok in zip(keys, valid, strict=True)], dtype=np.int64)
    n_cells = np.bincount(codes[codes >= 0], minlength=len(group_splits)).tolist()
    return GroupLayout(codes, group_splits, group_clusters, [int(n) for n in n_cells], groupby)


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
