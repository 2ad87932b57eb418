"""Distil SFT data: ask a teacher for k traces per puzzle and keep only perfect ones.

Rejection sampling as in the paper's cold start: a trace is kept when it passes the
strict format check and its answer is fully correct (batch reward = 1); identical
traces (same think text, whitespace-normalised) of one puzzle are kept once. Kept
traces are written as official records (``assistant_msg =
"<think>…</think>\\n<answer>…</answer>"``), which ``cello1 train sft`` reads.

``min_confidence`` also drops correct traces that were not sure of every cell: a trace
is kept only when its lowest per-cell confidence (written by the solvers that assign from
a score matrix: ``markers``, ``reference``, ``ensemble``) reaches it, so the reasoning a
student learns from backs its answer rather than a lucky guess.

Any solver works as the teacher (``cello1.solvers.get_solver``). The raw traces go
through the resumable runner into ``{out}.traces.jsonl``: re-running the same command
after an interruption only asks the teacher for what is missing.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.grammar import split_completion
from cello1.io import check_output_file, write_puzzles
from cello1.prediction import Prediction
from cello1.puzzle import Puzzle
from cello1.solvers.base import Solver

_WS = re.compile(r"\s+")


@dataclass
class NStats:
    """Distillation counts for one N: puzzles, traces returned, traces accepted, puzzles with a kept trace."""

    puzzles: int = 0
    traces: int = 0
    accepted: int = 0
    solved_puzzles: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Accepted share of the traces (0 when there are none)."""
        return self.accepted / self.traces if self.traces else 0.0


@dataclass
class DistillReport:
    """Outcome of a distillation run: output paths, kept puzzles (one per kept trace), counts per N
    and the numbers of duplicate traces and of correct traces below ``min_confidence`` dropped.
    """

    out: Path | None
    traces_path: Path | None
    kept: list[Puzzle]
    by_n: dict[int, NStats] = field(default_factory=dict)
    duplicates: int = 0
    low_confidence: int = 0

    @property
    def traces(self) -> int:
        """Traces returned over all N."""
        return sum(s.traces for s in self.by_n.values())

    @property
    def accepted(self) -> int:
        """Accepted traces over all N."""
        return sum(s.accepted for s in self.by_n.values())

    @property
    def acceptance_rate(self) -> float:
        """Accepted share of all traces (0 when there are none)."""
        return self.accepted / self.traces if self.traces else 0.0

    def table(self) -> list[dict[str, Any]]:
        """One row of counts per N, then an ``all`` row."""
        rows = [
            {
                "n": n,
                "puzzles": s.puzzles,
                "traces": s.traces,
                "accepted": s.accepted,
                "acceptance_rate": round(s.acceptance_rate, 4),
                "puzzles_with_trace": s.solved_puzzles,
            }
            for n, s in sorted(self.by_n.items())
        ]
        rows.append(
            {
                "n": "all",
                "puzzles": sum(s.puzzles for s in self.by_n.values()),
                "traces": self.traces,
                "accepted": self.accepted,
                "acceptance_rate": round(self.acceptance_rate, 4),
                "puzzles_with_trace": sum(s.solved_puzzles for s in self.by_n.values()),
            }
        )
        return rows


def accept_trace(text: str, gold: list[str]) -> str | None:
    """The think text of a fully correct, strictly valid trace, else ``None``."""
    from cello1.scoring import batch_reward, is_valid_format

    if not text or not is_valid_format(text) or batch_reward(text, gold) != 1.0:
        return None
    think, _ = split_completion(text.strip())
    return think if think is not None and think.strip() else None


def traces_path_for(out: str | os.PathLike) -> Path:
    """Where the raw traces of output ``out`` go: ``{out stem}.traces.jsonl`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".traces.jsonl")


def distill(
    puzzles: list[Puzzle] | str | os.PathLike,
    solver: str | Solver = "markers",
    out: str | os.PathLike | None = None,
    *,
    k: int = 1,
    traces_path: str | os.PathLike | None = None,
    progress: bool = True,
    limit: int | None = None,
    min_confidence: float | None = None,
    **solver_options: Any,
) -> DistillReport:
    """Distil correct traces from a teacher; writes ``out`` (official records) if given.

    ``min_confidence`` keeps only traces whose every cell has at least that confidence
    (teachers that write per-cell confidence only).
    """
    from cello1.solvers.run import load_puzzles, solve

    if k < 1:
        raise InputError(f"{{k}} must be >= 1, not {k}", params=["k"])
    if out is not None:
        inputs = [puzzles] if isinstance(puzzles, (str, os.PathLike)) else []
        check_output_file(out, "out", inputs)
        if Path(out).suffix.lower() != ".jsonl":
            raise InputError(f"{{out}}={out}: SFT records are JSON lines; give the file a .jsonl name", params=["out"])
    puzzle_list = load_puzzles(puzzles)
    if limit is not None:
        if limit < 0:
            raise InputError(f"{{limit}} must be >= 0, not {limit}", params=["limit"])
        puzzle_list = puzzle_list[:limit]
    if not puzzle_list:
        raise InputError(f"nothing to distil: {{limit}}={limit} keeps no puzzle", params=["limit"])
    unlabelled = [p.id for p in puzzle_list if p.answer is None]
    if unlabelled:
        raise InputError(
            f"{len(unlabelled)} puzzles have no gold answer (first: {unlabelled[0]}); "
            "distillation keeps only correct traces, so it needs labelled puzzles"
        )
    if isinstance(solver, Solver):
        if k != max(1, int(solver.n or 1)):
            raise InputError(f"k={k} but the given solver returns n={solver.n} samples; make them equal")
    elif k > 1:
        solver_options["n"] = k
    if traces_path is None and out is not None:
        traces_path = traces_path_for(out)
    records = solve(puzzle_list, solver, traces_path, progress=progress, **solver_options)
    report = select_traces(puzzle_list, records, min_confidence=min_confidence)
    if out is not None:
        if not report.kept and not report.traces:
            first = next((r.error for r in records if r.error), "no answer")
            raise InputError(
                f"the teacher answered none of the {len(puzzle_list)} puzzles (first error: {first}); "
                f"nothing written to {out}; re-run the same command to retry them"
            )
        if not report.kept:
            raise InputError(
                f"no trace was both correct and strictly formatted ({report.traces} tried); "
                f"nothing written to {out}; try a stronger teacher or a larger {{k}}",
                params=["k"],
            )
        write_puzzles(out, report.kept)
        report.out = Path(out)
    report.traces_path = Path(traces_path) if traces_path else None
    return report


def confident_enough(prediction: Prediction, min_confidence: float | None) -> bool:
    """Whether every cell of the prediction has at least ``min_confidence`` (always, when that is ``None``).

    Raises :class:`~cello1.errors.InputError` when a threshold is set but the teacher wrote no confidence.
    """
    if min_confidence is None:
        return True
    if prediction.confidence is None:
        raise InputError(
            f"{{min_confidence}} needs a teacher that writes per-cell confidence (markers, reference, ensemble); "
            f"the predictions of {prediction.solver!r} have none",
            params=["min_confidence"],
        )
    return min(prediction.confidence, default=0.0) >= min_confidence


def select_traces(
    puzzles: list[Puzzle], predictions: list[Prediction], min_confidence: float | None = None
) -> DistillReport:
    """Rejection sampling + de-duplication over the teacher's predictions (and the
    confidence filter when ``min_confidence`` is set).
    """
    by_id: dict[str, list[Prediction]] = defaultdict(list)
    for prediction in predictions:
        by_id[prediction.id].append(prediction)
    report = DistillReport(out=None, traces_path=None, kept=[])
    for puzzle in puzzles:
        stats = report.by_n.setdefault(puzzle.n, NStats())
        stats.puzzles += 1
        seen: set[str] = set()
        kept_here = 0
        for rec in sorted(by_id.get(puzzle.id, []), key=lambda r: r.sample):
            if rec.failed:
                continue
            stats.traces += 1
            think = accept_trace(rec.prediction, puzzle.answer or [])
            if think is None:
                continue
            if not confident_enough(rec, min_confidence):
                report.low_confidence += 1
                continue
            stats.accepted += 1
            key = _WS.sub(" ", think).strip()
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            trace_id = puzzle.id if kept_here == 0 else f"{puzzle.id}-t{kept_here}"
            extra = {**puzzle.extra, "teacher": rec.solver, "teacher_model": rec.model}
            extra = {k: v for k, v in extra.items() if v is not None}
            report.kept.append(replace(puzzle, id=trace_id, reasoning=think, extra=extra))
            kept_here += 1
        stats.solved_puzzles += kept_here > 0
    return report
