"""``--solver reference --train TRAIN.jsonl``: per-type gene profiles learned from the
cells of training puzzles, scored against test cells, then the same optimal assignment
as the marker solver.

* **Fit** (one vectorised pass; the full official train split, 6,912 puzzles, in about
  two seconds): for every type *t* and gene *g*, ``f[t, g]`` = the share of *t*'s training
  cells whose top-gene list contains *g*. Identical training cells (the official data
  repeats cells across puzzles) count once; labels are matched case-insensitively, and a
  candidate that is a synonym of a training label (same Cell Ontology term) reuses its
  profile. The tissues each type was seen in are kept too.
* **Score** a puzzle: each candidate's log-ratio ``L[c, g] = log((f[c, g] + ε) /
  (mean over the puzzle's candidates of f[·, g] + ε))`` — positive for genes this type
  lists more often than the other candidates, negative for genes it lacks — so the
  evidence is specific to the candidates at hand. A cell's score is the sum of ``L`` over
  its genes weighted by rank (top gene 1 … last ~0), standardised per candidate across
  the puzzle's cells.
* A candidate never seen in training uses its deep marker profile (linear weights, the
  donor's cancer for "malignant cell") as pseudo-frequencies inside the same log-ratio
  (``fallback="markers"``); one with neither gets a neutral column. With
  ``fallback="none"`` unseen candidates get no column at all, which is what an ensemble
  wants: its marker member covers them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from cello1.errors import InputError
from cello1.knowledge import knowledge_base
from cello1.knowledge.donor import donor_of
from cello1.puzzle import Puzzle
from cello1.solvers.markers import MarkerSolver
from cello1.solvers.matrix import (
    GeneScores,
    MatrixSolver,
    cell_matrix,
    check_options,
    gene_key,
    puzzle_key,
)
from cello1.solvers.scores import dense_block
from cello1.vocabulary import label_key

EPSILON = 0.05  # smoothing of the listing frequencies
FALLBACKS = ("markers", "none")
# Share of its weight the reference claims in an ensemble for a type it saw only in
# other tissues (a type seen in the puzzle's tissue claims all of it, an unseen one none):
# with equal member weights that gives the reference 0.25 of such a column (measured
# best of 0 / 0.1 / 0.25 / 0.5 on unseen tissues; thin evidence, see docs/solvers.md).
OTHER_TISSUE_SUPPORT = 1.0 / 3.0


class ReferenceSolver(MatrixSolver):
    """Learn per-type gene-listing frequencies from training puzzles; score and assign."""

    name: ClassVar[str] = "reference"
    options: ClassVar[frozenset[str]] = MatrixSolver.options | {"train", "fallback"}
    epsilon: float = EPSILON

    def __init__(
        self,
        train: str | os.PathLike | Sequence[Puzzle] | None = None,
        assignment: str = "hungarian",
        fallback: str = "markers",
        **options: Any,
    ) -> None:
        check_options(self.name, options, self.options)
        super().__init__(assignment=assignment, **options)
        if fallback not in FALLBACKS:
            raise InputError(
                f"{{fallback}} must be one of {', '.join(FALLBACKS)}, not {fallback!r}", params=["fallback"]
            )
        self.fallback = fallback
        self.types: dict[str, int] = {}  # label key -> row of the frequency matrix
        self.labels: list[str] = []  # row -> label as first seen
        self.genes: dict[str, int] = {}  # normalised symbol -> column
        self.frequencies = sparse.csr_matrix((0, 0))
        self.n_cells = np.zeros(0)
        self.tissues: list[set[str]] = []  # row -> tissues its training cells came from
        self._by_term: dict[str, int] = {}
        self._markers: MarkerSolver | None = None
        self._last: tuple[tuple, GeneScores, list[str]] | None = None
        if train is None:
            # fail before the runner opens any output file
            raise InputError("the reference solver needs training puzzles: pass {train}=TRAIN.jsonl", params=["train"])
        puzzles = _load(train)
        self.train_source = str(train) if isinstance(train, (str, os.PathLike)) else f"{len(puzzles)} puzzles"
        self.fit(puzzles)

    # ---- fitting -----------------------------------------------------------------------
    def fit(self, train: str | os.PathLike | Sequence[Puzzle]) -> ReferenceSolver:
        """Learn per-type gene frequencies from labelled puzzles (each distinct cell counted once); returns ``self``."""
        types: dict[str, int] = {}
        labels: list[str] = []
        tissues: list[set[str]] = []
        genes: dict[str, int] = {}  # normalised symbol -> column
        column_of: dict[str, int] = {}  # symbol as spelled in the puzzles -> column
        seen: set[tuple[int, tuple[str, ...]]] = set()
        type_ids: list[int] = []
        gene_ids: list[int] = []
        cell_types: list[int] = []
        for puzzle in _load(train):
            if puzzle.answer is None:
                continue
            tissue = donor_of(puzzle).tissue
            for cell, label in zip(puzzle.cells, puzzle.answer, strict=False):
                t = types.setdefault(label_key(label), len(types))
                if t == len(labels):
                    labels.append(label)
                    tissues.append(set())
                tissues[t].add(tissue)
                signature = (t, tuple(cell))
                if signature in seen:
                    continue
                seen.add(signature)
                columns = set()
                for symbol in cell:
                    j = column_of.get(symbol)
                    if j is None:  # first time this spelling is seen: normalise it once
                        j = column_of[symbol] = genes.setdefault(gene_key(symbol), len(genes))
                    columns.add(j)
                type_ids.extend([t] * len(columns))
                gene_ids.extend(columns)
                cell_types.append(t)
        if not cell_types:
            raise InputError(
                "reference solver: the training puzzles carry no gold answers; pass a labelled train split"
            )
        n_cells = np.bincount(cell_types, minlength=len(types)).astype(float)
        counts = sparse.csr_matrix(
            (np.ones(len(type_ids)), (type_ids, gene_ids)), shape=(len(types), len(genes))
        )  # duplicate (type, gene) pairs are summed
        self.types, self.labels, self.tissues, self.genes, self.n_cells = types, labels, tissues, genes, n_cells
        self.frequencies = sparse.csr_matrix(sparse.diags(1.0 / n_cells) @ counts)
        self._by_term = {}
        kb = knowledge_base()
        for key, t in types.items():
            term = kb.map_label(key).term_id
            if term is not None:
                self._by_term.setdefault(term, t)  # the first label of a term wins
        self._last = None
        return self

    @property
    def n_train_cells(self) -> dict[str, int]:
        """Type key → distinct training cells."""
        return {key: int(self.n_cells[t]) for key, t in self.types.items()}

    @property
    def profiles(self) -> dict[str, dict[str, float]]:
        """Type key → {gene: share of the type's training cells listing it}."""
        return {key: self._row_profile(t) for key, t in self.types.items()}

    def _row_profile(self, row: int) -> dict[str, float]:
        symbols = list(self.genes)
        line = self.frequencies.getrow(row)
        return {symbols[j]: float(v) for j, v in zip(line.indices, line.data, strict=True)}

    # ---- profiles ----------------------------------------------------------------------
    def row(self, label: str) -> int | None:
        """The fitted row of a label: by label key, else by Cell Ontology term; ``None`` if unseen."""
        t = self.types.get(label_key(label))
        if t is None:
            term = knowledge_base().map_label(label).term_id
            t = None if term is None else self._by_term.get(term)
        return t

    def marker_solver(self) -> MarkerSolver:
        """The marker solver whose deep profiles stand in for unseen types."""
        if self._markers is None:
            self._markers = MarkerSolver()
        return self._markers

    def pseudo_profile(self, label: str, puzzle: Puzzle | None = None) -> dict[str, float]:
        """Deep marker profile (linear weights) used as frequencies for an unseen type; {} without fallback."""
        if self.fallback == "none":
            return {}
        return self.marker_solver().profile(label, puzzle)

    def profile(self, label: str, puzzle: Puzzle | None = None) -> tuple[dict[str, float], str]:
        """(gene frequencies, where they came from: "reference" | "markers" | "none")."""
        t = self.row(label)
        if t is not None:
            return self._row_profile(t), "reference"
        pseudo = self.pseudo_profile(label, puzzle)
        return pseudo, ("markers" if pseudo else "none")

    def column_support(self, puzzle: Puzzle) -> np.ndarray:
        """Per candidate, the share of its ensemble weight this solver claims: 1 for a type
        seen in training in the puzzle's tissue, 1/3 for one seen only in other tissues, 0 for
        an unseen one (the other members decide it).
        """
        tissue = donor_of(puzzle).tissue
        rows = [self.row(c) for c in puzzle.candidates]
        return np.array(
            [0.0 if t is None else 1.0 if tissue in self.tissues[t] else OTHER_TISSUE_SUPPORT for t in rows]
        )

    # ---- scoring -----------------------------------------------------------------------
    def gene_scores(self, puzzle: Puzzle) -> GeneScores:
        """The puzzle's log-ratio gene model."""
        return self._model(puzzle)[0]

    def _model(self, puzzle: Puzzle) -> tuple[GeneScores, list[str]]:
        """(log-ratio gene model, each candidate's profile origin), cached for the last puzzle."""
        key = puzzle_key(puzzle)
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        if not self.types:
            raise InputError("the reference solver is not fitted: pass {train}=TRAIN.jsonl", params=["train"])
        index, X = cell_matrix(puzzle.cells)
        symbols = list(index)
        rows = [self.row(c) for c in puzzle.candidates]
        F = np.zeros((len(rows), len(symbols)))
        known_genes = [(k, self.genes[g]) for k, g in enumerate(symbols) if g in self.genes]
        fitted = [c for c, t in enumerate(rows) if t is not None]
        if fitted and known_genes:
            local, columns = (list(x) for x in zip(*known_genes, strict=True))
            F[np.ix_(fitted, local)] = dense_block(self.frequencies, [rows[c] for c in fitted], columns)
        origins = ["reference" if t is not None else "none" for t in rows]
        for c, t in enumerate(rows):
            if t is None:
                pseudo = self.pseudo_profile(puzzle.candidates[c], puzzle)
                if pseudo:
                    F[c] = [pseudo.get(g, 0.0) for g in symbols]
                    origins[c] = "markers"
        known = np.array([o != "none" for o in origins])
        L = np.zeros_like(F)
        if known.any():
            mean = F[known].mean(axis=0, keepdims=True)
            L[known] = np.log((F[known] + self.epsilon) / (mean + self.epsilon))
        scores = GeneScores(index, X, L, known)
        self._last = (key, scores, origins)
        return scores, origins

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates scores: the cell's rank-weighted genes times each candidate's
        log-ratios, z-scored per candidate across cells. Raises when the solver is not fitted.
        """
        return self.gene_scores(puzzle).matrix()

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """The cell's top genes that favour the candidate (up to 3, with ranks) and where its profile comes from."""
        label = puzzle.candidates[candidate]
        scores, origins = self._model(puzzle)
        origin = origins[candidate]
        if origin == "none":
            return f"'{label}' is unseen in training and has no markers, so it takes the cell the others explain least"
        top = ", ".join(scores.top_genes(puzzle.cells[cell], cell, candidate))
        source = (
            f"genes typical of its {self._n_cells_of(label)} training cells"
            if origin == "reference"
            else "its marker genes (type unseen in training)"
        )
        return f"{source}: {top}" if top else f"no distinctive genes; weak match to {source}"

    def _n_cells_of(self, label: str) -> int:
        t = self.row(label)
        return 0 if t is None else int(self.n_cells[t])

    def settings(self) -> dict[str, Any]:
        """The base settings plus the training source, number of learnt types, ``epsilon`` and the fallback."""
        return {
            **super().settings(),
            "train": self.train_source,
            "n_types": len(self.types),
            "epsilon": self.epsilon,
            "fallback": self.fallback,
        }


def _load(train: str | os.PathLike | Sequence[Puzzle]) -> list[Puzzle]:
    if isinstance(train, (str, os.PathLike)):
        from cello1.io import read_puzzles

        return read_puzzles(train)
    return list(train)


__all__ = ["ReferenceSolver"]
