"""Score-matrix building blocks shared by the matrix solvers (markers, reference, ensemble,
transductive): cells' rank-weight matrices, linear gene models over candidate profiles,
column standardisation and combination, and the per-cell confidence of an assignment.

See :mod:`cello1.solvers.matrix` for how the solvers use them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from cello1.assignment import optimal_assignment
from cello1.genes import normalise_gene
from cello1.puzzle import Puzzle

EVIDENCE_GENES = 3
CONFIDENCE_DECIMALS = 3


# ---- cells ---------------------------------------------------------------------------------


def rank_weights(n_genes: int) -> np.ndarray:
    """Linear rank weights 1 … ~0 for a ranked list of ``n_genes`` genes."""
    return 1.0 - np.arange(n_genes) / max(n_genes, 1)


# a puzzle file repeats the same few thousand symbols: normalise each spelling once
gene_key = functools.lru_cache(maxsize=1 << 16)(normalise_gene)


def cell_gene_weights(genes: Sequence[str]) -> dict[str, float]:
    """Ranked gene list → {normalised symbol: rank weight} (first occurrence wins)."""
    weights: dict[str, float] = {}
    n = max(len(genes), 1)
    for r, gene in enumerate(genes):
        weights.setdefault(gene_key(gene), 1.0 - r / n)
    return weights


def cell_matrix(cells: Sequence[Sequence[str]], specificity: bool = False) -> tuple[dict[str, int], np.ndarray]:
    """(gene → column, cells × genes rank-weight matrix) over the genes the cells list.

    ``specificity`` multiplies each gene's column by ``log(N / df)`` (N cells, df of them
    listing the gene), so a gene listed by every cell carries nothing.
    """
    index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, cell in enumerate(cells):
        for gene, w in cell_gene_weights(cell).items():
            rows.append(i)
            cols.append(index.setdefault(gene, len(index)))
            vals.append(w)
    X = np.zeros((len(cells), len(index)))
    X[rows, cols] = vals
    if specificity and len(cells) > 1:
        df = np.count_nonzero(X, axis=0)
        X *= np.log(len(cells) / np.maximum(df, 1))[None, :]
    return index, X


def standardise_columns(S: np.ndarray) -> np.ndarray:
    """Z-score each column across cells (columns with no spread become 0)."""
    if S.shape[0] < 2:
        return S
    sd = S.std(axis=0, keepdims=True)
    return np.where(sd > 1e-12, (S - S.mean(axis=0, keepdims=True)) / np.where(sd > 1e-12, sd, 1.0), 0.0)


# ---- linear gene models --------------------------------------------------------------------


@dataclass
class GeneScores:
    """A linear gene model of one puzzle: raw score ``X @ W.T``, then column z-scores.

    ``index`` maps the cells' normalised genes to columns of ``X`` (cells × genes, rank
    weights) and ``W`` (candidates × genes, e.g. specific marker profiles or log-ratios);
    ``known`` marks the candidates that have a profile (the others get a 0 column).
    """

    index: dict[str, int]
    X: np.ndarray
    W: np.ndarray
    known: np.ndarray

    def matrix(self) -> np.ndarray:
        """Cells × candidates scores, each known candidate's column z-scored across the cells."""
        if self.X.shape[0] == 0:
            return np.zeros((0, self.W.shape[0]))
        return standardise_columns(self.X @ self.W.T) * self.known

    def top_genes(self, genes: Sequence[str], cell: int, candidate: int, k: int = EVIDENCE_GENES) -> list[str]:
        """The cell's genes that add most to its score for ``candidate``, as "GENE (#rank)"."""
        contribution = self.X[cell] * self.W[candidate]
        best = [j for j in np.argsort(-contribution, kind="stable")[:k] if contribution[j] > 0]
        if not best:
            return []
        symbols = list(self.index)
        rank_of: dict[str, int] = {}
        for rank, gene in enumerate(genes, start=1):
            rank_of.setdefault(gene_key(gene), rank)
        out = []
        for j in best:
            rank = rank_of[symbols[j]]
            out.append(f"{genes[rank - 1]} (#{rank})")
        return out


def profile_norm(profile: Mapping[str, float]) -> float:
    """Euclidean length of a gene profile."""
    return math.sqrt(float(np.sum(np.square(np.fromiter(profile.values(), float, len(profile)))))) if profile else 0.0


def specific_profiles(
    profiles: Sequence[Mapping[str, float]], index: Mapping[str, int], norms: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(candidates × genes unit-length profiles minus the candidates' mean, known mask).

    Norms come from the whole profiles (``norms`` when the caller has them already);
    only the genes in ``index`` are kept.
    """
    genes = list(index)  # in column order
    W = np.zeros((len(profiles), len(genes)))
    known = np.zeros(len(profiles), dtype=bool)
    for c, profile in enumerate(profiles):
        norm = profile_norm(profile) if norms is None else norms[c]
        if norm <= 0:
            continue
        known[c] = True
        W[c] = np.fromiter((profile.get(g, 0.0) for g in genes), float, len(genes)) / norm
    if known.sum() > 1:
        W[known] -= W[known].mean(axis=0, keepdims=True)  # specific among the candidates
    return W, known


def profile_gene_scores(
    cells: Sequence[Sequence[str]],
    profiles: Sequence[Mapping[str, float]],
    *,
    specificity: bool = False,
    norms: Sequence[float] | None = None,
) -> GeneScores:
    """The :class:`GeneScores` of cells against candidate gene profiles (see the module doc).

    Profile genes must be normalised symbols (:func:`cello1.genes.normalise_gene`).
    """
    index, X = cell_matrix(cells, specificity)
    W, known = specific_profiles(profiles, index, norms)
    return GeneScores(index, X, W, known)


def profile_score_matrix(
    cells: Sequence[Sequence[str]], profiles: Sequence[Mapping[str, float]], *, specificity: bool = False
) -> np.ndarray:
    """Cells × candidates score matrix from candidate gene profiles (see module doc).

    Candidates with an empty profile (unmapped labels) get a neutral 0 column.
    """
    normalised = [{normalise_gene(g): w for g, w in p.items()} for p in profiles]
    return profile_gene_scores(cells, normalised, specificity=specificity).matrix()


def combine_columns(
    matrices: Sequence[np.ndarray], weights: Sequence[float | np.ndarray], support: Sequence[np.ndarray | None]
) -> np.ndarray:
    """Column-wise weighted mean of score matrices of the same shape.

    ``weights[k]`` is a scalar or one weight per candidate column; ``support[k]`` (or
    ``None`` = all) marks the columns matrix ``k`` can score: it carries no weight on the
    others, so those come from the remaining matrices. A column nobody scores is 0.
    """
    if not matrices:
        raise ValueError("nothing to combine")
    shape = np.asarray(matrices[0]).shape
    total = np.zeros(shape)
    weight_sum = np.zeros(shape[1])
    for S, w, ok in zip(matrices, weights, support, strict=True):
        w_col = np.broadcast_to(np.asarray(w, dtype=float), (shape[1],)).copy()
        if ok is not None:
            w_col *= np.asarray(ok, dtype=float)
        total += np.asarray(S, dtype=float) * w_col[None, :]
        weight_sum += w_col
    safe = np.where(weight_sum > 0, weight_sum, 1.0)
    return np.where(weight_sum[None, :] > 0, total / safe[None, :], 0.0)


def dense_block(matrix: sparse.csr_matrix, rows: Sequence[int], columns: Sequence[int]) -> np.ndarray:
    """``matrix[rows][:, columns]`` as a dense array; fast for a few rows of a wide matrix
    (scipy's fancy column indexing scans every stored entry of the selected rows' block).
    """
    out = np.zeros((len(rows), len(columns)))
    if not len(rows) or not len(columns):
        return out
    where = np.full(matrix.shape[1], -1)
    where[np.asarray(columns)] = np.arange(len(columns))
    for k, r in enumerate(rows):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        local = where[matrix.indices[lo:hi]]
        keep = local >= 0
        out[k, local[keep]] = matrix.data[lo:hi][keep]
    return out


def puzzle_key(puzzle: Puzzle) -> tuple:
    """What identifies a puzzle's content (for per-puzzle caches)."""
    return (puzzle.id, puzzle.context, tuple(puzzle.candidates), tuple(tuple(cell) for cell in puzzle.cells))


# ---- assignment and confidence -------------------------------------------------------------


def _total(scores: np.ndarray, columns: Sequence[int | None]) -> float:
    return float(sum(scores[i, c] for i, c in enumerate(columns) if c is not None))


def assignment_confidence(scores: np.ndarray, columns: Sequence[int], one_to_one: bool = True) -> list[float]:
    """Per cell, the regret of its label: how much the best total score drops when the
    cell may not take that label and the assignment is re-solved.

    Under ``one_to_one`` (Hungarian) that is ``N`` re-solves (~0.1 ms at N = 10); without
    it (independent argmax) it is the chosen score minus the best other in the row. A
    cell left over by a rectangular Hungarian assignment also gets its row margin. 0
    means an equally good alternative exists; with a single candidate there is nothing
    to compare with, so every confidence is 0.
    """
    S = np.asarray(scores, dtype=float)
    n, n_candidates = S.shape
    if n_candidates < 2 or n == 0:
        return [0.0] * n
    out = np.zeros(n)
    for i, c in enumerate(columns):
        out[i] = S[i, c] - np.max(np.delete(S[i], c))
    if one_to_one:
        matched = optimal_assignment(S)
        best = _total(S, matched)
        forbidden = float(np.min(S)) - 1e6  # never chosen while any alternative exists
        for i, c in enumerate(matched):
            if c is None:
                continue
            T = S.copy()
            T[i, c] = forbidden
            out[i] = best - _total(T, optimal_assignment(T))
    return [round(max(float(x), 0.0), CONFIDENCE_DECIMALS) for x in out]


__all__ = [
    "GeneScores",
    "assignment_confidence",
    "cell_gene_weights",
    "cell_matrix",
    "combine_columns",
    "dense_block",
    "gene_key",
    "profile_gene_scores",
    "profile_norm",
    "profile_score_matrix",
    "puzzle_key",
    "rank_weights",
    "specific_profiles",
    "standardise_columns",
]
