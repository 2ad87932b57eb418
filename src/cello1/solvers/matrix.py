"""Score-matrix solvers: score every (cell, candidate) pair, then assign.

A puzzle is an assignment problem: every candidate goes to exactly one cell. A
:class:`MatrixSolver` computes a cells × candidates matrix (higher = better), then picks
the best permutation with scipy's Hungarian solver (``assignment="hungarian"``) or the
best candidate per cell independently (``assignment="none"``, labels may repeat). The
prediction is a strict ``<think>…</think>\\n<answer>…</answer>`` completion whose think
part gives a sentence of evidence per cell, and ``Completion.scores`` carries the matrix
so ``--repair`` and ``cello1 annotate`` can reuse it.

Gene-profile scoring shared by the marker and reference solvers (:class:`GeneScores`,
:func:`profile_score_matrix`, in :mod:`cello1.solvers.scores`):

* a cell's genes are weighted by rank, ``w(r) = 1 - (r - 1) / K`` for its K listed genes,
  so the top gene counts 1 and the last ~0 (genes not listed count 0); optionally
  (``specificity``) times ``log(N / df)``, df = how many of the puzzle's N cells list
  the gene, so genes every cell lists count less;
* each candidate has a gene profile (marker weights, or reference frequencies),
  scaled to unit length;
* profiles are made *specific among the puzzle's candidates*: from each profile we
  subtract the candidates' mean profile, so a gene shared by all candidates (a pan-immune
  marker among immune types) carries no evidence, and one unique to a candidate carries
  most;
* finally each candidate's column is standardised across the puzzle's cells, so a
  candidate with many strong markers does not win every cell under argmax.

Only genes some cell lists can contribute, so the profiles are sliced to the cells'
genes (their norms still come from the whole profile): ~1 ms per puzzle with
1,000-gene profiles.

**Confidence** (:func:`assignment_confidence`): for each cell, how much the total score
of the chosen assignment drops when that cell may not take its label and the rest is
re-solved (the *regret*; 0 when an equally good alternative exists). It is written in
``Completion.info["confidence"]``, in the think text and in the prediction record.

**Transductive** solving (``transductive=True``, any matrix solver): the solver first
sees every puzzle of the run (:meth:`MatrixSolver.prepare`), then adds scores from
profiles of confidently assigned cells of *other* puzzles
(:mod:`cello1.solvers.transductive`). Its answers depend on the other puzzles in the
file, so they are not per-puzzle zero-shot; the solver's name gets ``+transductive`` and
the think text says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cello1.assignment import argmax_assignment, optimal_assignment
from cello1.errors import InputError
from cello1.grammar import render_completion
from cello1.puzzle import Puzzle
from cello1.solvers.base import Ability, Completion, Solver

# the building blocks live in cello1.solvers.scores; re-exported here for solver authors
from cello1.solvers.scores import (
    GeneScores,
    assignment_confidence,
    cell_gene_weights,
    cell_matrix,
    combine_columns,
    gene_key,
    profile_gene_scores,
    profile_norm,
    profile_score_matrix,
    puzzle_key,
    rank_weights,
    specific_profiles,
    standardise_columns,
)

if TYPE_CHECKING:
    from cello1.solvers.transductive import Transduction

ASSIGNMENTS = ("hungarian", "none")
# Runner options every matrix solver accepts (and ignores when meaningless).
COMMON_OPTIONS = {"batch_size", "progress"}


def check_options(solver: str, options: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Reject runner options the solver does not support, with a clear message."""
    bad = sorted(set(options) - set(allowed) - COMMON_OPTIONS)
    if bad:
        raise InputError(
            f"solver {solver!r} does not support option(s): {', '.join(bad)}; "
            f"it accepts: {', '.join(sorted(allowed)) or 'none'}"
        )


class MatrixSolver(Solver):
    """Base class: implement :meth:`score_matrix` (and :meth:`evidence`); assignment,
    confidence, transductive solving and the output are shared.

    ``options`` lists the constructor options a subclass accepts (an ensemble routes
    shared options such as ``train`` to the members that take them).
    """

    name: ClassVar[str] = "matrix"
    abilities: ClassVar[frozenset[Ability]] = frozenset({Ability.SCORE_MATRIX, Ability.EVIDENCE})
    options: ClassVar[frozenset[str]] = frozenset({"assignment", "n", "transductive"})

    def __init__(self, assignment: str = "hungarian", n: int = 1, transductive: bool = False, **options: Any) -> None:
        check_options(self.name, options, set())
        if assignment not in ASSIGNMENTS:
            raise InputError(
                f"{{assignment}} must be one of {', '.join(ASSIGNMENTS)}, not {assignment!r}", params=["assignment"]
            )
        if int(n) != 1:
            raise InputError(f"solver {self.name!r} is deterministic: use {{n}}=1 (got {n})", params=["n"])
        self.assignment = assignment
        self.batch_size = int(options.get("batch_size", 64) or 64)
        self.transductive = bool(transductive)
        self._transduction: Transduction | None = None
        if self.transductive:
            # the records say so: a transductive answer depends on the other puzzles
            self.name = f"{type(self).name}+transductive"

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates scores (higher = better); rectangular puzzles allowed."""
        raise NotImplementedError

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """A short phrase saying why ``cell`` looks like ``candidate`` (for the think part)."""
        return ""

    def column_support(self, puzzle: Puzzle) -> np.ndarray:
        """Per candidate, the share of its weight this solver claims in an ensemble (1 = all,
        0 = none: it cannot judge that candidate); default: all of it everywhere.
        """
        return np.ones(len(puzzle.candidates))

    def method(self, puzzle: Puzzle) -> str:
        """What the scores are made of, as a clause for the think part ("" = nothing to add)."""
        return ""

    # ---- shared ------------------------------------------------------------------------
    def assign(self, scores: np.ndarray) -> list[int]:
        """Candidate column per cell. Hungarian leaves extra cells (more cells than
        candidates) unassigned; those take their best column.
        """
        if scores.shape[1] == 0:
            raise InputError("the puzzle has no candidate cell types")
        if self.assignment == "none":
            return argmax_assignment(scores)
        best = argmax_assignment(scores)
        return [b if c is None else c for c, b in zip(optimal_assignment(scores), best, strict=True)]

    def confidence(self, scores: np.ndarray, columns: list[int]) -> list[float]:
        """Per-cell confidence of an assignment under this solver's rule (:func:`assignment_confidence`)."""
        return assignment_confidence(scores, columns, one_to_one=self.assignment == "hungarian")

    def complete(self, puzzle: Puzzle, scores: np.ndarray) -> Completion:
        """The strict-format completion for a score matrix: assignment, confidence, explanation."""
        columns = self.assign(scores)
        confidence = self.confidence(scores, columns)
        labels = [puzzle.candidates[c] for c in columns]
        info: dict[str, Any] = {"assignment": self.assignment, "confidence": confidence}
        if self._transduction is not None:
            info["transductive"] = True
        return Completion(
            text=render_completion(self.explain(puzzle, scores, columns, confidence), labels),
            scores=np.round(scores, 4).tolist(),
            info=info,
        )

    def prepare(self, puzzles: list[Puzzle]) -> None:
        """Transductive solvers read every puzzle of the run first (others: nothing to do)."""
        if self.transductive:
            from cello1.solvers.transductive import Transduction

            self._transduction = Transduction(self).fit(puzzles)

    def solving_scores(self, puzzle: Puzzle) -> np.ndarray:
        """The matrix the answer is assigned from: :meth:`score_matrix`, plus the
        transductive scores when the solver is transductive.
        """
        if not self.transductive:
            return self.checked_scores(puzzle)
        if self._transduction is None:
            raise InputError(
                "a transductive solver must see the whole set of puzzles first: "
                "call prepare(puzzles) or solve_batch(puzzles), or use cello1 solve"
            )
        return self._transduction.scores(puzzle)

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """Score, assign and explain (deterministic: every sample is the same)."""
        return self.complete(puzzle, self.solving_scores(puzzle))

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """``n`` completions per puzzle; a transductive solver that has not seen all of
        ``puzzles`` (e.g. never prepared) learns from ``puzzles`` first.
        """
        if self.transductive and (self._transduction is None or not self._transduction.knows(puzzles)):
            self.prepare(puzzles)
        return super().solve_batch(puzzles)

    def explain(
        self, puzzle: Puzzle, scores: np.ndarray, columns: list[int], confidence: Sequence[float] | None = None
    ) -> str:
        """The think part: the method, then one sentence of evidence per cell."""
        how = (
            "the best one-to-one assignment (Hungarian algorithm) over all cells"
            if self.assignment == "hungarian"
            else "the best candidate for each cell independently"
        )
        base = type(self).name
        method = self.method(puzzle)
        lines = [
            f"I score every cell against every candidate with the {base} solver"
            f"{' (' + method + ')' if method else ''} and choose {how}."
        ]
        if self._transduction is not None:
            lines.append(self._transduction.describe())
        lines.append("Confidence is how much the best total score would drop if the cell could not take that label.")
        for i, c in enumerate(columns):
            why = self.evidence(puzzle, i, c)
            if self._transduction is not None:
                why = "; ".join(x for x in (why, self._transduction.evidence(puzzle, i, c)) if x)
            details = f"score {scores[i, c]:.2f}{_next_best(scores[i], c)}"
            if confidence is not None:
                details += f", confidence {confidence[i]:.2f}"
            lines.append(f"Cell {i + 1}: {puzzle.candidates[c]}{' — ' + why if why else ''} ({details}).")
        return "\n".join(lines)

    def settings(self) -> dict[str, Any]:
        """The base settings plus the assignment rule (and the transductive flag when set)."""
        out = {**super().settings(), "assignment": self.assignment}
        if self.transductive:
            out["transductive"] = True
        return out


def _next_best(row: np.ndarray, chosen: int) -> str:
    if row.size < 2:
        return ""
    others = np.delete(row, chosen)
    return f", next best {others.max():.2f}"


__all__ = [
    "ASSIGNMENTS",
    "COMMON_OPTIONS",
    "GeneScores",
    "MatrixSolver",
    "assignment_confidence",
    "cell_gene_weights",
    "cell_matrix",
    "check_options",
    "combine_columns",
    "gene_key",
    "profile_gene_scores",
    "profile_norm",
    "profile_score_matrix",
    "puzzle_key",
    "rank_weights",
    "specific_profiles",
    "standardise_columns",
]
