"""The one `Prediction` type: a solver's answer to one sample of one puzzle.

It is what ``cello1 solve`` writes (one JSON line per prediction), what distillation
filters and what training-time evaluation scores. :meth:`Prediction.to_record` /
:meth:`Prediction.from_record` convert to and from that JSON record; other keys found
in a record are kept in ``extra`` and written back unchanged. A prediction also reads
like its record (``pred["assignment"]``), so code written against the JSON lines works
on the objects too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from cello1.errors import RecordFormatError
from cello1.grammar import parse_prediction

# record keys, in the order they are written
_FIELDS = (
    "id",
    "answer",
    "prediction",
    "assignment",
    "solver",
    "model",
    "seconds",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "sample",
    "n",
    "tissue",
    "disease",
    "source",
    "donor",
    "puzzle_hash",
    "options",
)
_REPAIR_FIELDS = ("repaired_assignment", "repair_method")


@dataclass(eq=False)
class Prediction(Mapping):
    """One prediction record.

    ``answer`` is the gold answer (``"A | B | C"``; ``None`` for unlabelled puzzles),
    ``prediction`` the raw output, ``assignment`` its strictly parsed labels (``None``
    when the strict format check fails or the call failed), ``error`` the failure
    message of a call that failed. ``confidence`` is the per-cell confidence of solvers
    that assign from a score matrix (written only when present). ``puzzle_hash``
    identifies the puzzle's content (the rendered record) and ``options`` the solver
    settings that shape the answer, so a resumed run only keeps what was made on the same
    puzzle the same way. ``repaired_assignment``/``repair_method`` are set by ``--repair``
    (and only then written).
    """

    id: str
    prediction: str = ""
    answer: str | None = None
    assignment: list[str] | None = None
    solver: str | None = None
    model: str | None = None
    seconds: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    sample: int = 0
    n: int | None = None
    tissue: str | None = None
    disease: str | None = None
    source: str | None = None
    donor: str | None = None
    confidence: list[float] | None = None
    puzzle_hash: str | None = None
    options: dict[str, Any] | None = None
    repaired: bool = False
    repaired_assignment: list[str | None] | None = None
    repair_method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """``(id, sample)``: what identifies a prediction within a run."""
        return self.id, self.sample

    @property
    def failed(self) -> bool:
        """The call failed (``error`` is set); a re-run retries it."""
        return self.error is not None

    def set_repair(self, labels: list[str | None] | None, method: str | None) -> None:
        """Record a ``--repair`` result next to the raw answer."""
        self.repaired, self.repaired_assignment, self.repair_method = True, labels, method

    # ---- records -----------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The JSON record (the layout ``cello1 solve`` writes)."""
        rec = {name: getattr(self, name) for name in _FIELDS}
        if self.confidence is not None:
            rec["confidence"] = self.confidence
        if self.repaired:
            rec.update({name: getattr(self, name) for name in _REPAIR_FIELDS})
        rec.update(self.extra)
        return rec

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Prediction:
        """A prediction from its JSON record; unknown keys go to ``extra``."""
        if not isinstance(record, Mapping) or "id" not in record:
            raise RecordFormatError("a prediction record must be a JSON object with an 'id'")
        known = {f.name for f in fields(cls)} - {"extra", "repaired"}
        values = {k: v for k, v in record.items() if k in known}
        values["id"] = str(values["id"])
        values["sample"] = int(values.get("sample") or 0)
        if values.get("prediction") is None:
            values["prediction"] = ""
        extra = {k: v for k, v in record.items() if k not in known}
        return cls(**values, repaired="repair_method" in record, extra=extra)

    @classmethod
    def of(cls, puzzle: Any, text: str, **values: Any) -> Prediction:
        """A prediction for ``puzzle`` (a :class:`~cello1.puzzle.Puzzle`) whose raw output
        is ``text``; the assignment is parsed strictly unless the call failed.
        """
        failed = values.get("error") is not None
        return cls(
            id=puzzle.id,
            prediction=text,
            answer=puzzle.answer_str,
            assignment=None if failed else parse_prediction(text),
            n=puzzle.n,
            tissue=puzzle.tissue,
            disease=puzzle.disease,
            source=puzzle.source,
            donor=puzzle.donor,
            **values,
        )

    # ---- reading like the record ---------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.to_record()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_record())

    def __len__(self) -> int:
        return len(self.to_record())


__all__ = ["Prediction"]
