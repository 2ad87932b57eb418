"""``--solver random``: the chance baseline (a uniformly random permutation, seeded)."""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

import numpy as np

from cello1.errors import InputError
from cello1.puzzle import Puzzle
from cello1.solvers.base import Completion
from cello1.solvers.matrix import MatrixSolver, check_options


class RandomSolver(MatrixSolver):
    """Uniform random scores; Hungarian on i.i.d. scores gives a uniformly random
    permutation, ``assignment="none"`` an independent uniform label per cell.

    The random stream depends only on ``seed`` and the puzzle id, so results do not
    change with batch order, sharding or resuming. ``n`` > 1 returns that many
    different samples per puzzle.
    """

    name: ClassVar[str] = "random"

    def __init__(self, seed: int = 0, assignment: str = "hungarian", n: int = 1, **options: Any) -> None:
        check_options(self.name, options, {"seed", "assignment", "n"})
        super().__init__(assignment=assignment, **options)
        self.seed = int(seed)
        self.n = int(n)
        if self.n < 1:
            raise InputError(f"{{n}} must be at least 1, not {n}", params=["n"])

    def _rng(self, puzzle: Puzzle, sample: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(puzzle.id.encode("utf-8")), sample])

    def score_matrix(self, puzzle: Puzzle, sample: int = 0) -> np.ndarray:
        """Uniform random scores, seeded by the puzzle id and the sample."""
        return self._rng(puzzle, sample).random((puzzle.n, len(puzzle.candidates)))

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """Random choices have no evidence."""
        return "chosen at random"

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """One random permutation (or, with ``assignment="none"``, random labels)."""
        return self.complete(puzzle, self.score_matrix(puzzle, sample))

    def settings(self) -> dict[str, Any]:
        """The base settings plus the seed."""
        return {**super().settings(), "seed": self.seed}
