"""``--repair``: turn an invalid or repeated answer into a valid one-to-one assignment.

The repaired labels are stored next to the raw prediction (``repaired_assignment``,
``repair_method``), never in place of it, so the strict metrics stay honest.

Scores for the optimal assignment (cells × candidates, higher = better) come from, in
order of preference:

1. ``Completion.scores`` — a score matrix the solver provides (matrix solvers) → method
   ``"scores"``; or the model's log-likelihood of each candidate for each cell, from a
   solver with ``candidate_scores`` (``hf``; the runner asks for it only for answers
   that need repair) → method ``"likelihood"``;
2. string similarity between the labels the model wrote (tolerant extraction, position
   by position) and the candidate names → method ``"similarity"``.

An answer that is already a permutation of the candidates is kept as is (``"none"``).
"""

from __future__ import annotations

from difflib import SequenceMatcher

import numpy as np

from cello1.puzzle import Puzzle
from cello1.solvers.assignment import optimal_assignment
from cello1.solvers.base import Completion


def _norm(label: str) -> str:
    return " ".join(label.lower().split())


def is_permutation(labels: list[str] | None, puzzle: Puzzle) -> bool:
    """N labels, each a candidate (case-insensitive, stripped), none repeated."""
    if labels is None or len(labels) != puzzle.n:
        return False
    normed = [_norm(x) for x in labels]
    return len(set(normed)) == len(normed) and set(normed) <= {_norm(c) for c in puzzle.candidates}


def label_similarity(label: str, candidate: str) -> float:
    """1 for an exact (case-insensitive) match, else a difflib ratio in [0, 1)."""
    a, b = _norm(label), _norm(candidate)
    if a == b:
        return 1.0
    return 0.99 * SequenceMatcher(None, a, b).ratio()


def similarity_scores(labels: list[str], puzzle: Puzzle) -> np.ndarray:
    """Cells × candidates similarity of the label written for each cell; cells without
    a label get zeros (any leftover candidate fits them equally)."""
    scores = np.zeros((puzzle.n, len(puzzle.candidates)))
    for i, label in enumerate(labels[: puzzle.n]):
        scores[i] = [label_similarity(label, c) for c in puzzle.candidates]
    return scores


def repair_completion(puzzle: Puzzle, completion: Completion) -> tuple[list[str] | None, str]:
    """``(labels, method)``: the strict answer if it is already valid, else an optimal
    assignment over the candidates from the completion's scores or string similarity."""
    from cello1.scoring import extract_answer, parse_prediction, split_labels

    strict = parse_prediction(completion.text)
    if is_permutation(strict, puzzle):
        return strict, "none"
    if completion.scores is not None:
        scores = np.asarray(completion.scores, dtype=float)
        method = completion.info.get("scores_from", "scores")
        if scores.shape != (puzzle.n, len(puzzle.candidates)):
            raise ValueError(
                f"puzzle {puzzle.id}: score matrix {scores.shape} != cells × candidates "
                f"({puzzle.n}, {len(puzzle.candidates)})"
            )
    else:
        labels = split_labels(extract_answer(completion.text))
        scores, method = similarity_scores(labels, puzzle), "similarity"
    columns = optimal_assignment(scores)
    return [None if c is None else puzzle.candidates[c] for c in columns], method


__all__ = ["is_permutation", "label_similarity", "repair_completion", "similarity_scores"]
