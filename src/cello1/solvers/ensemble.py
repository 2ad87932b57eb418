"""``--solver ensemble --members markers,reference [--weights 1,1] --train TRAIN.jsonl``:
several solvers' score matrices combined before one assignment.

Every member must give a score matrix (:attr:`~cello1.solvers.base.Ability.SCORE_MATRIX`).
For each puzzle each member's matrix is standardised (each candidate's column z-scored
across the cells, so members on different scales — marker dot products, log-ratios, an
LLM's log-likelihoods — count alike), then the matrices are averaged column by column
with the member weights, and the best one-to-one assignment is taken once on the result.

A member may claim less than its full weight for some candidates
(:meth:`~cello1.solvers.matrix.MatrixSolver.column_support`): the reference solver claims
all of it for types it was trained on in the puzzle's tissue, a third for types it saw
only in other tissues and none for types it never saw, so those come from the marker
profiles alone. With the default weights that gives the reference 0.5 / 0.25 / 0 of a
column (measured on held-out official dev puzzles: 0.4–0.6 is a flat optimum).

Members are built by name with :func:`cello1.solvers.get_solver`. Shared options go to
the members whose constructor takes them (``train`` to ``reference``, ``specificity`` to
``markers`` …); options no matrix member takes go to the other members (e.g. ``model``
for an LLM member that gives a likelihood score matrix); ``member_options`` sets one
member's options from Python. A :class:`~cello1.solvers.base.Solver` instance may be
given instead of a name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cello1.errors import InputError
from cello1.puzzle import Puzzle
from cello1.solvers.base import Ability, Solver
from cello1.solvers.matrix import COMMON_OPTIONS, MatrixSolver, combine_columns, puzzle_key, standardise_columns

DEFAULT_MEMBERS = ("markers", "reference")
# what the ensemble itself takes; everything else is for its members
OWN_OPTIONS = frozenset(MatrixSolver.options | {"members", "weights", "member_options"})


@dataclass
class Combined:
    """One puzzle's member matrices (standardised), member column weights and their combination."""

    key: tuple
    matrices: list[np.ndarray]
    column_weights: list[np.ndarray]
    scores: np.ndarray


class EnsembleSolver(MatrixSolver):
    """Weighted column-wise mean of the members' standardised score matrices, then one assignment."""

    name: ClassVar[str] = "ensemble"
    options: ClassVar[frozenset[str]] = OWN_OPTIONS

    def __init__(
        self,
        members: str | Sequence[str | Solver] = DEFAULT_MEMBERS,
        weights: str | Sequence[float] | None = None,
        assignment: str = "hungarian",
        member_options: Mapping[str, Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        own = {k: v for k, v in options.items() if k in OWN_OPTIONS or k in COMMON_OPTIONS}
        shared = {k: v for k, v in options.items() if k not in own}
        super().__init__(assignment=assignment, **own)
        specs = parse_members(members)
        self.weights = parse_weights(weights, len(specs))
        names = [spec if isinstance(spec, str) else spec.name for spec in specs]
        self.member_names = names
        self._owned: list[Solver] = []
        try:
            self.members = self._build_members(specs, shared, dict(member_options or {}))
        except BaseException:
            self.close()
            raise
        self.model = "+".join(f"{n}:{w:g}" for n, w in zip(names, self.weights, strict=True))
        self._last: Combined | None = None

    # ---- members -------------------------------------------------------------------------
    def _build_members(
        self, specs: list[str | Solver], shared: dict[str, Any], member_options: dict[str, Mapping[str, Any]]
    ) -> list[Solver]:
        from cello1.solvers import solver_class

        unknown = sorted(set(member_options) - {s for s in specs if isinstance(s, str)})
        if unknown:
            raise InputError(
                f"{{member_options}} names solvers that are not members: {', '.join(unknown)}",
                params=["member_options"],
            )
        classes = [solver_class(s) if isinstance(s, str) else type(s) for s in specs]
        for spec, cls in zip(specs, classes, strict=True):
            if not cls.supports(Ability.SCORE_MATRIX):
                name = spec if isinstance(spec, str) else spec.name
                raise InputError(
                    f"ensemble member {name!r} gives no score matrix; {{members}} may only name solvers that do "
                    "(markers, reference, random, or an LLM solver with likelihood scores)",
                    params=["members"],
                )
        accepted = [(cls.options - MatrixSolver.options) if issubclass(cls, MatrixSolver) else None for cls in classes]
        taken = set().union(*(a for a in accepted if a is not None))
        leftover = {k: v for k, v in shared.items() if k not in taken}
        if leftover and all(a is not None for a in accepted):
            members = ", ".join(s if isinstance(s, str) else s.name for s in specs)
            raise InputError(
                f"no ensemble member ({members}) takes option(s): {', '.join(sorted(leftover))}; "
                "add a member that does to {members} or drop them",
                params=["members"],
            )
        built: list[Solver] = []
        for spec, cls, allowed in zip(specs, classes, accepted, strict=True):
            if not isinstance(spec, str):
                built.append(spec)  # the caller's instance: theirs to configure and close
                continue
            opts = leftover.copy() if allowed is None else {k: v for k, v in shared.items() if k in allowed}
            if allowed is not None and "fallback" in allowed and len(specs) > 1:
                opts.setdefault("fallback", "none")  # the other members judge the types it never saw
            opts.update(member_options.get(spec, {}))
            solver = cls(**opts)
            self._owned.append(solver)
            built.append(solver)
        return built

    # ---- scoring ---------------------------------------------------------------------------
    def combined(self, puzzle: Puzzle) -> Combined:
        """The members' standardised matrices, their column weights and the combination
        (cached for the last puzzle, which :meth:`evidence` reuses).
        """
        key = puzzle_key(puzzle)
        if self._last is None or self._last.key != key:
            matrices = [standardise_columns(m.checked_scores(puzzle)) for m in self.members]
            column_weights = [
                w * (m.column_support(puzzle) if isinstance(m, MatrixSolver) else np.ones(len(puzzle.candidates)))
                for m, w in zip(self.members, self.weights, strict=True)
            ]
            scores = combine_columns(matrices, column_weights, [None] * len(matrices))
            self._last = Combined(key, matrices, column_weights, scores)
        return self._last

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates: the column-wise weighted mean of the members' standardised matrices."""
        return self.combined(puzzle).scores

    def method(self, puzzle: Puzzle) -> str:
        """The members and their weights."""
        parts = ", ".join(f"{n} ×{w:g}" for n, w in zip(self.member_names, self.weights, strict=True))
        return (
            f"the column-wise weighted mean of the standardised scores of {parts}; "
            "a member sits out the candidates it cannot judge"
        )

    def evidence(self, puzzle: Puzzle, cell: int, candidate: int) -> str:
        """Each member's evidence for the pair, for the members that weigh in on that candidate."""
        column_weights = self.combined(puzzle).column_weights
        phrases = []
        for name, member, weights in zip(self.member_names, self.members, column_weights, strict=True):
            if weights[candidate] <= 0 or not member.supports(Ability.EVIDENCE):
                continue
            said = member.evidence(puzzle, cell, candidate)
            if said:
                phrases.append(f"{name}: {said}")
        return "; ".join(phrases)

    def settings(self) -> dict[str, Any]:
        """The base settings plus each member's settings and weight."""
        return {
            **super().settings(),
            "members": [{**m.settings(), "weight": w} for m, w in zip(self.members, self.weights, strict=True)],
        }

    def close(self) -> None:
        """Close the members this ensemble built."""
        for member in getattr(self, "_owned", []):
            member.close()


def parse_members(members: str | Sequence[str | Solver]) -> list[str | Solver]:
    """``"markers,reference"`` or a list of names / :class:`Solver` instances → the member list."""
    items: list[str | Solver] = (
        [m.strip() for m in members.split(",") if m.strip()] if isinstance(members, str) else list(members)
    )
    if not items:
        raise InputError("{members} is empty; name at least one solver, e.g. markers,reference", params=["members"])
    names = [m if isinstance(m, str) else m.name for m in items]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{{members}} names {', '.join(duplicated)} more than once", params=["members"])
    if "ensemble" in names:
        raise InputError(
            "an ensemble cannot be a member of an ensemble; list its members in {members}", params=["members"]
        )
    return items


def parse_weights(weights: str | Sequence[float] | None, n_members: int) -> list[float]:
    """``"1,0.5"`` or a list → one non-negative weight per member (default: all 1)."""
    if weights is None:
        return [1.0] * n_members
    raw = weights.split(",") if isinstance(weights, str) else list(weights)
    try:
        values = [float(w) for w in raw]
    except (TypeError, ValueError):
        raise InputError(
            f"{{weights}} must be numbers separated by commas, e.g. 1,0.5 (got {weights!r})", params=["weights"]
        ) from None
    if len(values) != n_members:
        raise InputError(
            f"{{weights}} has {len(values)} values for {n_members} members; give one weight per member",
            params=["weights"],
        )
    if any(not np.isfinite(w) or w < 0 for w in values) or not any(values):
        raise InputError(f"{{weights}} must be non-negative and not all 0 (got {weights!r})", params=["weights"])
    return values


__all__ = ["Combined", "EnsembleSolver", "parse_members", "parse_weights"]
