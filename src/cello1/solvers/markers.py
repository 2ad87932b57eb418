"""``--solver markers``: zero-shot marker-gene scoring + optimal assignment.

Each candidate label is mapped to a Cell Ontology term (:func:`cello1.knowledge.map_label`);
its marker genes (from the shipped consensus marker database) are matched against each
cell's ranked genes; scores are made specific among the puzzle's candidates and the
best one-to-one assignment is chosen (see :mod:`cello1.solvers.matrix`). No training
data, no network, ~1 ms per puzzle.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cello1.knowledge import LabelMapping, knowledge_base
from cello1.puzzle import Puzzle
from cello1.solvers.matrix import MatrixSolver, check_options, profile_score_matrix, top_evidence


class MarkerSolver(MatrixSolver):
    """Zero-shot solver from marker genes keyed by Cell Ontology terms."""

    name: ClassVar[str] = "markers"

    def __init__(self, assignment: str = "hungarian", **options: Any) -> None:
        check_options(self.name, options, {"assignment", "n"})
        super().__init__(assignment=assignment, **options)
        self.kb = knowledge_base()

    def mapping(self, label: str) -> LabelMapping:
        """How a candidate label maps to the Cell Ontology."""
        return self.kb.map_label(label)

    def profile(self, label: str) -> dict[str, float]:
        """Marker gene → weight for a candidate label (empty if it has no markers)."""
        return dict(self.kb.markers_for(label))

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates marker scores (higher = better)."""
        return profile_score_matrix(puzzle.cells, [self.profile(c) for c in puzzle.candidates])

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """The candidate's markers among the cell's top genes, or why there are none."""
        label = puzzle.candidates[candidate]
        m = self.mapping(label)
        if m.marker_term_id is None:
            return f"'{label}' is not in the Cell Ontology marker base, so it takes the cell the others explain least"
        hits = top_evidence(puzzle.cells[cell], self.profile(label))
        term = m.term_name if m.marker_term_id == m.term_id else f"{m.term_name}, via {m.marker_term_name}"
        if not hits:
            return f"no {term} markers among its top genes; left over after the other assignments"
        return f"{term} markers {', '.join(hits)}"
