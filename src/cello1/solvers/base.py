"""The one small interface every solver implements, LLM or not."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


class Solver(ABC):
    """Solve batches of puzzles.

    Subclasses set ``name`` (the ``--solver`` value) and implement :meth:`solve_batch`.
    ``batch_size`` is how many puzzles the runner hands over at once; ``n`` is how many
    samples per puzzle are returned.
    """

    name: ClassVar[str]
    model: str | None = None
    batch_size: int = 1
    n: int = 1

    @abstractmethod
    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """For each puzzle, ``self.n`` completions, in order."""

    def fit(self, train: list[Puzzle]) -> Solver:  # noqa: B027 - optional hook
        """Learn from training puzzles (reference-style solvers); default: nothing."""
        return self

    def settings(self) -> dict[str, Any]:
        """Settings recorded with the outputs (e.g. in ``uns['cello1']``)."""
        return {"solver": self.name, "model": self.model}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free resources (servers, GPU memory)."""

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
