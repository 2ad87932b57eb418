"""``--assignment likelihood``: an LLM scores every (cell, candidate) pair, then the best
one-to-one assignment is taken — a valid, unique answer with no free generation.

Score ``[i][j]`` is the model's log-probability of writing candidate ``j`` for cell ``i``
right after the whole puzzle: the chat prompt, the opening ``<think>`` and a cue naming
the cell, ``"Cell {i}:"``, followed by ``" {candidate}\\n"``::

    …<|im_start|>assistant\\n<think>\\nCell 3: natural killer cell\\n
                                       └─ summed log-probabilities ─┘

The trailing newline makes a name score only as a whole ("T cell" cannot borrow the
probability of "T cell, CD4-positive"). In a square puzzle every candidate is used
exactly once and every cell once, so any per-candidate bias (short names being likelier
a priori) or per-cell bias (the cue) adds the same amount to every assignment: the
Hungarian assignment on raw sums is unaffected by them.

Cost: the prompt is run once; the N·M continuations share it (and the cue tokens) —
``hf`` packs all of them into one tree-attention pass over the cached prompt, ``vllm``
sends N·M short requests that read the prompt from vLLM's prefix cache. So a puzzle
costs one prompt prefill plus roughly N·M·(name length) tokens, not N·M full prompts;
the solvers record the counts in ``Completion.info["likelihood"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cello1.grammar import THINK_OPEN
from cello1.puzzle import Puzzle
from cello1.solvers.base import Completion
from cello1.solvers.matrix import MatrixSolver

CELL_CUE = "Cell {i}:"
CANDIDATE_TEXT = " {candidate}\n"


@dataclass
class ScoringLayout:
    """Token ids of one puzzle's scoring requests: the shared ``prefix``, one ``cue`` per
    cell and one continuation per candidate (scored after prefix + cue).
    """

    prefix: list[int]
    cues: list[list[int]]
    candidates: list[list[int]]

    def sequences(self) -> list[list[int]]:
        """Cue + candidate for every (cell, candidate) pair, cell-major."""
        return [cue + cand for cue in self.cues for cand in self.candidates]

    def scored_tokens(self) -> int:
        """Tokens whose probability is summed over the whole matrix."""
        return len(self.cues) * sum(len(c) for c in self.candidates)


def scoring_prefix(prompt: str, think_prefix: str) -> str:
    """The text every pair is scored after: the prompt, then ``<think>`` and a newline
    (only the newline when the chat template already opened ``<think>``).
    """
    if think_prefix:
        return prompt if prompt.endswith("\n") else prompt + "\n"
    return prompt + THINK_OPEN + "\n"


def scoring_layout(puzzle: Puzzle, prefix_text: str, encode: Callable[[str], list[int]]) -> ScoringLayout:
    """The token ids of ``puzzle``'s scoring requests (``encode`` adds no special tokens)."""
    return ScoringLayout(
        prefix=list(encode(prefix_text)),
        cues=[list(encode(CELL_CUE.format(i=i + 1))) for i in range(puzzle.n)],
        candidates=[list(encode(CANDIDATE_TEXT.format(candidate=c))) for c in puzzle.candidates],
    )


def as_matrix(puzzle: Puzzle, flat: Sequence[float]) -> np.ndarray:
    """Cell-major scores of :meth:`ScoringLayout.sequences` → cells × candidates."""
    return np.asarray(flat, dtype=float).reshape(puzzle.n, len(puzzle.candidates))


class LikelihoodAssigner(MatrixSolver):
    """Turns an LLM's likelihood matrix into a completion (assignment, per-cell confidence,
    explanation), exactly as the other score-matrix solvers do.
    """

    name: ClassVar[str] = "likelihood"

    def __init__(self, model_name: str) -> None:
        super().__init__(assignment="hungarian")
        self.model_name = model_name

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Not used: the LLM solver computes the matrix and calls :meth:`complete`."""
        raise NotImplementedError("LikelihoodAssigner only assigns matrices it is given")

    def method(self, puzzle: Puzzle) -> str:
        """What the scores are."""
        return (
            f"the log-probability {self.model_name} gives each candidate as the type of each cell, "
            "after the whole puzzle"
        )

    def completion(self, puzzle: Puzzle, scores: np.ndarray, info: dict[str, Any]) -> Completion:
        """The assigned, explained completion, with ``info`` (costs) added."""
        completion = self.complete(puzzle, scores)
        completion.info.update(info, assignment="likelihood")
        return completion


def likelihood_completion(solver: Any, puzzle: Puzzle) -> Completion:
    """The Hungarian assignment over ``solver.likelihood_scores(puzzle)`` as a completion
    (an LLM solver's ``--assignment likelihood``; one assigner per solver, made lazily).
    """
    assigner = getattr(solver, "_assigner", None)
    if assigner is None:
        assigner = solver._assigner = LikelihoodAssigner(solver.model)
    scores, info = solver.likelihood_scores(puzzle)
    completion = assigner.completion(puzzle, scores, {"likelihood": info})
    completion.prompt_tokens = info["prompt_tokens"]
    return completion


__all__ = [
    "CANDIDATE_TEXT",
    "CELL_CUE",
    "LikelihoodAssigner",
    "ScoringLayout",
    "as_matrix",
    "likelihood_completion",
    "scoring_layout",
    "scoring_prefix",
]
