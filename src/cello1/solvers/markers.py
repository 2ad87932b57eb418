"""``--solver markers``: zero-shot scoring against deep marker profiles + optimal assignment.

Each candidate label is mapped to a Cell Ontology term (:func:`cello1.knowledge.map_label`);
its *deep profile* — up to 1,000 genes with linear consensus weights ``s / max s`` from the
shipped marker database — is matched against each cell's ranked genes; scores are made
specific among the puzzle's candidates and the best one-to-one assignment is chosen (see
:mod:`cello1.solvers.matrix`). "Malignant cell" is scored against the cancer type(s) the
donor's disease names ("lung adenocarcinoma" → the lung adenocarcinoma profile), else the
mean over all cancer types. No training data, no network, ~1–2 ms per puzzle.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cello1.errors import InputError
from cello1.knowledge import LabelMapping, knowledge_base
from cello1.knowledge.donor import Donor, donor_of, match_cancer_types
from cello1.puzzle import Puzzle
from cello1.solvers.matrix import (
    GeneScores,
    MatrixSolver,
    check_options,
    profile_gene_scores,
    profile_norm,
    puzzle_key,
)

MALIGNANT_CELL = "CL:0001064"
MALIGNANT_MODES = ("match", "mean")


class MarkerSolver(MatrixSolver):
    """Zero-shot solver from deep gene profiles keyed by Cell Ontology terms.

    ``specificity`` weights a cell's genes by ``log(N / df)`` within the puzzle (off by
    default: it helps large puzzles a little and hurts other tissues a little).
    ``malignant="match"`` scores "malignant cell" against the donor's cancer type,
    ``"mean"`` against the mean over all cancer types.
    """

    name: ClassVar[str] = "markers"
    options: ClassVar[frozenset[str]] = MatrixSolver.options | {"specificity", "malignant"}

    def __init__(
        self, assignment: str = "hungarian", specificity: bool = False, malignant: str = "match", **options: Any
    ) -> None:
        check_options(self.name, options, self.options)
        super().__init__(assignment=assignment, **options)
        if malignant not in MALIGNANT_MODES:
            raise InputError(
                f"{{malignant}} must be one of {', '.join(MALIGNANT_MODES)}, not {malignant!r}", params=["malignant"]
            )
        self.specificity = bool(specificity)
        self.malignant = malignant
        self.kb = knowledge_base()
        self._mixed_cancers: dict[tuple[str, ...], dict[str, float]] = {}
        self._cancers_of: dict[Donor, list[str]] = {}
        self._norms: dict[int, tuple[dict[str, float], float]] = {}  # keeps each profile alive with its norm
        self._last: tuple[tuple, GeneScores] | None = None

    # ---- profiles ----------------------------------------------------------------------
    def mapping(self, label: str) -> LabelMapping:
        """How a candidate label maps to the Cell Ontology."""
        return self.kb.map_label(label)

    def cancer_types(self, puzzle: Puzzle) -> list[str]:
        """The cancer types whose profile "malignant cell" uses in this puzzle ([] = the mean over all)."""
        if self.malignant == "mean":
            return []
        donor = donor_of(puzzle)
        if donor not in self._cancers_of:
            self._cancers_of[donor] = match_cancer_types(donor, self.kb.cancer_names)
        return self._cancers_of[donor]

    def profile(self, label: str, puzzle: Puzzle | None = None) -> dict[str, float]:
        """Gene → linear weight of a candidate's deep profile (empty if it has none); for
        "malignant cell" the profile of the donor's cancer when ``puzzle`` names one.
        """
        term = self.mapping(label).marker_term_id
        if term is None:
            return {}
        if term == MALIGNANT_CELL and puzzle is not None:
            keys = self.cancer_types(puzzle)
            if keys:
                return self._cancer_profile(tuple(keys))
        return self.kb.profile(term)

    def _cancer_profile(self, keys: tuple[str, ...]) -> dict[str, float]:
        if len(keys) == 1:
            return self.kb.cancer_profile(keys[0])
        if keys not in self._mixed_cancers:  # equally specific matches: their mean
            mean: dict[str, float] = {}
            for key in keys:
                for gene, w in self.kb.cancer_profile(key).items():
                    mean[gene] = mean.get(gene, 0.0) + w / len(keys)
            self._mixed_cancers[keys] = mean
        return self._mixed_cancers[keys]

    # ---- scoring -----------------------------------------------------------------------
    def gene_scores(self, puzzle: Puzzle) -> GeneScores:
        """The puzzle's linear gene model (cached for the last puzzle, which :meth:`evidence` reuses)."""
        key = puzzle_key(puzzle)
        if self._last is None or self._last[0] != key:
            profiles = [self.profile(c, puzzle) for c in puzzle.candidates]
            norms = [self._norm(p) for p in profiles]
            scores = profile_gene_scores(puzzle.cells, profiles, specificity=self.specificity, norms=norms)
            self._last = (key, scores)
        return self._last[1]

    def _norm(self, profile: dict[str, float]) -> float:
        # profiles are long-lived cached dicts (knowledge base, cancer mixes): their id is stable
        key = id(profile)
        if key not in self._norms:
            self._norms[key] = (profile, profile_norm(profile))
        return self._norms[key][1]

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates marker scores (higher = better)."""
        return self.gene_scores(puzzle).matrix()

    def method(self, puzzle: Puzzle) -> str:
        """The profiles used, including which cancer "malignant cell" stands for."""
        parts = ["Cell Ontology marker profiles of up to 1,000 genes each"]
        if any(self.mapping(c).marker_term_id == MALIGNANT_CELL for c in puzzle.candidates):
            keys = self.cancer_types(puzzle)
            names = " + ".join(self.kb.cancer_names[k] for k in keys)
            parts.append(
                f"malignant cell as {names}, from the donor's disease"
                if keys
                else "malignant cell as the mean over all cancer types"
            )
        if self.specificity:
            parts.append("genes weighted by how few of the puzzle's cells list them")
        return "; ".join(parts)

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """The candidate's distinctive profile genes among the cell's top genes, or why there are none."""
        label = puzzle.candidates[candidate]
        m = self.mapping(label)
        if m.marker_term_id is None:
            return f"'{label}' is not in the Cell Ontology marker base, so it takes the cell the others explain least"
        hits = self.gene_scores(puzzle).top_genes(puzzle.cells[cell], cell, candidate)
        term = m.term_name if m.marker_term_id == m.term_id else f"{m.term_name}, via {m.marker_term_name}"
        if m.marker_term_id == MALIGNANT_CELL and self.cancer_types(puzzle):
            term = f"{m.term_name} ({' + '.join(self.kb.cancer_names[k] for k in self.cancer_types(puzzle))})"
        if not hits:
            return f"no {term} markers among its top genes; left over after the other assignments"
        return f"{term} markers {', '.join(hits)}"

    def settings(self) -> dict[str, Any]:
        """The base settings plus the profile options."""
        return {**super().settings(), "specificity": self.specificity, "malignant": self.malignant}


__all__ = ["MarkerSolver"]
