"""``cello1.annotate``: label the clusters of your own AnnData.

Two ways to decide, one result:

* ``solver="markers"`` (default): marker evidence measured on the cells
  (:mod:`cello1.annotation.evidence`) — absolute as well as relative, an ``unknown`` call
  when it is weak, a calibrated confidence;
* any other solver (LLMs, ``reference``, ``random``, or a :class:`~cello1.solvers.base.Solver`):
  Cell-o1 puzzles whose "cells" are the clusters, solved jointly; the marker evidence is
  still measured and shown next to every call.
"""

from __future__ import annotations

import os
import warnings as pywarnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cello1.annotation.clusters import GENE_MODES, Expression, describe_clusters, expression_source
from cello1.annotation.core import (
    PuzzleAnswer,
    answers_by_scores,
    attach_evidence,
    evidence_call,
    solve_cluster_puzzle,
    solve_text_batch,
)
from cello1.annotation.evidence import CALIBRATION, MIN_Z, MIN_Z_TOP, UNKNOWN, Evidence, compute_evidence, decide
from cello1.annotation.evidence import not_detected as undetected_candidates
from cello1.annotation.markersets import (
    CandidateMarkers,
    candidate_markers,
    read_markers,
    unused_user_types,
)
from cello1.annotation.puzzles import (
    POOLED,
    ClusterPuzzle,
    GroupLayout,
    build_cluster_puzzles,
    check_groupby,
    group_layout,
    resolve_candidates,
    shared_context,
    split_candidates,
)
from cello1.annotation.result import AnnotationResult
from cello1.annotation.writeback import write_labels
from cello1.errors import InputError
from cello1.solvers.base import Solver
from cello1.vocabulary import UNASSIGNED

DEFAULT_KEY = "cello1_cell_type"
MARKER_SOLVER = "markers"
LOW_OVERLAP = 0.2  # share of the candidates' markers found in the data below which we warn
FEW_MARKERS = 5  # a candidate with fewer markers in the data gets a warning


class AnnotationWarning(UserWarning):
    """Something the user should know before trusting the labels (also stored with the result)."""


@dataclass
class Advice:
    """A warning with ``{parameter}`` fields, rendered as parameter names (Python) or flags (CLI)."""

    template: str
    params: tuple[str, ...] = ()

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The text with each field spelled as ``names[param]`` (default: the parameter name)."""
        return InputError(self.template, params=self.params).render(names)


@dataclass
class Run:
    """Everything measured before the labels are decided."""

    candidates: list[str]  # the user's order
    expression: Expression
    layout: GroupLayout
    mapping: list[CandidateMarkers]
    evidence: Evidence
    advice: list[Advice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Candidates in evidence / score column order (sorted, as puzzles show them)."""
        return sorted(self.candidates)

    def entry(self, candidate: str) -> CandidateMarkers | None:
        """The mapping entry of one candidate."""
        return next((m for m in self.mapping if m.candidate == candidate), None)


def annotate(
    adata,
    groupby: str,
    candidates: str | os.PathLike | list[str] | None = None,
    *,
    solver: str | Solver = MARKER_SOLVER,
    tissue: str | None = None,
    split_by: str | None = None,
    markers: str | os.PathLike | Mapping[str, Any] | None = None,
    markers_mode: str = "merge",
    allow_repeats: bool = True,
    per_cell: bool = False,
    min_z: float = MIN_Z,
    min_confidence: float = 0.0,
    gene_key: str | None = None,
    genes: str | None = None,
    top_k: int = 50,
    layer: str | None = None,
    use_raw: bool | None = None,
    marker_method: str = "wilcoxon",
    key_added: str = DEFAULT_KEY,
    inplace: bool = False,
    progress: bool = False,
    command: str | None = None,
    **solver_options: Any,
) -> AnnotationResult:
    """Label every cluster in ``adata.obs[groupby]`` with one of ``candidates`` (or ``unknown``).

    Parameters
    ----------
    adata
        AnnData with clusters in ``obs[groupby]``; counts, TPM or log-normalised
        expression (``layer``, else ``.raw``, else ``.X``; a scaled ``.X`` is skipped for
        ``.raw``). Counts/TPM are normalised on a copy (and a warning says so).
    groupby
        The obs column with cluster ids.
    candidates
        A list, a file (one name a line) or a string ``"A;B;C"`` (``","`` also works, but
        names with commas need ``";"``). Without it: ``tissue``'s proposal, else the types of
        ``markers``.
    solver
        ``"markers"`` (default; marker evidence on the cells), another solver name
        (``hf``, ``openai``, ``reference`` …, built with ``solver_options``, e.g.
        ``model=…``, ``constrained=True``) or a :class:`~cello1.solvers.base.Solver`.
    tissue
        Propose candidates: a knowledge-base tissue (``blood``, ``lung`` …) or a panel
        (``glioma``, ``tumour``, ``T cell states``).
    split_by
        obs column of samples/donors: clusters are decided per sample.
    markers, markers_mode
        Your markers (a CSV/TSV/JSON/GMT file or a ``{type: [genes]}`` mapping), merged with
        the knowledge base (``"merge"``, yours first) or replacing it (``"replace"``).
    allow_repeats
        ``True`` (default): every cluster gets its best-supported type; a type may label
        several clusters and some types none — what over-clustered data needs.
        ``False``: each type at most once per sample (Cell-o1's rule); with more clusters
        than types the leftovers are ``unassigned``.
    per_cell
        Also score every cell on its own (``obs[key_added + "_cell"]``) and label each
        cluster by the majority of its cells (CellTypist's majority voting).
    min_z, min_confidence
        A cluster is ``unknown`` when its best type's markers are less than ``min_z`` SD
        above random genes in its cells (default 1.645, p = 0.05) or its confidence is
        below ``min_confidence`` (default 0: off).
    gene_key
        var column with gene symbols (e.g. ``feature_name`` when var names are Ensembl ids).
    genes, top_k, marker_method
        How puzzle solvers see a cluster: its top ``top_k`` genes by ``rank_genes_groups``
        (``"markers"``, the default for them) or by mean expression (``"mean"``). With the
        marker annotator only computed when given (``top_genes`` column).
    key_added
        obs column for the labels; also the ``uns`` key of the record, so runs coexist.
    inplace
        Write into ``adata`` instead of an annotated copy.
    progress
        Show progress bars.
    command
        The command that made the run (shown in the report; default: the Python call).
    **solver_options
        Passed to the solver named by ``solver``.

    Returns
    -------
    AnnotationResult
        ``.adata`` (annotated copy or ``adata``), ``.table``, ``.warnings``, ``.mapping``,
        ``.to_csv()``, ``.plot()``, ``.report()``. Writes ``obs[key_added]``,
        ``obs[key_added + "_coarse"]``, ``obs[key_added + "_confidence"]`` and ``uns[key_added]``.
    """
    if not key_added or not str(key_added).strip():
        raise InputError("{key_added} must be a non-empty name", params=["key_added"])
    answers, settings, cands, run = _decide(
        adata, groupby, candidates, solver=solver, tissue=tissue, split_by=split_by, markers=markers,
        markers_mode=markers_mode, allow_repeats=allow_repeats, per_cell=per_cell, min_z=min_z,
        min_confidence=min_confidence, gene_key=gene_key, genes=genes, top_k=top_k, layer=layer, use_raw=use_raw,
        marker_method=marker_method, progress=progress, solver_options=solver_options,
    )  # fmt: skip
    settings["key_added"] = key_added
    settings["command"] = command or python_call(groupby, candidates, solver, settings)
    target = adata if inplace else adata.copy()
    advice = run.advice
    rendered = [a.render() for a in advice]
    extra = {
        "warnings": rendered,
        "notes": run.notes,
        "mapping": mapping_frame(run.mapping),
        "evidence": {name: getattr(run.evidence, name) for name in ("P", "z", "z_top", "vote")},
        "evidence_clusters": run.layout.names,
        "not_detected": undetected_candidates(run.evidence, min_z),
    }
    table = write_labels(
        target, answers, groupby=groupby, split_by=split_by, candidates=cands, settings=settings,
        key_added=key_added, extra=extra,
    )  # fmt: skip
    if per_cell:
        write_cell_labels(target, run, key_added)
    for text in rendered:
        pywarnings.warn(text, AnnotationWarning, stacklevel=2)
    result = AnnotationResult(
        adata=target, table=table, answers=answers, settings=settings, key_added=key_added, warnings=rendered,
        notes=list(run.notes), mapping=mapping_frame(run.mapping), evidence=run.evidence, expression=run.expression,
        advice=advice,
    )  # fmt: skip
    return result


def annotate_clusters(
    adata, groupby: str, candidates=None, **options: Any
) -> tuple[list[PuzzleAnswer], dict[str, Any], list[str]]:
    """The decisions without touching ``adata``: (answers per sample, settings, candidates).

    Takes the same options as :func:`annotate` (solver options included).
    """
    solver_options = {k: options.pop(k) for k in list(options) if k not in _DECIDE_OPTIONS}
    answers, settings, cands, _ = _decide(adata, groupby, candidates, solver_options=solver_options, **options)
    return answers, settings, cands


_DECIDE_OPTIONS = {
    "solver", "tissue", "split_by", "markers", "markers_mode", "allow_repeats", "per_cell", "min_z",
    "min_confidence", "gene_key", "genes", "top_k", "layer", "use_raw", "marker_method", "progress",
}  # fmt: skip


def _decide(
    adata,
    groupby: str,
    candidates,
    *,
    solver: str | Solver = MARKER_SOLVER,
    tissue: str | None = None,
    split_by: str | None = None,
    markers=None,
    markers_mode: str = "merge",
    allow_repeats: bool = True,
    per_cell: bool = False,
    min_z: float = MIN_Z,
    min_confidence: float = 0.0,
    gene_key: str | None = None,
    genes: str | None = None,
    top_k: int = 50,
    layer: str | None = None,
    use_raw: bool | None = None,
    marker_method: str = "wilcoxon",
    progress: bool = False,
    solver_options: dict[str, Any] | None = None,
) -> tuple[list[PuzzleAnswer], dict[str, Any], list[str], Run]:
    solver_options = dict(solver_options or {})
    uses_evidence = isinstance(solver, str) and solver == MARKER_SOLVER
    _check_options(solver, solver_options, uses_evidence, allow_repeats, genes, top_k, min_confidence)
    run = measure(
        adata, groupby, candidates, tissue=tissue, split_by=split_by, markers=markers, markers_mode=markers_mode,
        layer=layer, use_raw=use_raw, gene_key=gene_key, strict=uses_evidence,
    )  # fmt: skip
    settings: dict[str, Any] = {
        "groupby": groupby,
        "split_by": split_by,
        "allow_repeats": allow_repeats,
        "assignment": "best type per cluster (types may repeat or stay unused)"
        if allow_repeats
        else "one type per cluster per sample (optimal one-to-one; leftovers unassigned)",
        "per_cell": per_cell,
        "min_z": min_z,
        "min_z_top": MIN_Z_TOP,
        "min_confidence": min_confidence,
        "expression": run.expression.source,
        "expression_state": run.expression.state,
        "gene_ids": run.expression.gene_ids,
        "markers": os.fspath(markers) if isinstance(markers, (str, os.PathLike)) else ("given" if markers else None),
        "markers_mode": markers_mode,
        "tissue": tissue,
        "cello1_version": _version(),
    }
    if uses_evidence:
        answers = evidence_answers(adata, run, allow_repeats, per_cell, min_z, min_confidence, tissue)
        if genes is not None:
            _describe(adata, run, answers, genes, top_k, marker_method)
        settings |= {
            "method": "marker evidence: within-cell ranks of each candidate's markers, pooled per cluster",
            "calibration": dict(CALIBRATION),
            "solver": {"solver": MARKER_SOLVER},
        }
    else:
        answers, solver_obj = puzzle_answers(
            adata, run, solver, split_by, genes or "markers", top_k, tissue, marker_method, allow_repeats, progress,
            solver_options, min_z,
        )  # fmt: skip
        settings["solver"] = solver_settings(solver_obj, solver_options)
    described = genes if genes is not None or uses_evidence else "markers"  # how clusters were described
    settings |= {
        "genes": described,
        "top_k": top_k,
        "marker_method": marker_method if described == "markers" else None,
        "n_puzzles": len(answers),
    }
    set_coarse(answers, run)
    run.advice += summary_advice(answers, run, allow_repeats)
    return answers, settings, run.candidates, run


def _check_options(solver, options, uses_evidence, allow_repeats, genes, top_k, min_confidence) -> None:
    if top_k < 1:
        raise InputError(f"{{top_k}} must be at least 1, not {top_k}", params=["top_k"])
    if genes is not None and genes not in GENE_MODES:
        raise InputError(f"{{genes}} must be one of {', '.join(GENE_MODES)}, not {genes!r}", params=["genes"])
    if not 0.0 <= min_confidence <= 1.0:
        raise InputError(f"{{min_confidence}} must be in [0, 1], not {min_confidence}", params=["min_confidence"])
    if isinstance(solver, str) and not uses_evidence:
        from cello1.solvers import solver_class

        solver_class(solver)  # an unknown name fails here, before any work
    if uses_evidence and options:
        raise InputError(
            f"solver option(s) {', '.join(sorted(options))} are not used by the marker annotator; drop them or "
            "choose another {solver}",
            params=["solver"],
        )
    constrained = options.get("constrained") or (isinstance(solver, Solver) and solver.settings().get("constrained"))
    if constrained and allow_repeats:
        raise InputError(
            "{constrained} decoding writes each cell type at most once, so it needs one type per cluster: "
            "pass allow_repeats=False",
            params=["constrained"],
        )


# ---- measuring ----------------------------------------------------------------------------


def measure(
    adata,
    groupby: str,
    candidates,
    *,
    tissue: str | None = None,
    split_by: str | None = None,
    markers=None,
    markers_mode: str = "merge",
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_key: str | None = None,
    strict: bool = True,
) -> Run:
    """Check the inputs and measure the marker evidence of every (sample, cluster) × candidate.

    ``strict``: refuse data where no candidate has a marker gene (the marker annotator
    could only guess); otherwise that is a warning.
    """
    advice = [Advice(text) for text in check_groupby(adata.obs, groupby)]
    notes: list[str] = []
    user = load_markers(markers)
    names, split_note = split_candidates(candidates)
    if split_note:
        notes.append(split_note)
    chosen = resolve_candidates(names, tissue, list(user) if user else None)
    if user and names:
        unused = unused_user_types(chosen, user)
        if unused:
            notes.append(f"marker file types that match no candidate (not used): {', '.join(unused)}")
    layout = group_layout(adata.obs, groupby, split_by)
    expr = expression_source(adata, layer=layer, use_raw=use_raw, gene_key=gene_key)
    for note in expr.notes:
        if "normalised copy" in note:  # the data were changed (on a copy): a warning, not a note
            advice.append(Advice(note))
        else:
            notes.append(note)
    mapping = candidate_markers(chosen, user, markers_mode)
    columns = sorted(chosen)
    by_name = {m.candidate: m for m in mapping}
    evidence = compute_evidence(
        expr.X, expr.genes, layout.codes, layout.names, columns, [by_name[c].markers for c in columns]
    )
    for c, column in enumerate(columns):
        by_name[column].n_in_data = len(evidence.marker_pct[c])
    advice += mapping_advice(mapping) + overlap_advice(mapping, expr, strict)
    return Run(chosen, expr, layout, mapping, evidence, advice, notes)


def load_markers(markers) -> dict[str, list[tuple[str, float]]] | None:
    """User markers from a file path or a ``{type: genes}`` mapping (genes: list or ``{gene: weight}``)."""
    if markers is None:
        return None
    if isinstance(markers, (str, os.PathLike)):
        return read_markers(markers)
    if isinstance(markers, Mapping):
        out = {}
        for name, genes in markers.items():
            items = genes.items() if isinstance(genes, Mapping) else [(g, 1.0) for g in genes]
            out[str(name)] = [(str(g), float(w)) for g, w in items]
        return out
    raise InputError("{markers} must be a file path or a {type: [genes]} mapping", params=["markers"])


def mapping_advice(mapping: list[CandidateMarkers]) -> list[Advice]:
    """Warnings for candidates mapped only approximately, not at all, or without markers."""
    out = []
    for m in mapping:
        if m.how == "fuzzy" and m.source == "knowledge base":
            out.append(Advice(
                f"candidate {m.candidate!r} was matched only approximately to the Cell Ontology term "
                f"{m.term_name!r} (similarity {m.score:.2f}) and uses its markers; if that is not what you meant, "
                "use the Cell Ontology name or give its genes with {markers}",
                ("markers",),
            ))  # fmt: skip
        elif not m.markers:
            why = "maps to no Cell Ontology term and" if m.how == "unmapped" else "maps to a term that"
            out.append(Advice(
                f"candidate {m.candidate!r} {why} has no marker genes, so it cannot be assigned; use a Cell "
                "Ontology name or give its genes with {markers}",
                ("markers",),
            ))  # fmt: skip
    return out


def overlap_advice(mapping: list[CandidateMarkers], expr: Expression, strict: bool) -> list[Advice]:
    """Warnings (or, with ``strict``, an error) when few of the markers are genes of the data."""
    total = sum(len(m.markers) for m in mapping)
    found = sum(m.n_in_data for m in mapping)
    if total == 0:
        if strict:
            raise InputError(
                "none of the candidates has marker genes; use Cell Ontology names or give genes with {markers}",
                params=["markers"],
            )
        return []
    example = ", ".join(map(str, list(expr.genes[:3])))
    if expr.ensembl_like:
        text = (
            f"gene ids look like Ensembl ids ({example}, …) and no var column with symbols was found, so only "
            f"{found} of {total} marker genes match; pass {{gene_key}} naming the var column with gene symbols "
            "(e.g. feature_name)"
        )
        params: tuple[str, ...] = ("gene_key",)
    else:
        text = (
            f"only {found} of {total} marker genes ({found / total:.0%}) are genes of the data (e.g. {example}): "
            "another species or non-symbol gene names? The markers are human gene symbols (mouse symbols match "
            "case-insensitively); pass {gene_key} naming a var column with symbols, use the full matrix rather "
            "than highly variable genes only, or give your own {markers}"
        )
        params = ("gene_key", "markers")
    if found == 0 and strict:
        head = "gene ids look like Ensembl ids" if expr.ensembl_like else "none of the candidates' marker genes"
        raise InputError(
            f"{head}: none of the {total} marker genes are genes of the data (e.g. {example}); "
            + text.split("; ", 1)[-1].split("? ", 1)[-1],
            params=params,
        )
    out = [Advice(text, params)] if found / total < LOW_OVERLAP else []
    for m in mapping:
        if m.markers and m.n_in_data == 0:
            out.append(Advice(f"candidate {m.candidate!r}: none of its {len(m.markers)} marker genes are in the "
                              "data, so it cannot be assigned"))  # fmt: skip
        elif m.markers and m.n_in_data < FEW_MARKERS:
            out.append(Advice(f"candidate {m.candidate!r}: only {m.n_in_data} of its {len(m.markers)} marker genes "
                              "are in the data; its evidence is thin"))  # fmt: skip
    return out


# ---- deciding -----------------------------------------------------------------------------


def evidence_answers(adata, run: Run, allow_repeats, per_cell, min_z, min_confidence, tissue) -> list[PuzzleAnswer]:
    """The marker annotator's calls, one :class:`PuzzleAnswer` per sample."""
    ev, layout = run.evidence, run.layout
    calls = decide(
        ev, allow_repeats=allow_repeats, per_cell=per_cell, min_z=min_z, min_confidence=min_confidence,
        batches=layout.batches(),
    )  # fmt: skip
    answers = []
    for rows in layout.batches():
        split = layout.splits[rows[0]]
        cluster_calls = [evidence_call(ev, int(k), calls[k], split, layout.clusters[k]) for k in rows]
        puzzle = _sample_puzzle(adata, layout, rows, run.columns, [c.genes for c in cluster_calls], tissue)
        n_unknown = sum(c.label == UNKNOWN for c in cluster_calls)
        rule = "best type per cluster" if allow_repeats else "one type per cluster"
        text = f"marker evidence for {len(rows)} clusters × {len(run.columns)} types; {rule}; {n_unknown} unknown"
        answers.append(PuzzleAnswer(puzzle, cluster_calls, text))
    return answers


def _sample_puzzle(adata, layout: GroupLayout, rows, candidates, gene_lists, tissue) -> ClusterPuzzle:
    split = layout.splits[rows[0]]
    cells = np.isin(layout.codes, rows)
    obs = adata.obs.iloc[np.flatnonzero(cells)]
    return ClusterPuzzle(
        id=f"annotate:{split}",
        context=shared_context(obs, tissue),
        cells=[list(g) for g in gene_lists],
        candidates=list(candidates),
        answer=None,
        donor=None if split == POOLED else split,
        tissue=tissue,
        cell_ids=[layout.clusters[k] for k in rows],
        split=split,
        clusters=[layout.clusters[k] for k in rows],
        n_cells=[layout.n_cells[k] for k in rows],
    )


def _describe(adata, run: Run, answers: list[PuzzleAnswer], genes: str, top_k: int, marker_method: str) -> None:
    """Give the marker annotator's clusters their ``genes``-mode descriptions (``top_genes``)."""
    layout = run.layout
    for answer, rows in zip(answers, layout.batches(), strict=True):
        cells = np.flatnonzero(np.isin(layout.codes, rows))
        local = {int(k): i for i, k in enumerate(rows)}
        codes = np.array([local[int(c)] for c in layout.codes[cells]])
        sub = Expression(run.expression.X[cells], run.expression.genes, run.expression.source)
        lists = describe_clusters(sub, codes, len(rows), genes=genes, k=top_k, marker_method=marker_method)
        answer.puzzle.cells = lists
        for call, genes_ in zip(answer.calls, lists, strict=True):
            call.genes = list(genes_)


def puzzle_answers(
    adata, run: Run, solver, split_by, genes, top_k, tissue, marker_method, allow_repeats, progress, options, min_z
) -> tuple[list[PuzzleAnswer], Solver]:
    """Cell-o1 puzzles (clusters as cells) solved by ``solver``; marker evidence attached to each call."""
    expr = run.expression
    puzzles = build_cluster_puzzles(
        adata, expr, run.layout.groupby, run.candidates, split_by=split_by, genes=genes, top_k=top_k, tissue=tissue,
        marker_method=marker_method,
    )  # fmt: skip
    solver_obj = make_solver(solver, **options)
    try:
        _check_constrained(puzzles, solver_obj, allow_repeats)
        answers = solve_all(puzzles, solver_obj, allow_repeats, progress)
    finally:
        if not isinstance(solver, Solver):  # ours to free (LLM servers, model memory)
            solver_obj.close()
    index = {(s, c): k for k, (s, c) in enumerate(zip(run.layout.splits, run.layout.clusters, strict=True))}
    for answer in answers:
        for call in answer.calls:
            attach_evidence(call, run.evidence, index[(call.split, call.cluster)], min_z)
    return answers, solver_obj


def _check_constrained(puzzles: list[ClusterPuzzle], solver: Solver, allow_repeats: bool) -> None:
    if allow_repeats or not solver.settings().get("constrained"):
        return
    for p in puzzles:
        if p.n > len(p.candidates) + 1:
            raise InputError(
                f"{{constrained}} decoding can leave at most one cluster unassigned, but sample {p.split!r} has "
                f"{p.n} clusters for {len(p.candidates)} types; add candidates or drop {{constrained}}",
                params=["constrained"],
            )


def make_solver(solver: str | Solver, **options: Any) -> Solver:
    """``solver`` itself, or the solver of that name built with ``options``."""
    if isinstance(solver, Solver):
        if options:
            raise InputError("solver options are only used with a solver name, not a Solver instance")
        return solver
    from cello1.solvers import get_solver

    return get_solver(solver, **options)


def solve_all(puzzles: list[ClusterPuzzle], solver: Solver, allow_repeats: bool, progress: bool) -> list[PuzzleAnswer]:
    """Answers for every puzzle; LLM solvers get them in batches of their ``batch_size``."""
    answers: list[PuzzleAnswer] = []
    step = 1 if answers_by_scores(solver) else max(int(solver.batch_size or 1), 1)
    with tqdm(
        total=len(puzzles), desc=f"annotate ({solver.name})", unit="sample", disable=not progress or len(puzzles) < 2
    ) as bar:
        for start in range(0, len(puzzles), step):
            chunk = puzzles[start : start + step]
            if step == 1:
                answers.append(solve_cluster_puzzle(chunk[0], solver, allow_repeats))
            else:
                answers.extend(solve_text_batch(chunk, solver, allow_repeats))
            bar.update(len(chunk))
    return answers


def solver_settings(solver: Solver, options: dict[str, Any]) -> dict[str, Any]:
    """The solver's settings plus the options it was built with, storable in ``uns``."""
    base = dict(solver.settings())
    base.setdefault("solver", solver.name)
    base.pop("assignment", None)  # annotate assigns itself; see settings["assignment"]
    for key, value in options.items():
        if isinstance(value, Path):
            value = os.fspath(value)
        elif isinstance(value, (list, tuple)) and value and not isinstance(value[0], (str, int, float)):
            value = f"{len(value)} items"  # e.g. reference puzzles passed in memory
        base.setdefault(key, value)
    return base


# ---- after deciding -----------------------------------------------------------------------


def set_coarse(answers: list[PuzzleAnswer], run: Run) -> None:
    """Each call's broad type from its candidate's Cell Ontology term (the label itself when none)."""
    for answer in answers:
        for call in answer.calls:
            entry = run.entry(call.label)
            call.coarse = (entry.coarse if entry is not None else None) or call.label


def summary_advice(answers: list[PuzzleAnswer], run: Run, allow_repeats: bool) -> list[Advice]:
    """Run-level warnings: unknown / unassigned clusters, repaired LLM answers."""
    out = []
    calls = [c for a in answers for c in a.calls]
    names = [c.cluster if c.split == POOLED else f"{c.split}/{c.cluster}" for c in calls]
    unknown = [n for n, c in zip(names, calls, strict=True) if c.label == UNKNOWN]
    if unknown:
        out.append(Advice(
            f"{len(unknown)} of {len(calls)} clusters are 'unknown' (no candidate's markers stand out): "
            f"{', '.join(unknown[:20])}; is a type missing from the candidates? Lower {{min_z}} to force a call",
            ("min_z",),
        ))  # fmt: skip
    unassigned = [n for n, c in zip(names, calls, strict=True) if c.label == UNASSIGNED]
    if unassigned and not allow_repeats:
        out.append(Advice(
            f"one type per cluster left {len(unassigned)} cluster(s) unassigned ({', '.join(unassigned[:20])}): "
            "there are more clusters than types; allow repeats to give every cluster its best type",
        ))  # fmt: skip
    for answer in answers:
        if answer.repaired:
            fixed = [c.cluster for c in answer.calls if any(w.startswith("LLM answer repaired") for w in c.warnings)]
            out.append(Advice(
                f"the LLM's answer for sample {answer.puzzle.split!r} was not a valid labelling and was repaired "
                f"by string similarity (clusters changed: {', '.join(fixed) or 'none; count or repeats fixed'}); "
                "see the reasoning column",
            ))  # fmt: skip
    return out


def write_cell_labels(adata, run: Run, key_added: str) -> None:
    """``obs[key_added + "_cell"]``: every cell's own best candidate (NaN outside the clusters)."""
    ev = run.evidence
    labels = np.array(ev.candidates + [None], dtype=object)[np.where(ev.cell_best >= 0, ev.cell_best, -1)]
    labels[run.layout.codes < 0] = None
    adata.obs[f"{key_added}_cell"] = pd.Categorical(labels, categories=ev.candidates)


def mapping_frame(mapping: list[CandidateMarkers]) -> pd.DataFrame:
    """One row per candidate: term, how it was matched, whose markers, how many are in the data."""
    rows = [
        {
            "candidate": m.candidate,
            "term_id": m.term_id or "",
            "term_name": m.term_name or "",
            "how": m.how,
            "score": m.score,
            "coarse": m.coarse or "",
            "markers_from": m.markers_from or "",
            "source": m.source,
            "n_markers": len(m.markers),
            "n_in_data": m.n_in_data,
            "top_markers": ", ".join(g for g, _ in m.markers[:8]),
        }
        for m in mapping
    ]
    return pd.DataFrame(rows)


def python_call(groupby: str, candidates, solver, settings: dict[str, Any]) -> str:
    """The run as a ``cello1.annotate(...)`` call (options that differ from the defaults)."""
    args = ["adata", repr(groupby)]
    if candidates is not None:
        args.append(f"candidates={_short(candidates)}")
    if not (isinstance(solver, str) and solver == MARKER_SOLVER):
        args.append(f"solver={solver!r}" if isinstance(solver, str) else f"solver={type(solver).__name__}(…)")
    defaults = {"split_by": None, "tissue": None, "allow_repeats": True, "per_cell": False, "min_z": MIN_Z,
                "min_confidence": 0.0, "markers": None, "key_added": DEFAULT_KEY}  # fmt: skip
    for key, default in defaults.items():
        if key in settings and settings[key] != default:
            args.append(f"{key}={settings[key]!r}")
    return f"cello1.annotate({', '.join(args)})"


def _short(value) -> str:
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    items = list(value)
    return repr(items) if len(repr(items)) < 300 else f"[{len(items)} names]"


def _version() -> str:
    try:
        return version("cello1")
    except PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "unknown"
