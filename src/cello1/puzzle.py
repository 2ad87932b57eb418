"""The one `Puzzle` type and the CellPuzzles record format.

Everything that renders or parses a record's strings lives here, so the exact byte
layout (``docs/format.md``) is defined once; the answer inside it follows
:mod:`cello1.grammar`:

* ``system_msg`` — the fixed instruction text :data:`SYSTEM_MSG`;
* ``user_msg``  — ``"Context: {context} \\n\\nCell 1: G1, G2, …\\n…\\n\\nMatch the cells
  above to one of the following cell types:\\n{type A}\\n{type B}…"``;
* ``assistant_msg`` — the gold labels joined by ``" | "`` (RL/test records) or a full
  ``<think>…</think>\\n<answer>…</answer>`` completion (the reasoning/SFT split).

This module is pure Python (no numpy, no torch) so scoring and data code can share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cello1.errors import InputError, RecordFormatError
from cello1.grammar import render_answer, render_completion, split_completion

SYSTEM_MSG = (
    "You are an expert assistant specialized in cell type annotation. You will be given a "
    "batch of N cells from the same donor, where each cell represents a unique cell type. "
    "For each cell, the top expressed genes are provided in descending order of expression. "
    "Using both the gene expression data and donor information, determine the correct cell "
    "type for each cell. You will also receive a list of N candidate cell types, and each "
    "candidate must be assigned to exactly one cell. Ensure that you consider all cells and "
    "candidate types together, rather than annotating each cell individually. Include your "
    "detailed reasoning within <think> and </think> tags, and provide your final answer "
    "within <answer> and </answer> tags. The final answer should be a single string listing "
    "the assigned cell types in order, separated by ' | '."
)

MATCH_LINE = "Match the cells above to one of the following cell types:"
# Instructions of the released RL data (one user turn: the puzzle, a space, this text). It
# differs from SYSTEM_MSG by one sentence; the "\\n" in it is a backslash and an "n".
RL_INSTRUCTION = (
    "You are an expert assistant specialized in cell type annotation. You will be given a "
    "batch of N cells from the same donor, where each cell represents a unique cell type. "
    "For each cell, the top expressed genes are provided in descending order of expression. "
    "Using both the gene expression data and donor information, determine the correct cell "
    "type for each cell. You will also receive a list of N candidate cell types, and each "
    "candidate must be assigned to exactly one cell. Ensure that you consider all cells and "
    "candidate types together, rather than annotating each cell individually. You must output "
    'exactly "<think>...</think>\\n<answer>...</answer>." Include your detailed reasoning '
    "within <think> and </think> tags, and provide your final answer within <answer> and "
    "</answer> tags. The final answer should be a single string listing the assigned cell "
    "types in order, separated by ' | '."
)

PromptLayout = Literal["sft", "rl", "test"]
PROMPT_LAYOUTS: tuple[str, ...] = ("sft", "rl", "test")
# written into the folders of models cello1 trains, so later stages can check the layout
LAYOUT_MARKER = "cello1_prompt_layout.json"
# The one layout every stage uses unless told otherwise (docs/format.md §4).
DEFAULT_PROMPT_LAYOUT: PromptLayout = "sft"

# Provenance fields written next to the official record fields (and read back).
PROVENANCE_FIELDS = ("source", "donor", "tissue", "disease", "cell_ids", "n")

_USER_RE = re.compile(
    r"\AContext: (?P<context>.*?) \n\n(?P<cells>Cell 1: .*?)\n\n" + re.escape(MATCH_LINE) + r"\n(?P<candidates>.*)\Z",
    re.DOTALL,
)
_CELL_RE = re.compile(r"\ACell (?P<i>\d+): (?P<genes>.*)\Z")


@dataclass
class Puzzle:
    """One CellPuzzles item: N cells from one donor, N candidate types, one gold permutation.

    ``cells[i]`` is cell *i*'s ranked gene list (descending expression). ``candidates`` is
    kept in the order shown to the model (the builder sorts it; some third-party
    records do not). ``answer`` is the gold label of each cell, in cell order, or ``None``
    when unknown (e.g. a user's own clusters). ``reasoning`` holds a teacher trace for
    SFT records. The remaining fields are provenance and are never shown to a model.
    """

    id: str
    context: str
    cells: list[list[str]]
    candidates: list[str]
    answer: list[str] | None = None
    reasoning: str | None = None
    source: str | None = None
    donor: str | None = None
    tissue: str | None = None
    disease: str | None = None
    cell_ids: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of cells."""
        return len(self.cells)

    # ---- rendering -------------------------------------------------------------------
    @property
    def user_msg(self) -> str:
        """The record's ``user_msg``."""
        return render_user_msg(self.context, self.cells, self.candidates)

    @property
    def answer_str(self) -> str | None:
        """The gold answer as ``"A | B | C"`` (``None`` when unknown)."""
        return None if self.answer is None else render_answer(self.answer)

    @property
    def assistant_msg(self) -> str | None:
        """The record's ``assistant_msg``: the gold answer, or the full completion for a reasoning record."""
        if self.answer is None:
            return None
        if self.reasoning is not None:
            return render_completion(self.reasoning, self.answer)
        return self.answer_str

    def messages(self, prompt_layout: PromptLayout = DEFAULT_PROMPT_LAYOUT) -> list[dict[str, str]]:
        """Chat messages for a model, in one of the released code's three layouts.

        ``sft``: the instructions as the system message, the puzzle as the user message
        (the SFT data). ``rl``: one user turn, the puzzle, a space, then the RL data's
        instructions (:data:`RL_INSTRUCTION`; no system message, so a chat template may add
        its default one). ``test``: one user turn, the puzzle, a newline, then
        :data:`SYSTEM_MSG` (the released test script).
        """
        check_prompt_layout(prompt_layout)
        if prompt_layout == "sft":
            return [{"role": "system", "content": SYSTEM_MSG}, {"role": "user", "content": self.user_msg}]
        if prompt_layout == "rl":
            return [{"role": "user", "content": f"{self.user_msg} {RL_INSTRUCTION}"}]
        return [{"role": "user", "content": self.user_msg + "\n" + SYSTEM_MSG}]

    def to_record(self, provenance: bool = True) -> dict[str, Any]:
        """The official record (``system_msg``, ``user_msg``, ``assistant_msg``) plus ``id``
        and, when set, provenance fields. Fields that are ``None`` are left out, so
        ``to_record(from_record(r)) == r`` for official records.
        """
        rec: dict[str, Any] = {"id": self.id, "system_msg": SYSTEM_MSG, "user_msg": self.user_msg}
        if self.assistant_msg is not None:
            rec["assistant_msg"] = self.assistant_msg
        if provenance:
            for name in ("source", "donor", "tissue", "disease", "cell_ids"):
                value = getattr(self, name)
                if value is not None:
                    rec[name] = list(value) if name == "cell_ids" else value
            if self.source is not None or self.cell_ids is not None:
                rec["n"] = self.n
            rec.update(self.extra)
        return rec


# ---- rendering helpers -------------------------------------------------------------------


def check_prompt_layout(prompt_layout: str) -> str:
    """``prompt_layout`` itself if it is one of :data:`PROMPT_LAYOUTS`; raises otherwise."""
    if prompt_layout not in PROMPT_LAYOUTS:
        raise InputError(
            f"{{prompt_layout}} must be one of {', '.join(PROMPT_LAYOUTS)}, not {prompt_layout!r}",
            params=["prompt_layout"],
        )
    return prompt_layout


def mark_prompt_layout(model_dir: str | os.PathLike, prompt_layout: str) -> Path:
    """Record in a trained model's folder the prompt layout it was trained with."""
    path = Path(model_dir) / LAYOUT_MARKER
    path.write_text(json.dumps({"prompt_layout": check_prompt_layout(prompt_layout)}) + "\n", encoding="utf-8")
    return path


def trained_prompt_layout(model: object) -> str | None:
    """The layout a cello1-trained model folder (or its ``.gguf`` file's folder) records, if any."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    path = Path(model)
    folder = path.parent if path.suffix.lower() == ".gguf" else path
    marker = folder / LAYOUT_MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("prompt_layout")
    except (OSError, ValueError, AttributeError):
        return None


def warn_on_layout_mismatch(model: object, prompt_layout: str) -> None:
    """Warn when ``model`` was trained with another prompt layout than the one in use."""
    trained = trained_prompt_layout(model)
    if trained is not None and trained != prompt_layout:
        warnings.warn(
            f"{model} was trained with prompt layout {trained!r} but is used with {prompt_layout!r}; "
            f"results will suffer — pass the layout {trained!r}",
            UserWarning,
            stacklevel=3,
        )


def render_user_msg(context: str, cells: list[list[str]], candidates: list[str]) -> str:
    """The ``user_msg`` of a puzzle (the byte layout of ``docs/format.md``)."""
    cell_lines = "\n".join(f"Cell {i}: {', '.join(genes)}" for i, genes in enumerate(cells, start=1))
    return f"Context: {context} \n\n{cell_lines}\n\n{MATCH_LINE}\n" + "\n".join(candidates)


def puzzle_id(user_msg: str, assistant_msg: str | None = None) -> str:
    """A stable id derived from the record's content, for records that carry none."""
    digest = hashlib.sha1((user_msg + "\x00" + (assistant_msg or "")).encode("utf-8")).hexdigest()
    return f"p_{digest[:16]}"


# ---- parsing -----------------------------------------------------------------------------


def parse_user_msg(user_msg: str) -> tuple[str, list[list[str]], list[str]]:
    """Inverse of :func:`render_user_msg`. Also accepts the RL layout, where the
    instructions follow the puzzle after a newline.
    """
    text = user_msg
    if text.endswith("\n" + SYSTEM_MSG):
        text = text[: -len(SYSTEM_MSG) - 1]
    m = _USER_RE.match(text)
    if m is None:
        raise RecordFormatError(
            "user_msg does not follow the CellPuzzles layout "
            "('Context: … \\n\\nCell 1: …\\n\\nMatch the cells above …'); "
            "check that the file holds CellPuzzles records"
        )
    cells: list[list[str]] = []
    for expected, line in enumerate(m["cells"].split("\n"), start=1):
        cm = _CELL_RE.match(line)
        if cm is None or int(cm["i"]) != expected:
            raise RecordFormatError(f"user_msg: line {line[:40]!r} is not 'Cell {expected}: G1, G2, …'")
        cells.append(cm["genes"].split(", ") if cm["genes"] else [])
    candidates = m["candidates"].split("\n")
    return m["context"], cells, candidates


def parse_record(record: dict[str, Any], id: str | None = None) -> Puzzle:
    """Official record (+ optional ``id``, provenance and ``answer``) → :class:`Puzzle`.

    The gold comes from ``assistant_msg`` or, failing that, ``answer``. An ``id`` is
    derived from the content when the record has none.
    """
    if "user_msg" not in record:
        raise RecordFormatError(
            f"record has no 'user_msg' (fields: {', '.join(sorted(record)) or 'none'}); "
            "expected official CellPuzzles records with system_msg/user_msg/assistant_msg"
        )
    context, cells, candidates = parse_user_msg(record["user_msg"])
    gold = record.get("assistant_msg")
    if gold is None:
        gold = record.get("answer")
    answer, reasoning = (None, None) if gold is None else parse_gold_record(gold, len(cells), candidates)
    known = {f.name for f in fields(Puzzle)} | {"system_msg", "user_msg", "assistant_msg", "answer", "n"}
    extra = {k: v for k, v in record.items() if k not in known}
    cell_ids = record.get("cell_ids")
    return Puzzle(
        id=str(id or record.get("id") or puzzle_id(record["user_msg"], gold)),
        context=context,
        cells=cells,
        candidates=candidates,
        answer=answer,
        reasoning=reasoning,
        source=record.get("source"),
        donor=record.get("donor"),
        tissue=record.get("tissue"),
        disease=record.get("disease"),
        cell_ids=None if cell_ids is None else [str(c) for c in cell_ids],
        extra=extra,
    )


def parse_gold_record(gold: str, n: int, candidates: list[str]) -> tuple[list[str], str | None]:
    """``(labels, reasoning)`` of a record's gold; the labels must be ``n`` candidates."""
    if not isinstance(gold, str):
        raise RecordFormatError(f"the gold answer must be a string such as 'A | B | C', not {type(gold).__name__}")
    reasoning, labels = split_completion(gold)
    if len(labels) != n:
        raise RecordFormatError(
            f"the gold answer has {len(labels)} labels for {n} cells ({gold[-80:]!r}); "
            "it must list one type per cell, separated by ' | '"
        )
    known = {c.strip() for c in candidates}
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise RecordFormatError(f"the gold label {unknown[0]!r} is not among the puzzle's candidates")
    return labels, reasoning


def render_record(puzzle: Puzzle, provenance: bool = True) -> dict[str, Any]:
    """The record of ``puzzle`` (same as :meth:`Puzzle.to_record`)."""
    return puzzle.to_record(provenance=provenance)
