"""``cello1.annotate``: label the clusters of your own AnnData, jointly, Cell-o1 style."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cello1.annotation.clusters import GENE_MODES, expression_source
from cello1.annotation.core import PuzzleAnswer, solve_cluster_puzzle, solve_text_batch
from cello1.annotation.puzzles import ClusterPuzzle, build_cluster_puzzles, resolve_candidates
from cello1.annotation.result import AnnotationResult
from cello1.annotation.writeback import write_labels
from cello1.errors import InputError
from cello1.solvers.base import Ability, Solver

DEFAULT_KEY = "cello1_cell_type"


def annotate(
    adata,
    groupby: str,
    candidates: str | os.PathLike | list[str] | None = None,
    *,
    solver: str | Solver = "markers",
    tissue: str | None = None,
    split_by: str | None = None,
    genes: str = "markers",
    top_k: int = 50,
    allow_repeats: bool = False,
    layer: str | None = None,
    use_raw: bool | None = None,
    marker_method: str = "wilcoxon",
    key_added: str = DEFAULT_KEY,
    inplace: bool = False,
    progress: bool = False,
    **solver_options: Any,
) -> AnnotationResult:
    """Label every cluster in ``adata.obs[groupby]`` with one of ``candidates``.

    Builds one puzzle per sample (``split_by``; default one pooled puzzle) whose "cells"
    are the clusters, each described by its top ``top_k`` genes (``genes="markers"``:
    scanpy ``rank_genes_groups`` one-vs-rest; ``"mean"``: highest mean expression),
    solves it with ``solver`` (a name from :func:`cello1.get_solver`, built with
    ``solver_options``, or a :class:`~cello1.solvers.base.Solver`), and writes
    ``obs[key_added]`` (categorical), ``obs[key_added + "_confidence"]`` and
    ``uns["cello1"]`` (per-cluster labels, confidence, scores, reasoning, settings).

    Each type is used at most once per sample unless ``allow_repeats``; clusters left
    without a type are labelled ``"unassigned"``. ``candidates`` may be a list, a file
    (one per line) or a string ("A,B,C", or "A;B;C" when names contain commas); without
    it, ``tissue`` asks the marker knowledge base for the usual types of that tissue.

    Returns an :class:`~cello1.annotation.result.AnnotationResult`: ``.adata`` (an
    annotated copy, or ``adata`` itself when ``inplace=True``), ``.table`` (cluster →
    label → confidence → evidence), ``.to_csv(path)`` and ``.plot(path)``.
    """
    answers, settings, cands = annotate_clusters(
        adata,
        groupby,
        candidates,
        solver=solver,
        tissue=tissue,
        split_by=split_by,
        genes=genes,
        top_k=top_k,
        allow_repeats=allow_repeats,
        layer=layer,
        use_raw=use_raw,
        marker_method=marker_method,
        progress=progress,
        **solver_options,
    )
    target = adata if inplace else adata.copy()
    settings["key_added"] = key_added
    table = write_labels(
        target, answers, groupby=groupby, split_by=split_by, candidates=cands, settings=settings, key_added=key_added
    )
    return AnnotationResult(adata=target, table=table, answers=answers, settings=settings, key_added=key_added)


def annotate_clusters(
    adata,
    groupby: str,
    candidates=None,
    *,
    solver: str | Solver = "markers",
    tissue: str | None = None,
    split_by: str | None = None,
    genes: str = "markers",
    top_k: int = 50,
    allow_repeats: bool = False,
    layer: str | None = None,
    use_raw: bool | None = None,
    marker_method: str = "wilcoxon",
    progress: bool = False,
    **solver_options: Any,
) -> tuple[list[PuzzleAnswer], dict[str, Any], list[str]]:
    """The decisions without touching ``adata``: (answers per puzzle, settings, candidates)."""
    if top_k < 1:
        raise InputError(f"{{top_k}} must be at least 1, not {top_k}", params=["top_k"])
    if genes not in GENE_MODES:
        raise InputError(f"{{genes}} must be one of {', '.join(GENE_MODES)}, not {genes!r}", params=["genes"])
    cands = resolve_candidates(candidates, tissue)
    expr = expression_source(adata, layer=layer, use_raw=use_raw)
    puzzles = build_cluster_puzzles(
        adata,
        expr,
        groupby,
        cands,
        split_by=split_by,
        genes=genes,
        top_k=top_k,
        tissue=tissue,
        marker_method=marker_method,
    )
    solver_obj = make_solver(solver, **solver_options)
    try:
        answers = solve_all(puzzles, solver_obj, allow_repeats, progress)
    finally:
        if not isinstance(solver, Solver):  # ours to free (LLM servers, model memory)
            solver_obj.close()
    settings = {
        "groupby": groupby,
        "split_by": split_by,
        "genes": genes,
        "marker_method": marker_method if genes == "markers" else None,
        "top_k": top_k,
        "allow_repeats": allow_repeats,
        "assignment": "best type per cluster" if allow_repeats else "optimal one-to-one (Hungarian, rectangular)",
        "expression": expr.source,
        "tissue": tissue,
        "n_puzzles": len(puzzles),
        "cello1_version": _version(),
        "solver": solver_settings(solver_obj, solver_options),
    }
    return answers, settings, cands


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
    step = 1 if solver.supports(Ability.SCORE_MATRIX) else max(int(solver.batch_size or 1), 1)
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


def _version() -> str:
    try:
        return version("cello1")
    except PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "unknown"
