"""Score-matrix solvers: score every (cell, candidate) pair, then assign.

A puzzle is an assignment problem: every candidate goes to exactly one cell. A
:class:`MatrixSolver` computes a cells × candidates matrix (higher = better), then picks
the best permutation with scipy's Hungarian solver (``assignment="hungarian"``) or the
best candidate per cell independently (``assignment="none"``, labels may repeat). The
prediction is a strict ``<think>…</think>\\n<answer>…</answer>`` completion whose think
part gives a sentence of evidence per cell, and ``Completion.scores`` carries the matrix
so ``--repair`` and ``cello1 annotate`` can reuse it.

Gene-profile scoring shared by the marker and reference solvers
(:func:`profile_score_matrix`):

* a cell's genes are weighted by rank, ``w(r) = 1 - (r - 1) / K`` for its K listed genes,
  so the top gene counts 1 and the last ~0 (genes not listed count 0);
* each candidate has a gene profile (marker weights, or reference frequencies),
  scaled to unit length;
* profiles are made *specific among the puzzle's candidates*: from each profile we
  subtract the candidates' mean profile, so a gene shared by all candidates (a pan-immune
  marker among immune types) carries no evidence, and one unique to a candidate carries
  most;
* finally each candidate's column is standardised across the puzzle's cells, so a
  candidate with many strong markers does not win every cell under argmax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from cello1.assignment import argmax_assignment, optimal_assignment
from cello1.errors import InputError
from cello1.genes import normalise_gene
from cello1.grammar import render_completion
from cello1.puzzle import Puzzle
from cello1.solvers.base import Ability, Completion, Solver

ASSIGNMENTS = ("hungarian", "none")
# Runner options every matrix solver accepts (and ignores when meaningless).
COMMON_OPTIONS = {"batch_size", "progress"}
EVIDENCE_GENES = 3


def rank_weights(n_genes: int) -> np.ndarray:
    """Linear rank weights 1 … ~0 for a ranked list of ``n_genes`` genes."""
    return 1.0 - np.arange(n_genes) / max(n_genes, 1)


def cell_gene_weights(genes: Sequence[str]) -> dict[str, float]:
    """Ranked gene list → {normalised symbol: rank weight} (first occurrence wins)."""
    weights: dict[str, float] = {}
    for gene, w in zip(genes, rank_weights(len(genes)), strict=True):
        weights.setdefault(normalise_gene(gene), float(w))
    return weights


def profile_score_matrix(cells: Sequence[Sequence[str]], profiles: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Cells × candidates score matrix from candidate gene profiles (see module doc).

    Candidates with an empty profile (unmapped labels) get a neutral 0 column.
    """
    genes = sorted({g for p in profiles for g in p})
    if not genes or not cells:
        return np.zeros((len(cells), len(profiles)))
    index = {g: j for j, g in enumerate(genes)}
    P = np.zeros((len(profiles), len(genes)))
    for c, profile in enumerate(profiles):
        for g, w in profile.items():
            P[c, index[g]] = w
    norms = np.linalg.norm(P, axis=1, keepdims=True)
    known = norms[:, 0] > 0
    P[known] /= norms[known]
    if known.sum() > 1:
        P[known] -= P[known].mean(axis=0, keepdims=True)  # specific among the candidates
    X = np.zeros((len(cells), len(genes)))
    for i, cell in enumerate(cells):
        for g, w in cell_gene_weights(cell).items():
            j = index.get(g)
            if j is not None:
                X[i, j] = w
    S = X @ P.T
    return standardise_columns(S) * known


def standardise_columns(S: np.ndarray) -> np.ndarray:
    """Z-score each column across cells (columns with no spread become 0)."""
    if S.shape[0] < 2:
        return S
    sd = S.std(axis=0, keepdims=True)
    return np.where(sd > 1e-12, (S - S.mean(axis=0, keepdims=True)) / np.where(sd > 1e-12, sd, 1.0), 0.0)


def check_options(solver: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    """Reject runner options the solver does not support, with a clear message."""
    bad = sorted(set(options) - allowed - COMMON_OPTIONS)
    if bad:
        raise InputError(
            f"solver {solver!r} does not support option(s): {', '.join(bad)}; "
            f"it accepts: {', '.join(sorted(allowed)) or 'none'}"
        )


class MatrixSolver(Solver):
    """Base class: implement :meth:`score_matrix` (and :meth:`evidence`); assignment and
    output are shared.
    """

    name: ClassVar[str] = "matrix"
    abilities: ClassVar[frozenset[Ability]] = frozenset({Ability.SCORE_MATRIX, Ability.EVIDENCE})

    def __init__(self, assignment: str = "hungarian", n: int = 1, **options: Any) -> None:
        check_options(self.name, options, set())
        if assignment not in ASSIGNMENTS:
            raise InputError(
                f"{{assignment}} must be one of {', '.join(ASSIGNMENTS)}, not {assignment!r}", params=["assignment"]
            )
        if int(n) != 1:
            raise InputError(f"solver {self.name!r} is deterministic: use {{n}}=1 (got {n})", params=["n"])
        self.assignment = assignment
        self.batch_size = int(options.get("batch_size", 64) or 64)

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates scores (higher = better); rectangular puzzles allowed."""
        raise NotImplementedError

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """A short phrase saying why ``cell`` looks like ``candidate`` (for the think part)."""
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

    def complete(self, puzzle: Puzzle, scores: np.ndarray) -> Completion:
        """The strict-format completion for a score matrix: assignment + explanation."""
        columns = self.assign(scores)
        labels = [puzzle.candidates[c] for c in columns]
        return Completion(
            text=render_completion(self.explain(puzzle, scores, columns), labels),
            scores=np.round(scores, 4).tolist(),
            info={"assignment": self.assignment},
        )

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """Score, assign and explain (deterministic: every sample is the same)."""
        return self.complete(puzzle, self.checked_scores(puzzle))

    def explain(self, puzzle: Puzzle, scores: np.ndarray, columns: list[int]) -> str:
        """The think part: the method, then one sentence of evidence per cell."""
        how = (
            "the best one-to-one assignment (Hungarian algorithm) over all cells"
            if self.assignment == "hungarian"
            else "the best candidate for each cell independently"
        )
        lines = [f"I score every cell against every candidate with the {self.name} solver and choose {how}."]
        for i, c in enumerate(columns):
            why = self.evidence(puzzle, i, c)
            margin = _margin(scores[i], c)
            lines.append(
                f"Cell {i + 1}: {puzzle.candidates[c]}{' — ' + why if why else ''} (score {scores[i, c]:.2f}{margin})."
            )
        return "\n".join(lines)

    def settings(self) -> dict[str, Any]:
        """The base settings plus the assignment rule."""
        return {**super().settings(), "assignment": self.assignment}


def _margin(row: np.ndarray, chosen: int) -> str:
    if row.size < 2:
        return ""
    others = np.delete(row, chosen)
    return f", next best {others.max():.2f}"


def top_evidence(genes: Sequence[str], profile: Mapping[str, float], k: int = EVIDENCE_GENES) -> list[str]:
    """The cell's genes that support ``profile`` most, as "GENE (#rank)"."""
    hits = []
    for rank, gene in enumerate(genes, start=1):
        w = profile.get(normalise_gene(gene), 0.0)
        if w > 0:
            hits.append((w * (1.0 - (rank - 1) / max(len(genes), 1)), rank, gene))
    hits.sort(key=lambda h: -h[0])
    return [f"{gene} (#{rank})" for _, rank, gene in hits[:k]]
