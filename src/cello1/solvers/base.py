"""The one interface every solver implements, LLM or not.

A solver answers puzzles: :meth:`Solver.solve_one` gives one :class:`Completion` for one
sample of one puzzle, :meth:`Solver.solve_batch` the ``n`` completions of each of several
puzzles. A subclass implements at least one of the two (the other follows).

Optional abilities are declared on the class in :attr:`Solver.abilities`, never probed:

* :attr:`Ability.SCORE_MATRIX` — :meth:`Solver.score_matrix` gives a cells × candidates
  matrix (higher = better) that annotation, ``--repair`` and ensembles reuse;
* :attr:`Ability.EVIDENCE` — :meth:`Solver.evidence` says why a cell looks like a
  candidate, in a short phrase;
* :attr:`Ability.STREAMING` — :meth:`Solver.iter_solve` yields puzzles as they finish
  (e.g. concurrent API requests), in any order;
* :attr:`Ability.CANDIDATE_SCORES` — :meth:`Solver.candidate_scores` scores every
  candidate for every cell with the model's likelihood (used by ``--repair``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from cello1.puzzle import Puzzle


@dataclass
class Completion:
    """One answer of a solver to one puzzle.

    ``text`` is the raw output (for non-LLM solvers a strict-format
    ``<think>…</think>\\n<answer>…</answer>`` string). ``scores`` optionally holds a
    cells × candidates matrix (list of lists, higher = more likely) that ``--repair``
    can use for an optimal assignment. ``error`` is set when the call failed.
    """

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    scores: list[list[float]] | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Ability(StrEnum):
    """Optional abilities a solver class declares in :attr:`Solver.abilities`; each value
    is the name of the method that provides it.
    """

    SCORE_MATRIX = "score_matrix"
    EVIDENCE = "evidence"
    STREAMING = "iter_solve"
    CANDIDATE_SCORES = "candidate_scores"


class Solver:
    """Solve puzzles; see the module docstring for the contract.

    Subclasses set ``name`` (the ``--solver`` value) and ``abilities``. ``batch_size`` is
    how many puzzles the runner hands over at once; ``n`` is how many samples per puzzle
    are returned.
    """

    name: ClassVar[str]
    abilities: ClassVar[frozenset[Ability]] = frozenset()
    model: str | None = None
    batch_size: int = 1
    n: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.solve_one is Solver.solve_one and cls.solve_batch is Solver.solve_batch:
            raise TypeError(f"{cls.__name__} must implement solve_one or solve_batch")
        for ability in cls.abilities:
            if getattr(cls, ability.value) is getattr(Solver, ability.value):
                raise TypeError(f"{cls.__name__} declares {ability.value} but does not implement it")

    @classmethod
    def supports(cls, ability: Ability) -> bool:
        """Whether the solver class declares ``ability``."""
        return ability in cls.abilities

    # ---- answering -----------------------------------------------------------------------
    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """Sample ``sample`` (0 … ``n`` − 1) of ``puzzle``."""
        return self.solve_batch([puzzle])[0][sample]

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """For each puzzle, ``self.n`` completions, in order."""
        return [[self.solve_one(puzzle, sample) for sample in range(self.n)] for puzzle in puzzles]

    def checked_scores(self, puzzle: Puzzle) -> np.ndarray:
        """:meth:`score_matrix` as a float array, checked to be cells × candidates."""
        scores = np.asarray(self.score_matrix(puzzle), dtype=float)
        expected = (puzzle.n, len(puzzle.candidates))
        if scores.shape != expected:
            raise RuntimeError(f"{type(self).__name__}.score_matrix returned {scores.shape}, expected {expected}")
        return scores

    # ---- optional abilities --------------------------------------------------------------
    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates scores, higher = better (:attr:`Ability.SCORE_MATRIX`)."""
        raise NotImplementedError(f"solver {self.name!r} gives no score matrix")

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """Why ``cell`` looks like ``candidate``, in a short phrase (:attr:`Ability.EVIDENCE`)."""
        raise NotImplementedError(f"solver {self.name!r} gives no evidence")

    def iter_solve(self, puzzles: list[Puzzle]) -> Iterator[tuple[int, list[Completion]]]:
        """``(index, completions)`` as puzzles finish, in any order (:attr:`Ability.STREAMING`)."""
        raise NotImplementedError(f"solver {self.name!r} does not stream")

    def candidate_scores(self, puzzle: Puzzle, completion: Completion) -> list[list[float]]:
        """Cells × candidates log-likelihoods given the completion (:attr:`Ability.CANDIDATE_SCORES`)."""
        raise NotImplementedError(f"solver {self.name!r} cannot score candidates")

    # ---- life cycle ----------------------------------------------------------------------
    def fit(self, train: list[Puzzle]) -> Solver:
        """Learn from training puzzles (reference-style solvers); default: nothing."""
        return self

    def prepare(self, puzzles: list[Puzzle]) -> None:
        """See every puzzle of a run before any is solved (transductive solvers); default: nothing."""

    def settings(self) -> dict[str, Any]:
        """Settings recorded with the outputs (e.g. in ``uns``)."""
        return {"solver": self.name, "model": self.model}

    def close(self) -> None:
        """Free resources (servers, GPU memory); default: nothing."""

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
