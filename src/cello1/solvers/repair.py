"""``--repair``: turn an invalid or repeated answer into a valid one-to-one assignment.

The repaired labels are stored next to the raw prediction (``repaired_assignment``,
``repair_method``), never in place of it, so the strict metrics stay honest.

Scores for the optimal assignment (cells × candidates, higher = better) come from, in
order of preference:

1. ``Completion.scores`` — a score matrix the solver provides (matrix solvers) → method
   ``"scores"``; or the model's log-likelihood of each candidate for each cell, from a
   solver that can score candidates (``hf``; the runner asks for it only for answers
   that need repair) → method ``"likelihood"``;
2. the similarity between the labels the model wrote (read loosely, position by
   position) and the candidate names (:func:`cello1.vocabulary.repair_labels`) →
   method ``"similarity"``.

An answer that is already a permutation of the candidates is kept as is (``"none"``).
"""

from __future__ import annotations

import numpy as np

from cello1.assignment import optimal_assignment
from cello1.grammar import loose_labels, parse_prediction
from cello1.puzzle import Puzzle
from cello1.solvers.base import Completion
from cello1.vocabulary import label_key, repair_labels


def is_permutation(labels: list[str] | None, puzzle: Puzzle) -> bool:
    """N labels, each a candidate (case-insensitive, stripped), none repeated."""
    if labels is None or len(labels) != puzzle.n:
        return False
    keys = [label_key(x) for x in labels]
    return len(set(keys)) == len(keys) and set(keys) <= {label_key(c) for c in puzzle.candidates}


def repair_completion(puzzle: Puzzle, completion: Completion) -> tuple[list[str | None], str]:
    """``(labels, method)``: the strict answer if it is already valid, else an optimal
    assignment over the candidates from the completion's scores or label similarity.
    """
    strict = parse_prediction(completion.text)
    if is_permutation(strict, puzzle):
        return strict, "none"
    if completion.scores is None:
        labels, _ = repair_labels(loose_labels(completion.text), puzzle.candidates, puzzle.n)
        return labels, "similarity"
    scores = np.asarray(completion.scores, dtype=float)
    if scores.shape != (puzzle.n, len(puzzle.candidates)):
        raise ValueError(
            f"puzzle {puzzle.id}: score matrix {scores.shape} != cells × candidates "
            f"({puzzle.n}, {len(puzzle.candidates)})"
        )
    columns = optimal_assignment(scores)
    return [None if c is None else puzzle.candidates[c] for c in columns], completion.info.get("scores_from", "scores")


__all__ = ["is_permutation", "repair_completion"]
