"""Building CellPuzzles from annotated AnnData: the library behind ``cello1 build``.

>>> from cello1.data import build_puzzles, pbmc68k_reduced
>>> result = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4)
>>> result.train[0].n, len(result.test), result.leakage["test_puzzles_with_train_cell"]

Steps per input (docs/format.md §4, minus the original's flaws): select cells (labelled,
``suspension_type == "cell"``, optional ``query``), subsample to ``max_cells``, take
each cell's top-K genes (vectorised, chunked; backed files read chunk by chunk),
group by donor (and batch), draw puzzles, then split train/test without leakage.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from cello1.data.config import DEFAULT_DONOR_KEY, DEFAULT_GENE_KEY, BuildConfig
from cello1.data.context import context_columns, context_sentence, is_missing
from cello1.data.sampling import rng_for, sample_group, stratified_sample
from cello1.data.split import choose_test_donors, leakage_report, partition_cells
from cello1.data.topgenes import BadValueError, gene_symbols, top_gene_indices
from cello1.errors import InputError
from cello1.puzzle import Puzzle
from cello1.vocabulary import label_key


@dataclass
class BuildResult:
    """Puzzles of a build plus what is needed to describe it."""

    train: list[Puzzle]
    test: list[Puzzle]
    leakage: dict[str, Any]
    config: BuildConfig
    split: str  # the split actually used (``auto`` resolved)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)  # per input: cells seen/kept
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[Puzzle]]:  # ``train, test = build_puzzles(...)``
        return iter((self.train, self.test))


@dataclass
class CellTable:
    """The selected cells of all inputs, one entry per cell.

    Top genes are kept as ids into one vocabulary shared by all inputs (``int32``,
    ``-1`` padded), so whole-data steps stay vectorised and gene-name lists are only
    materialised for cells that end up in a puzzle.
    """

    source: list[str] = field(default_factory=list)
    cell_id: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    donor: list[str | None] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    tissue: list[str | None] = field(default_factory=list)
    disease: list[str | None] = field(default_factory=list)
    context: list[str] = field(default_factory=list)
    vocab: dict[str, int] = field(default_factory=dict)
    id_blocks: list[np.ndarray] = field(default_factory=list)
    _ids: np.ndarray | None = None
    _names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.label)

    def add_genes(self, local_top: np.ndarray, names: np.ndarray, k: int | None = None) -> None:
        """Append cells' top genes given as indices into ``names`` (one input's genes)."""
        self.add_ids(self.global_ids(local_top, names, k))

    def global_ids(self, local_top: np.ndarray, names: np.ndarray, k: int | None = None) -> np.ndarray:
        """Indices into one input's ``names`` → ids of the shared vocabulary. A ``None``
        name (a gene without a usable symbol) is never listed and a symbol is listed once
        per cell (at its best rank); the rows are then cut to ``k`` columns.
        """
        ids = np.asarray(
            [-1 if n is None else self.vocab.setdefault(n, len(self.vocab)) for n in names.tolist()], dtype=np.int32
        )
        out = np.where(local_top >= 0, ids[np.maximum(local_top, 0)], -1).astype(np.int32)
        if k is not None and k < out.shape[1]:
            out = compact_ids(out, k)
        return out

    def add_ids(self, ids: np.ndarray) -> None:
        """Append cells' top-gene ids (rows of vocabulary ids, ``-1`` padded)."""
        self.id_blocks.append(ids)
        self._ids = self._names = None

    @property
    def gene_ids(self) -> np.ndarray:
        """All cells' top-gene ids (cells × k, ``int32``, ``-1`` padded), concatenated once and cached."""
        if self._ids is None:
            self._ids = np.concatenate(self.id_blocks) if self.id_blocks else np.zeros((0, 0), np.int32)
        return self._ids

    def genes(self, cell: int) -> list[str]:
        """Top-gene names of one cell, best first."""
        if self._names is None:
            self._names = np.asarray(list(self.vocab), dtype=object)
        row = self.gene_ids[cell]
        return self._names[row[row >= 0]].tolist()

    def gene_keys(self) -> list[bytes]:
        """One hashable key per cell, equal exactly when the ranked gene lists are equal."""
        return [row.tobytes() for row in self.gene_ids]

    def groups(self) -> dict[str, np.ndarray]:
        """Group name → indices of its cells, groups in sorted order."""
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(self.group):
            by_group.setdefault(g, []).append(i)
        return {g: np.asarray(by_group[g]) for g in sorted(by_group)}


def compact_ids(ids: np.ndarray, k: int) -> np.ndarray:
    """Per row: drop ``-1`` and repeated ids (the first, best-ranked copy stays), left-align
    what is left and cut to ``k`` columns (``-1`` padded).
    """
    order = np.argsort(ids, axis=1, kind="stable")  # equal ids keep their rank order
    ranked = np.take_along_axis(ids, order, axis=1)
    repeat_sorted = np.zeros(ranked.shape, dtype=bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    drop = np.empty_like(repeat_sorted)
    np.put_along_axis(drop, order, repeat_sorted, axis=1)
    drop |= ids < 0
    keep_first = np.argsort(drop, axis=1, kind="stable")
    return np.take_along_axis(np.where(drop, -1, ids), keep_first, axis=1)[:, :k].astype(np.int32)


# ---- reading inputs -------------------------------------------------------------------


def open_h5ad(path: str | os.PathLike, backed: bool = False) -> Any:
    """``anndata.read_h5ad`` with one-line errors for a missing or unreadable file."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path (or omit INPUT to use the embedded pbmc68k_reduced)")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass .h5ad files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as exc:  # h5py/anndata raise many types for a non-h5ad file
        raise InputError(
            f"{path}: not a readable .h5ad (AnnData) file ({type(exc).__name__}); "
            "pass an AnnData .h5ad file, e.g. one downloaded from CELLxGENE"
        ) from None


def source_name(item: Any, index: int) -> str:
    """Name of one input: a path's file stem, else the AnnData's ``uns["title"]``, else ``adata{index}``."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item).stem
    title = getattr(item, "uns", {}).get("title") if hasattr(item, "uns") else None
    return str(title) if title else f"adata{index}"


def _column_error(kind: str, key: str, param: str, columns: Sequence[str], source: str) -> InputError:
    shown = ", ".join(map(str, columns)) or "none"
    return InputError(
        f"{source}: {kind} column {key!r} not in obs (available: {shown}); pass {{{param}}}=COLUMN", params=[param]
    )


def select_cells(adata: Any, config: BuildConfig, source: str, notes: list[str]) -> np.ndarray:
    """Row indices (sorted) of the cells to use: labelled, suspension filter, query."""
    obs = adata.obs
    if config.label_key not in obs.columns:
        raise _column_error("label", config.label_key, "label_key", list(obs.columns), source)
    keep = ~missing_mask(obs[config.label_key])
    steps = [f"{int(keep.sum())} labelled"]
    if config.suspension_type and config.suspension_key in obs.columns:
        keep &= (obs[config.suspension_key].astype(str) == config.suspension_type).to_numpy()
        steps.append(f"{int(keep.sum())} with {config.suspension_key} == {config.suspension_type!r}")
    if config.query:
        try:
            chosen = obs.index.isin(obs.query(config.query).index)
        except Exception as exc:
            raise InputError(
                f"{{query}}={config.query!r} failed on {source} ({type(exc).__name__}: {exc})", params=["query"]
            ) from None
        keep &= chosen
        steps.append(f"{int(keep.sum())} matching the query")
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        notes.append(f"{source}: empty selection ({obs.shape[0]} cells -> " + " -> ".join(steps) + ")")
    return rows


def missing_mask(values: Any) -> np.ndarray:
    """:func:`~cello1.data.context.is_missing` for every value of a column (a Series, array
    or list), judged once per distinct value: a column has millions of cells but few values.
    """
    import pandas as pd

    array = np.asarray(values, dtype=object)
    mask = np.asarray(pd.isna(array), dtype=bool)
    present = array[~mask]
    if present.size:
        placeholders = [v for v in pd.unique(present) if is_missing(v)]  # "unknown", "", "NaN" …
        if placeholders:
            mask |= pd.Series(array).isin(placeholders).to_numpy()
    return mask


def check_matrix(adata: Any, source: str) -> None:
    """Raise a one-line :class:`~cello1.errors.InputError` for an AnnData without cells,
    genes or an expression matrix.
    """
    if getattr(adata, "X", None) is None:
        raise InputError(
            f"{source}: has no expression matrix X; store counts or log-normalised values in X "
            "(e.g. adata.X = adata.layers['counts']) and save the file again"
        )
    if adata.n_obs == 0:
        raise InputError(f"{source}: has no cells (0 rows in obs and X); pass a file that holds cells")
    if adata.n_vars == 0:
        raise InputError(f"{source}: has no genes (0 columns in var and X); pass a file that holds genes")


def gene_names(adata: Any, config: BuildConfig, source: str, notes: list[str] | None = None) -> np.ndarray:
    """Gene symbols of one input, from ``var[gene_key]`` or the var names (``None`` for a
    gene without a usable name: it is never listed).

    A missing symbol (NaN, empty) falls back to the gene's var name; repeated symbols are
    noted (each cell then lists a symbol once, see :meth:`CellTable.global_ids`). Raises
    :class:`~cello1.errors.InputError` when a non-default ``gene_key`` column is missing.
    """
    notes = [] if notes is None else notes
    var = adata.var
    var_names = adata.var_names.tolist()
    if config.gene_key in var.columns:
        names = var[config.gene_key].tolist()
        column = f"var[{config.gene_key!r}]"
    elif config.gene_key != DEFAULT_GENE_KEY:
        shown = ", ".join(map(str, var.columns)) or "none"
        raise InputError(
            f"{source}: gene column {config.gene_key!r} not in var (available: {shown}); pass {{gene_key}}=COLUMN",
            params=["gene_key"],
        )
    else:
        names, column = var_names, "var_names"
    missing = np.flatnonzero(missing_mask(names)).tolist()
    if missing:
        for i in missing:
            names[i] = None if is_missing(var_names[i]) else var_names[i]
        usable = sum(names[i] is not None for i in missing)
        notes.append(
            f"{source}: {len(missing)} genes have no name in {column} (first at var row {missing[0]}); "
            + (f"{usable} are listed by their var name instead" if usable else "they are never listed")
            + ("" if usable == len(missing) else f", {len(missing) - usable} without any name are never listed")
        )
    symbols = gene_symbols([n if n is not None else "" for n in names], strip_ensembl=config.strip_ensembl)
    symbols[[n is None for n in names]] = None
    counts = Counter(n for n in symbols.tolist() if n is not None)
    repeated = {n: c for n, c in counts.items() if c > 1}
    if repeated:
        first = min(repeated, key=lambda n: (-repeated[n], n))
        notes.append(
            f"{source}: {len(repeated)} gene symbols occur more than once in {column} "
            f"(e.g. {first!r} x{repeated[first]}); each cell lists a symbol once, at its best rank"
        )
    return symbols


def duplicate_columns(names: np.ndarray) -> int:
    """How many columns a top-K list may lose to unnamed or repeated genes."""
    values = names.tolist()
    named = [n for n in values if n is not None]
    return (len(values) - len(named)) + (len(named) - len(set(named)))


def donor_values(adata: Any, config: BuildConfig, source: str, notes: list[str]) -> list[str | None]:
    """Donor id per cell of one input (``None`` where missing).

    Without the default donor column (and unless a donor is required) all cells form one
    group — the donor given as ``config.donor``, if any — and a note is added to
    ``notes``; a missing explicit ``donor_key`` raises.
    """
    obs = adata.obs
    if config.donor_key in obs.columns:
        column = obs[config.donor_key]
        return [None if m else str(v) for v, m in zip(column.tolist(), missing_mask(column).tolist(), strict=True)]
    if config.require_donor or config.donor_key != DEFAULT_DONOR_KEY:
        raise _column_error("donor", config.donor_key, "donor_key", list(obs.columns), source)
    if config.donor is not None:
        notes.append(f"{source}: no {config.donor_key!r} column in obs; all its cells are from donor {config.donor!r}")
        return [config.donor] * obs.shape[0]
    notes.append(f"{source}: no {config.donor_key!r} column in obs; all its cells form one group (one donor)")
    return [None] * obs.shape[0]


# Without any donor metadata the context still says what is (not) known: never empty.
NO_CONTEXT = "No donor information is available for this cell."


def contexts(obs: Any, rows: np.ndarray, defaults: Mapping[str, str] | None = None) -> list[str]:
    """Context sentence per selected row, computed once per distinct metadata combination.

    ``defaults`` (e.g. ``{"tissue": "lung"}`` from the command line) fill fields that obs
    lacks or leaves empty; a cell with nothing known gets :data:`NO_CONTEXT`.
    """
    defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
    columns = context_columns(list(obs.columns))
    if not columns:
        return [context_sentence(defaults) or NO_CONTEXT] * rows.size
    sub = obs.iloc[rows][columns]
    values = list(zip(*[sub[c].astype(object).tolist() for c in columns], strict=True))
    cache: dict[tuple, str] = {}
    out = []
    for combo in values:
        if combo not in cache:
            row = dict(defaults)
            row.update({c: v for c, v in zip(columns, combo, strict=True) if not is_missing(v)})
            cache[combo] = context_sentence(row) or NO_CONTEXT
        out.append(cache[combo])
    return out


_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def clean_label(label: str) -> str:
    """A label that fits the answer format: line breaks and control characters become
    spaces, ``|`` (the answer separator) becomes ``/``, runs of spaces one space.
    """
    return " ".join(_BREAKS.sub(" ", label).replace("|", "/").split())


def clean_labels(labels: list[str], source: str, notes: list[str]) -> list[str]:
    """:func:`clean_label` on every label, with a note on what changed."""
    changed = {label: clean_label(label) for label in set(labels)}
    changed = {old: new for old, new in changed.items() if old != new}
    if not changed:
        return labels
    shown = "; ".join(f"{old!r} -> {new!r}" for old, new in sorted(changed.items())[:3])
    notes.append(
        f"{source}: {len(changed)} labels held '|', line breaks or extra spaces, which break the answer "
        f"format; rewritten ({shown}{'; …' if len(changed) > 3 else ''})"
    )
    return [changed.get(label, label) for label in labels]


def merge_case_variants(table: CellTable, notes: list[str]) -> None:
    """Labels that differ only in case or spacing (one :func:`~cello1.vocabulary.label_key`)
    are one type: all cells get the most frequent spelling (ties: the first in sorted order).
    """
    counts = Counter(table.label)
    spellings: dict[str, list[str]] = {}
    for label in counts:
        spellings.setdefault(label_key(label), []).append(label)
    rename = {}
    for variants in spellings.values():
        if len(variants) > 1:
            keep = min(variants, key=lambda v: (-counts[v], v))
            rename.update({v: keep for v in variants if v != keep})
            notes.append(
                f"labels {', '.join(repr(v) for v in sorted(variants))} differ only in case or spacing; "
                f"merged as {keep!r} ({sum(counts[v] for v in variants)} cells)"
            )
    if rename:
        table.label = [rename.get(label, label) for label in table.label]


def unique_cell_ids(obs: Any, rows: np.ndarray, source: str, notes: list[str]) -> list[str]:
    """Cell ids of the given rows from the obs names; names that repeat among them get
    ``#row`` appended (else the leakage report would mistake different cells for one).
    """
    import pandas as pd

    ids = obs.index.astype(str).to_numpy()[rows]
    index = pd.Index(ids)  # a temporary index: its hash table goes with it
    if index.is_unique:
        return ids.tolist()
    repeated = np.flatnonzero(index.duplicated(keep=False))
    ids = ids.astype(object)
    ids[repeated] = [f"{ids[i]}#{rows[i]}" for i in repeated.tolist()]
    notes.append(
        f"{source}: {repeated.size} cells share an obs name with another cell (e.g. {obs.index[rows[repeated[0]]]!r}); "
        "their cell ids get '#row' appended"
    )
    return ids.tolist()


def drop_missing_donors(
    rows: np.ndarray, donors: list[str | None], config: BuildConfig, source: str, notes: list[str]
) -> np.ndarray:
    """Cells without a donor id (when obs has the donor column) are left out: a puzzle must
    come from one donor, and pooling them would mix donors.
    """
    missing = np.fromiter((d is None for d in donors), dtype=bool, count=len(donors))[rows]
    if missing.any():
        notes.append(
            f"{source}: {int(missing.sum())} selected cells have no donor id in obs[{config.donor_key!r}] "
            "and were left out (puzzles must not mix donors)"
        )
        rows = rows[~missing]
    return rows


def add_input(
    table: CellTable,
    adata: Any,
    source: str,
    config: BuildConfig,
    notes: list[str],
    progress: Callable[[int], None] | None,
) -> dict[str, int]:
    """Select, subsample and rank genes for one AnnData; append its cells to ``table``."""
    check_matrix(adata, source)
    obs = adata.obs
    rows = select_cells(adata, config, source, notes)
    donors = donor_values(adata, config, source, notes)
    if config.donor_key in obs.columns:
        rows = drop_missing_donors(rows, donors, config, source, notes)
    names = gene_names(adata, config, source, notes)
    if config.max_cells and rows.size > config.max_cells:
        rows = np.sort(rng_for(config.seed, "subsample", source).choice(rows, config.max_cells, replace=False))
    if rows.size == 0:
        return {"cells": obs.shape[0], "selected": 0, "kept": 0}
    extra = min(config.top_k, duplicate_columns(names))  # room for genes that drop out of a list
    try:
        top = top_gene_indices(
            adata.X,
            k=config.top_k + extra,
            chunk_size=config.chunk_size,
            rows=rows,
            progress=progress,
            engine=config.topk_engine,
            allow_negative=False,
        )
    except BadValueError as exc:
        raise exc.at(exc.row, cell=str(obs.index[exc.row]), source=source) from None
    ids = table.global_ids(top, names, config.top_k if extra else None)
    del top  # the two cells x K arrays are the build's largest: hold one at a time
    has_genes = ids[:, 0] >= 0
    if not has_genes.all():
        notes.append(f"{source}: {int((~has_genes).sum())} cells with no expressed gene skipped")
        ids = ids[has_genes]
    kept = rows[has_genes]
    table.add_ids(ids)
    del ids
    batch = (
        obs[config.batch_key].astype(str).to_numpy()[kept]
        if config.batch_key and config.batch_key in obs.columns
        else None
    )
    donors_kept = [donors[r] for r in kept.tolist()]
    labels = obs[config.label_key].astype(str).to_numpy()[kept].tolist()
    table.source += [source] * kept.size
    table.cell_id += unique_cell_ids(obs, kept, source, notes)
    table.label += clean_labels(labels, source, notes)
    table.donor += donors_kept
    table.group += [f"{source}|{d}|{'' if batch is None else batch[j]}" for j, d in enumerate(donors_kept)]
    table.tissue += _optional_column(obs, "tissue", kept, config.tissue)
    table.disease += _optional_column(obs, "disease", kept)
    table.context += contexts(obs, kept, {"tissue": config.tissue})
    return {"cells": obs.shape[0], "selected": int(rows.size), "kept": int(kept.size)}


def _optional_column(obs: Any, column: str, rows: np.ndarray, default: str | None = None) -> list[str | None]:
    if column not in obs.columns:
        return [default] * rows.size
    values = obs[column].to_numpy()[rows]
    return [default if m else str(v) for v, m in zip(values.tolist(), missing_mask(values).tolist(), strict=True)]


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cells", desc="top genes", disable=not enabled, leave=False)


def read_cells(inputs: Sequence[Any], config: BuildConfig) -> tuple[CellTable, dict[str, dict[str, int]], list[str]]:
    """Read every input into one :class:`CellTable`.

    Returns
    -------
    tuple
        ``(table, sources, notes)``: the cells, per-input counts of cells seen/kept, and notes
        on what was skipped or repaired. Raises :class:`~cello1.errors.InputError` when no
        cell is left.
    """
    table = CellTable()
    sources: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for index, item in enumerate(inputs):
        adata = open_h5ad(item, backed=config.backed) if isinstance(item, (str, os.PathLike)) else item
        source = source_name(item, index)
        if source in sources:
            source = f"{source}#{index}"
        try:
            with _progress_bar(adata.n_obs, config.progress) as bar:
                bar.set_description(f"top genes: {source}")
                sources[source] = add_input(table, adata, source, config, notes, bar.update)
        finally:
            if getattr(adata, "isbacked", False):
                adata.file.close()
    if len(table) == 0:
        raise _empty_error(sources, notes)
    merge_case_variants(table, notes)
    return table, sources, notes


def _empty_error(sources: dict[str, dict[str, int]], notes: list[str]) -> InputError:
    """Why no cell is left: all-zero expression, or nothing selected."""
    if sum(s["selected"] for s in sources.values()):
        return InputError(
            f"no selected cell has a positive value in X ({sum(s['selected'] for s in sources.values())} "
            "cells, all zero); X must hold counts or log-normalised expression — check the file's X"
        )
    return InputError(
        "empty selection: no cells left to build from; "
        + "; ".join(notes)
        + " (check {label_key}, {donor_key}, {suspension_type}, {query})",
        params=["label_key", "donor_key", "suspension_type", "query"],
    )


# ---- puzzles and split ----------------------------------------------------------------


def make_puzzle(table: CellTable, cells: list[int]) -> Puzzle:
    """The :class:`~cello1.puzzle.Puzzle` of the given cells (id left empty, candidates sorted)."""
    first = cells[0]
    answer = [table.label[c] for c in cells]
    return Puzzle(
        id="",
        context=table.context[first],
        cells=[table.genes(c) for c in cells],
        candidates=sorted(answer),
        answer=answer,
        source=table.source[first],
        donor=table.donor[first],
        tissue=table.tissue[first],
        disease=table.disease[first],
        cell_ids=[table.cell_id[c] for c in cells],
    )


def check_enough_types(table: CellTable, groups: dict[str, np.ndarray], n_min: int) -> None:
    """Raise :class:`~cello1.errors.InputError` unless some group has ``n_min`` distinct cell types."""
    largest = max(len({table.label[c] for c in cells.tolist()}) for cells in groups.values())
    if largest < n_min:
        raise InputError(
            f"no group (donor/batch) has {n_min} distinct cell types (the largest has {largest}); "
            f"lower {{n_min}} to {largest} or below, or check {{label_key}}/{{donor_key}}",
            params=["n_min", "label_key", "donor_key"],
        )


def draw(table: CellTable, groups: dict[str, np.ndarray], config: BuildConfig, per_n: int, tag: str) -> list[list[int]]:
    """Puzzles (lists of cell indices) drawn from every non-empty group, ``per_n`` of each N per group."""
    puzzles: list[list[int]] = []
    for name, cells in groups.items():
        if cells.size:
            rng = rng_for(config.seed, "puzzles", tag, name)
            puzzles += sample_group(cells, table.label, config.n_min, config.n_max, per_n, rng)
    return puzzles


def cap_test(test: list[list[int]], config: BuildConfig) -> list[list[int]]:
    """``test`` cut to ``config.max_test`` puzzles by a stratified-by-N sample (unchanged when within the cap)."""
    if config.max_test and len(test) > config.max_test:
        keep = stratified_sample([len(p) for p in test], config.max_test, rng_for(config.seed, "cap"))
        test = [test[i] for i in keep.tolist()]
    return test


def resolve_split(table: CellTable, config: BuildConfig, notes: list[str]) -> str:
    """The split to use: ``auto`` becomes ``donor`` with at least 2 donors, else ``cell``;
    an explicit ``donor`` with fewer than 2 donors raises.
    """
    donors = {d for d in table.donor if d is not None}
    if config.split == "auto":
        return "donor" if len(donors) >= 2 else "cell"
    if config.split == "donor" and len(donors) < 2:
        raise InputError(
            f"{{split}} donor needs at least 2 donors, found {len(donors)} (column {config.donor_key!r}); "
            "use {split} cell (or auto)",
            params=["split"],
        )
    return config.split


def split_random(
    table: CellTable, groups: dict[str, np.ndarray], config: BuildConfig
) -> tuple[list[list[int]], list[list[int]]]:
    """The original: draw all puzzles, then a stratified-by-N sample of them is test."""
    puzzles = draw(table, groups, config, config.puzzles_per_n, "all")
    n_test = max(1, round(config.test_fraction * len(puzzles)))
    if config.max_test:
        n_test = min(n_test, config.max_test)
    test_idx = set(stratified_sample([len(p) for p in puzzles], n_test, rng_for(config.seed, "random-split")).tolist())
    train = [p for i, p in enumerate(puzzles) if i not in test_idx]
    test = [p for i, p in enumerate(puzzles) if i in test_idx]
    return train, test


def split_donor(
    table: CellTable, groups: dict[str, np.ndarray], config: BuildConfig, notes: list[str]
) -> tuple[list[list[int]], list[list[int]]] | None:
    """Donor-disjoint split: whole donors go to test until about ``test_fraction`` of the puzzles
    (at most ``max_test``) is reached; test is then capped at ``max_test``.

    Returns ``(train, test)`` cell-index puzzles, or ``None`` when fewer than 2 donors yield puzzles.
    """
    puzzles = draw(table, groups, config, config.puzzles_per_n, "all")
    counts: dict[str, int] = {}
    for p in puzzles:
        donor = table.donor[p[0]]
        if donor is not None:
            counts[donor] = counts.get(donor, 0) + 1
    if len(counts) < 2:
        return None
    target = max(1, round(config.test_fraction * len(puzzles)))
    if config.max_test:
        target = min(target, config.max_test)
    test_donors = choose_test_donors(counts, target, rng_for(config.seed, "donor-split"))
    # puzzles of cells without a donor id cannot be placed safely: train only
    train = [p for p in puzzles if table.donor[p[0]] not in test_donors]
    test = [p for p in puzzles if table.donor[p[0]] in test_donors]
    capped = cap_test(test, config)
    if len(capped) < len(test):
        notes.append(
            f"test capped at {len(capped)} puzzles (stratified by N); "
            f"{len(test) - len(capped)} test-donor puzzles dropped"
        )
    return train, capped


def split_cell(
    table: CellTable, groups: dict[str, np.ndarray], config: BuildConfig, notes: list[str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Cell-disjoint split: cells are partitioned first, then train and test puzzles are drawn
    from their own cells. Returns ``(train, test)`` cell-index puzzles.
    """
    is_test = partition_cells(
        list(groups.values()), table.label, table.gene_keys(), config.test_fraction, rng_for(config.seed, "cell-split")
    )
    test_per_n = max(1, round(config.puzzles_per_n * config.test_fraction))
    train_per_n = max(1, config.puzzles_per_n - test_per_n)
    train_groups = {g: c[~is_test[c]] for g, c in groups.items()}
    test_groups = {g: c[is_test[c]] for g, c in groups.items()}
    train = draw(table, train_groups, config, train_per_n, "train")
    test = draw(table, test_groups, config, test_per_n, "test")
    capped = cap_test(test, config)
    if len(capped) < len(test):
        notes.append(f"test capped at {len(capped)} puzzles (stratified by N)")
    if not test:
        notes.append(f"the held-out cells have fewer than {config.n_min} types in every group: the test set is empty")
    return train, capped


def assign_ids(table: CellTable, cell_lists: list[list[int]], prefix: str, seed: int) -> list[Puzzle]:
    """Puzzles in a seeded shuffled order (so any head is representative), ids ``{prefix}_000000``…"""
    order = rng_for(seed, "order", prefix).permutation(len(cell_lists)).tolist()
    puzzles = []
    for i, j in enumerate(order):
        puzzle = make_puzzle(table, cell_lists[j])
        puzzle.id = f"{prefix}_{i:06d}"
        puzzles.append(puzzle)
    return puzzles


def build_from_table(table: CellTable, config: BuildConfig, notes: list[str]) -> tuple[list[Puzzle], list[Puzzle], str]:
    """Split and draw the puzzles of a cell table.

    Returns
    -------
    tuple
        ``(train, test, split)``: the puzzles with ids assigned and the split actually used
        (``auto`` resolved; ``donor`` falls back to ``cell`` when donors yield too few puzzles).
    """
    groups = table.groups()
    check_enough_types(table, groups, config.n_min)
    split = resolve_split(table, config, notes)
    result = None
    if split == "donor":
        result = split_donor(table, groups, config, notes)
        if result is None:
            if config.split == "donor":
                raise InputError(
                    "{split}=donor: fewer than 2 donors have enough cell types for a puzzle; use {split}=cell",
                    params=["split"],
                )
            notes.append("fewer than 2 donors yield puzzles: using a cell-disjoint split")
            split = "cell"
    if split == "cell":
        result = split_cell(table, groups, config, notes)
    elif split == "random":
        notes.append("--split random reproduces the original puzzle-level split: test cells also occur in train")
        result = split_random(table, groups, config)
    train, test = result
    return assign_ids(table, train, "train", config.seed), assign_ids(table, test, "test", config.seed), split


def check_distinct_inputs(inputs: Sequence[Any]) -> None:
    """The same file (or AnnData) given twice would put every cell in the data twice."""
    from cello1.io import same_path

    paths = [Path(item) for item in inputs if isinstance(item, (str, os.PathLike))]
    for i, path in enumerate(paths):
        for other in paths[:i]:
            if path.exists() and same_path(path, other):
                raise InputError(f"{path} is given twice (also as {other}); pass each input once")
    objects = [id(item) for item in inputs if not isinstance(item, (str, os.PathLike))]
    if len(objects) != len(set(objects)):
        raise InputError("the same AnnData object is given twice; pass each input once")


def build_puzzles(adata_or_list: Any = None, config: BuildConfig | None = None, **overrides: Any) -> BuildResult:
    """Build CellPuzzles from one or more AnnData objects or ``.h5ad`` paths.

    ``adata_or_list``: an AnnData, a path, or a list of them (``None`` = the embedded
    :func:`~cello1.data.pbmc68k_reduced`, labels in ``bulk_labels``). Settings come from
    ``config`` (a :class:`BuildConfig`) with keyword ``overrides`` on top, e.g.
    ``build_puzzles(adata, label_key="bulk_labels", n_min=3, n_max=4, seed=0)``.
    Problems with the input raise :class:`cello1.io.InputError` with a one-line message.
    """
    base = config or BuildConfig()
    unknown = set(overrides) - {f.name for f in fields(BuildConfig)}
    if unknown:
        raise TypeError(f"unknown build option(s): {', '.join(sorted(unknown))}")
    if adata_or_list is None:
        from cello1.data.embedded import EMBEDDED_LABEL_KEY, pbmc68k_reduced

        adata_or_list = pbmc68k_reduced()
        if config is None and "label_key" not in overrides:
            overrides["label_key"] = EMBEDDED_LABEL_KEY
    config = replace(base, **overrides)
    config.validate()
    inputs = list(adata_or_list) if isinstance(adata_or_list, (list, tuple)) else [adata_or_list]
    if not inputs:
        raise InputError("no input given; pass AnnData objects or .h5ad paths")
    check_distinct_inputs(inputs)
    table, sources, notes = read_cells(inputs, config)
    train, test, split = build_from_table(table, config, notes)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return BuildResult(
        train=train,
        test=test,
        leakage=leakage_report(train, test, split),
        config=config,
        split=split,
        sources=sources,
        warnings=notes,
    )
