"""Solve cluster puzzles and turn the answers into one label per cluster.

Non-LLM solvers (anything with ``score_matrix``) give a clusters × candidates score
matrix; the labels are its optimal one-to-one assignment (rectangular: with more
clusters than types the leftovers are ``unassigned``, with fewer some types stay
unused) or, with ``allow_repeats``, the best type per cluster.

LLM solvers get the puzzle text with ``unassigned`` offered as an extra candidate when
needed and a one-sentence note on the rules (see :func:`~cello1.annotation.puzzles.llm_view`);
an invalid answer is repaired by an optimal assignment over string similarity.

The default annotator (``solver="markers"``) does not go through puzzles: it labels
clusters from marker evidence measured on the cells (:mod:`cello1.annotation.evidence`),
see :func:`answers_from_evidence`; its confidence is calibrated.

Confidence (0–1, per cluster) of the puzzle solvers:

* score-matrix solvers: the scores are standardised over the whole matrix
  (z = (s − mean) / sd), then confidence = sigmoid(z_chosen − z_best_other), i.e. a
  two-way softmax between the chosen type and its strongest rival. Above 0.5 means the
  chosen type is also the cluster's own best; below 0.5 means the uniqueness
  constraint pushed the cluster to a type it scores lower than another one.
* LLM solvers: the string similarity between what the model wrote for the cluster and
  the final label — 1.0 when the answer was valid as given, lower when it was
  repaired. It says how cleanly the answer parsed, not how likely it is right.
* ``unassigned`` clusters: NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cello1.annotation.evidence import UNKNOWN, Call, Evidence
from cello1.annotation.puzzles import ClusterPuzzle, llm_view
from cello1.assignment import argmax_assignment, optimal_assignment
from cello1.errors import InputError
from cello1.grammar import loose_labels, think_text
from cello1.solvers.base import Ability, Completion, Solver
from cello1.vocabulary import UNASSIGNED, label_key
from cello1.vocabulary import repair_labels as repair_by_similarity


@dataclass
class ClusterCall:
    """The decision for one cluster of one sample."""

    split: str
    cluster: str
    n_cells: int
    label: str
    confidence: float
    reasoning: str
    genes: list[str] = field(default_factory=list)
    scores: list[float] | None = None  # one per candidate (sorted candidates), when known
    top_candidate: str = ""  # the best-supported candidate, also when the label is unknown
    runner_up: str = ""
    coarse: str = ""  # the broad type of the label (T cell for CD8 T cells)
    evidence_genes: list[str] = field(default_factory=list)  # "GENE 0.97": marker, mean within-cell percentile
    warnings: list[str] = field(default_factory=list)


@dataclass
class PuzzleAnswer:
    """All calls for one puzzle plus what the solver said about it as a whole."""

    puzzle: ClusterPuzzle
    calls: list[ClusterCall]
    text: str  # raw solver output (LLM) or a generated summary (score matrix)
    repaired: bool = False


def solve_cluster_puzzle(puzzle: ClusterPuzzle, solver: Solver, allow_repeats: bool = False) -> PuzzleAnswer:
    """Solve one cluster puzzle with scores (score-matrix solvers) or text (LLMs)."""
    if answers_by_scores(solver):
        return _solve_with_scores(puzzle, solver, allow_repeats)
    return solve_text_batch([puzzle], solver, allow_repeats)[0]


# ---- score-matrix solvers -----------------------------------------------------------------


def answers_by_scores(solver: Solver) -> bool:
    """Whether annotation uses ``solver``'s score matrix: the matrix solvers (markers,
    reference, ensemble …). LLM solvers also give one (likelihood scores, for ensembles),
    but annotation reads their text, as the user asked them to generate.
    """
    from cello1.solvers.matrix import MatrixSolver

    return solver.supports(Ability.SCORE_MATRIX) and isinstance(solver, MatrixSolver)


def _solve_with_scores(puzzle: ClusterPuzzle, solver: Solver, allow_repeats: bool) -> PuzzleAnswer:
    scores = solver.checked_scores(puzzle)
    columns = argmax_assignment(scores) if allow_repeats else optimal_assignment(scores)
    confidence = margin_confidence(scores, columns)
    calls = []
    for i, col in enumerate(columns):
        label = UNASSIGNED if col is None else puzzle.candidates[col]
        calls.append(
            ClusterCall(
                split=puzzle.split,
                cluster=puzzle.clusters[i],
                n_cells=puzzle.n_cells[i],
                label=label,
                confidence=float(confidence[i]),
                reasoning=explain_scores(puzzle, scores[i], col, allow_repeats, _evidence(solver, puzzle, i, col)),
                genes=list(puzzle.cells[i]),
                scores=[float(s) for s in scores[i]],
            )
        )
    rule = "best type per cluster" if allow_repeats else "optimal one-to-one assignment"
    text = f"{solver.name} scores for {puzzle.n} clusters × {len(puzzle.candidates)} types; {rule}."
    return PuzzleAnswer(puzzle, calls, text)


def _standardise(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros_like(scores)
    vals = scores[finite]
    sd = vals.std() or 1.0
    z = (scores - vals.mean()) / sd
    # -inf (impossible) → far below everything else; +inf → far above
    return np.where(finite, z, np.where(scores > 0, 1e3, -1e3))


def margin_confidence(scores: np.ndarray, columns: list[int | None]) -> np.ndarray:
    """sigmoid(z_chosen − z_best_other) per row; NaN for unassigned rows."""
    z = _standardise(np.asarray(scores, dtype=float))
    out = np.full(len(columns), np.nan)
    for i, col in enumerate(columns):
        if col is None:
            continue
        if z.shape[1] == 1:
            out[i] = 1.0
            continue
        rival = np.max(np.delete(z[i], col))
        out[i] = 1.0 / (1.0 + np.exp(-np.clip(z[i, col] - rival, -50, 50)))
    return out


def _evidence(solver: Solver, puzzle: ClusterPuzzle, cluster: int, col: int | None) -> str:
    """The solver's own evidence phrase, when it offers one."""
    if col is None or not solver.supports(Ability.EVIDENCE):
        return ""
    return solver.evidence(puzzle, cluster, col)


def explain_scores(
    puzzle: ClusterPuzzle, row: np.ndarray, col: int | None, allow_repeats: bool, evidence: str = ""
) -> str:
    """A short evidence sentence for one cluster: the leading types and why."""
    order = np.argsort(-row, kind="stable")[:3]
    ranked = ", ".join(f"{puzzle.candidates[j]} ({row[j]:.3g})" for j in order)
    head = f"Top scores: {ranked}."
    if col is None:
        return f"{head} Unassigned: every type went to a cluster that fits it better."
    chosen = puzzle.candidates[col]
    tail = f" Evidence: {evidence}." if evidence else ""
    if col == int(order[0]):
        return f"{head} Assigned {chosen}, its best-scoring type.{tail}"
    why = "" if allow_repeats else " (its better types went to clusters that fit them better)"
    return f"{head} Assigned {chosen}{why}.{tail}"


# ---- LLM solvers --------------------------------------------------------------------------


def solve_text_batch(puzzles: list[ClusterPuzzle], solver: Solver, allow_repeats: bool) -> list[PuzzleAnswer]:
    """One ``solve_batch`` call for several samples (LLM backends batch them)."""
    views = [llm_view(p, allow_repeats) for p in puzzles]
    completions = solver.solve_batch(views)
    return [
        _answer_from_text(p, solver, result[0], allow_repeats) for p, result in zip(puzzles, completions, strict=True)
    ]


def _answer_from_text(
    puzzle: ClusterPuzzle, solver: Solver, completion: Completion, allow_repeats: bool
) -> PuzzleAnswer:
    if completion.error:
        raise InputError(
            f"{solver.name} failed on sample {puzzle.split!r}: {completion.error}; check {{model}} / {{base_url}}",
            params=["model", "base_url"],
        )
    raw = loose_labels(completion.text)
    labels, similarity, repaired = repair_labels(raw, puzzle.n, puzzle.candidates, allow_repeats)
    think = think_text(completion.text)
    calls = []
    for i, label in enumerate(labels):
        said = raw[i] if i < len(raw) else "(nothing)"
        note = "" if not repaired else f" Model answer {said!r}, repaired to {label!r}."
        changed = repaired and label_key(said) != label_key(label)
        calls.append(
            ClusterCall(
                split=puzzle.split,
                cluster=puzzle.clusters[i],
                n_cells=puzzle.n_cells[i],
                label=label,
                confidence=float("nan") if label == UNASSIGNED else similarity[i],
                reasoning=f"{solver.name}: {said}.{note}",
                genes=list(puzzle.cells[i]),
                warnings=[f"LLM answer repaired: the model wrote {said!r}, repaired to {label!r}"] if changed else [],
            )
        )
    return PuzzleAnswer(puzzle, calls, think or completion.text, repaired=repaired)


def is_valid_answer(labels: list[str], n: int, candidates: list[str], allow_repeats: bool) -> bool:
    """N labels from the candidates (or ``unassigned``), each type once unless ``allow_repeats``."""
    if len(labels) != n:
        return False
    known = {label_key(c) for c in candidates} | {UNASSIGNED}
    if any(label_key(label) not in known for label in labels):
        return False
    used = [label_key(label) for label in labels if label_key(label) != UNASSIGNED]
    if not allow_repeats and len(used) != len(set(used)):
        return False
    # unassigned only for clusters that cannot get a type
    return allow_repeats or len(used) == min(n, len(candidates))


def repair_labels(
    raw: list[str], n: int, candidates: list[str], allow_repeats: bool
) -> tuple[list[str], list[float], bool]:
    """Valid labels for ``n`` clusters from a possibly invalid answer.

    Returns (labels, similarity of each raw label to its final label, repaired?). A
    valid answer is returned as is (with canonical capitalisation). Otherwise cluster i
    gets the candidate most similar to what the model wrote at position i, under an
    optimal one-to-one assignment (or independently with ``allow_repeats``); extra
    clusters become ``unassigned``.
    """
    canonical = {label_key(c): c for c in candidates} | {UNASSIGNED: UNASSIGNED}
    if is_valid_answer(raw, n, candidates, allow_repeats):
        return [canonical[label_key(label)] for label in raw], [1.0] * n, False
    labels, similarity = repair_by_similarity(
        raw, candidates, n, allow_repeats=allow_repeats, keep_unassigned=not allow_repeats
    )
    return [UNASSIGNED if label is None else label for label in labels], similarity, True


# ---- marker evidence ----------------------------------------------------------------------


def evidence_phrase(ev: Evidence, group: int, column: int, n_genes: int = 5) -> tuple[str, list[str]]:
    """The evidence sentence ("P 0.84, 9.8 SD above random genes, 95% of cells agree") and genes ("CD79A 0.99")."""
    genes = [f"{g} {pct:.2f}" for g, pct in ev.evidence_genes(group, column, n_genes)]
    z = ev.z[group, column]
    z_text = f"{z:.1f} SD above random genes" if np.isfinite(z) and z >= 0 else "not above random genes"
    if np.isfinite(z) and z < 0:
        z_text = f"{-z:.1f} SD below random genes"
    phrase = f"P {ev.P[group, column]:.2f}, {z_text}, {ev.vote[group, column]:.0%} of cells agree"
    return phrase, genes


def evidence_call(ev: Evidence, group: int, call: Call, split: str, cluster: str) -> ClusterCall:
    """A :class:`ClusterCall` from the marker-evidence decision for one group."""
    top = call.best if call.best is not None else call.runner_up
    runner = call.runner_up if call.best is not None else None
    warnings = [call.reason] if call.reason else []
    genes: list[str] = []
    if top is None:
        reasoning = f"{call.label.capitalize()}: {call.reason}."
    else:
        phrase, genes = evidence_phrase(ev, group, top)
        head = (
            ev.candidates[top]
            if call.label not in (UNKNOWN, UNASSIGNED)
            else f"{call.label} (best: {ev.candidates[top]})"
        )
        reasoning = f"{head}. Evidence: {phrase}; markers {', '.join(genes[:5]) or 'none'}."
        if runner is not None:
            reasoning += (
                f" Runner-up: {ev.candidates[runner]} (P {ev.P[group, runner]:.2f}, lead {call.margin_se:.1f} SE)."
            )
        if call.reason:
            reasoning += f" {call.reason[0].upper()}{call.reason[1:]}."
        if call.label not in (UNKNOWN, UNASSIGNED):
            warnings += _soft_warnings(ev, group, top, runner, call)
    return ClusterCall(
        split=split,
        cluster=cluster,
        n_cells=int(ev.n_cells[group]),
        label=call.label,
        confidence=call.confidence if call.label != UNASSIGNED else float("nan"),
        reasoning=reasoning,
        genes=[g.split(" ")[0] for g in genes],
        scores=[float(v) for v in ev.P[group]],
        top_candidate="" if top is None else ev.candidates[top],
        runner_up="" if runner is None else ev.candidates[runner],
        evidence_genes=genes,
        warnings=warnings,
    )


def _soft_warnings(ev: Evidence, group: int, best: int, runner: int | None, call: Call) -> list[str]:
    out = []
    if runner is not None and 0.0 <= call.margin_se < 1.0:
        out.append(f"close call: runner-up {ev.candidates[runner]} within {call.margin_se:.1f} SE")
    if ev.vote[group, best] < 0.5:
        out.append(f"mixed cluster: only {ev.vote[group, best]:.0%} of its cells prefer {ev.candidates[best]}")
    own = int(np.nanargmax(np.where(np.isfinite(ev.P[group]), ev.P[group], -np.inf)))
    if own != best:
        out.append(f"its best-supported type, {ev.candidates[own]}, went to another cluster (one type per cluster)")
    return out


def attach_evidence(call: ClusterCall, ev: Evidence, group: int, min_z: float) -> None:
    """Add marker evidence (genes, runner-up, a warning when it contradicts the label) to a puzzle solver's call."""
    column = ev.candidates.index(call.label) if call.label in ev.candidates else None
    order = list(np.argsort(-np.nan_to_num(ev.P[group], nan=-np.inf), kind="stable"))
    call.top_candidate = call.label if column is not None else ev.candidates[order[0]]
    runner = next((c for c in order if c != column), None)
    call.runner_up = "" if runner is None else ev.candidates[runner]
    if column is None:
        return
    phrase, genes = evidence_phrase(ev, group, column)
    call.evidence_genes = genes
    z = ev.z[group, column]
    if not np.isfinite(z) or z < min_z:
        call.warnings.append(f"marker evidence does not support {call.label} here ({phrase})")
