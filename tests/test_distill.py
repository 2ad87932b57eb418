"""Distillation: rejection sampling, de-duplication, official records, resume, CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.io import read_puzzles, write_puzzles
from cello1.puzzle import Puzzle
from cello1.solvers.base import Completion, Solver
from cello1.training.distill import accept_trace, distill, traces_path_for
from train_helpers import make_puzzles


class ScriptedTeacher(Solver):
    """Per puzzle: a correct trace, the same trace again, a wrong answer, a bad format."""

    name = "scripted"

    def __init__(self) -> None:
        self.n = 4
        self.calls = 0

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        self.calls += len(puzzles)
        out = []
        for p in puzzles:
            right = " | ".join(p.answer)
            wrong = " | ".join(reversed(p.answer))
            out.append(
                [
                    Completion(f"<think>cell 1 has {p.cells[0][0]}</think>\n<answer>{right}</answer>"),
                    Completion(f"<think>cell 1  has {p.cells[0][0]}</think>\n<answer>{right}</answer>"),
                    Completion(f"<think>guess</think>\n<answer>{wrong}</answer>"),
                    Completion(f"{right}"),
                ]
            )
        return out


def test_accept_trace():
    gold = ["B cell", "T cell", "NK cell"]
    assert accept_trace("<think>why</think>\n<answer>b cell | T cell | NK cell</answer>", gold) == "why"
    assert accept_trace("<think>why</think>\n<answer>T cell | B cell | NK cell</answer>", gold) is None
    assert accept_trace("<think>why</think><answer>B cell | T cell | NK cell</answer>", gold) is None
    assert accept_trace("<think> </think>\n<answer>B cell | T cell | NK cell</answer>", gold) is None


def test_rejection_sampling_dedupe_and_resume(tmp_path):
    puzzles = make_puzzles(3, reasoning=False)
    out = tmp_path / "sft.jsonl"
    teacher = ScriptedTeacher()
    report = distill(puzzles, teacher, out, k=4, progress=False)
    # 4 traces per puzzle: 2 correct (identical after whitespace normalisation), 2 rejected
    assert (report.traces, report.accepted, report.duplicates) == (12, 6, 3)
    assert report.by_n[3].acceptance_rate == pytest.approx(0.5) and report.by_n[3].solved_puzzles == 3
    kept = read_puzzles(out)
    assert [p.id for p in kept] == [p.id for p in puzzles]
    for original, record in zip(puzzles, kept, strict=True):
        assert record.answer == original.answer and record.reasoning == f"cell 1 has {original.cells[0][0]}"
    raw = json.loads(out.read_text().splitlines()[0])
    assert raw["assistant_msg"].startswith("<think>") and raw["assistant_msg"].endswith("</answer>")
    assert traces_path_for(out).exists()
    # resume: everything is in the traces file, so the teacher is not asked again
    again = ScriptedTeacher()
    assert distill(puzzles, again, out, k=4, progress=False).accepted == 6 and again.calls == 0
    # table has a row per N and a total
    assert report.table()[-1]["n"] == "all" and report.table()[-1]["acceptance_rate"] == 0.5


def test_errors(tmp_path):
    unlabelled = make_puzzles(1)
    unlabelled[0].answer = None
    with pytest.raises(InputError, match="no gold answer"):
        distill(unlabelled, ScriptedTeacher(), tmp_path / "a.jsonl", k=4, progress=False)
    with pytest.raises(InputError, match="k=2 but the given solver returns n=4"):
        distill(make_puzzles(1), ScriptedTeacher(), tmp_path / "b.jsonl", k=2, progress=False)


@pytest.mark.filterwarnings("ignore:pbmc68k_reduced")
def test_cli_with_markers_teacher(tmp_path):
    from cello1.data import build_puzzles, pbmc68k_reduced

    built = build_puzzles(
        pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4, top_k=20, puzzles_per_n=10, seed=0
    )
    puzzles = tmp_path / "train.jsonl"
    write_puzzles(puzzles, built.train[:12])
    out = tmp_path / "sft.jsonl"
    result = CliRunner().invoke(app, ["distill", str(puzzles), "--solver", "markers", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["N", "puzzles", "traces", "accepted", "rate", "solved"]
    assert lines[-2].split()[0] == "all" and "SFT records" in lines[-1]
    kept = read_puzzles(out)
    assert kept and all(p.reasoning and p.answer for p in kept)
    golds = {p.id: p.answer for p in built.train[:12]}
    assert all(p.answer == golds[p.id] for p in kept)
    # a deterministic teacher cannot give k > 1 traces: one clear line, no traceback
    result = CliRunner().invoke(
        app, ["distill", str(puzzles), "--solver", "markers", "-o", str(tmp_path / "x.jsonl"), "--k", "3"]
    )
    assert result.exit_code == 2 and "n=1" in result.output and "Traceback" not in result.output
