"""Cold-start data: ``distill`` with the markers teacher (evidence per cell) and with an LLM
teacher behind an OpenAI-compatible server, brief traces, and ``train sft`` on those traces and
on records in the official reasoning-split layout as they are."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.io import read_puzzles, write_puzzles
from cello1.puzzle import parse_record
from reliability_helpers import ChatServer
from train_helpers import tiny_model_dir


@pytest.fixture()
def official(official_records):
    return [parse_record(r) for r in official_records]


def test_markers_teacher_explains_its_evidence_per_cell(official, tmp_path):
    puzzles = tmp_path / "official.jsonl"
    write_puzzles(puzzles, official)
    out = tmp_path / "sft.jsonl"
    result = CliRunner().invoke(app, ["distill", str(puzzles), "--solver", "markers", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    kept = read_puzzles(out)
    assert kept, "the markers teacher solves at least one official test example"
    by_id = {p.id: p for p in official}
    for puzzle in kept:
        assert puzzle.answer == by_id[puzzle.id].answer  # only correct traces are kept
        lines = [x for x in puzzle.reasoning.splitlines() if x.startswith("Cell ")]
        assert len(lines) == puzzle.n  # one line of evidence per cell …
        for i, (line, label) in enumerate(zip(lines, puzzle.answer, strict=True), 1):
            # … naming the cell's label, marker genes with their rank in the cell, and a confidence
            assert line.startswith(f"Cell {i}: {label} — ")
            assert re.search(r"markers \S+ \(#\d+\)", line) and "confidence" in line


def test_llm_teacher_through_an_openai_compatible_backend(official, tmp_path):
    puzzles = tmp_path / "official.jsonl"
    write_puzzles(puzzles, official)
    out = tmp_path / "sft.jsonl"
    # the teacher knows the gold answers except for puzzle 1 (answered in the candidates' order),
    # which rejection sampling must drop
    oracle = {p.user_msg: p.answer for i, p in enumerate(official) if i != 1}
    with ChatServer(oracle=oracle) as server:
        args = ["distill", str(puzzles), "--solver", "openai", "--model", "teacher", "--base-url", server.url,
                "-o", str(out), "--no-progress"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert len(server.bodies) == len(official)
        # resumable: the same command again asks the teacher nothing new
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        assert len(server.bodies) == len(official)
    kept = read_puzzles(out)
    assert sorted(p.id for p in kept) == sorted(p.id for i, p in enumerate(official) if i != 1)
    assert all(p.reasoning.startswith("Cell 1: the top genes point to") for p in kept)


def test_brief_traces_one_line_per_cell(official, tmp_path):
    from cello1.training.distill import brief_trace

    puzzle = official[0]
    brief = brief_trace(puzzle, puzzle.answer)
    lines = brief.splitlines()
    assert len(lines) == puzzle.n
    assert lines[0] == f"Cell 1: {', '.join(puzzle.cells[0][:3])} → {puzzle.answer[0]}"
    puzzles = tmp_path / "official.jsonl"
    write_puzzles(puzzles, official)
    out = tmp_path / "brief.jsonl"
    result = CliRunner().invoke(
        app, ["distill", str(puzzles), "--solver", "markers", "-o", str(out), "--trace", "brief", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert all(p.reasoning == brief_trace(p, p.answer) for p in read_puzzles(out))
    bad = CliRunner().invoke(app, ["distill", str(puzzles), "-o", str(out), "--trace", "short"])
    assert bad.exit_code == 2 and "--trace must be one of full, brief" in bad.output


def test_train_sft_on_official_reasoning_records_as_they_are(official_records, tmp_path):
    """Records in the reasoning split's layout — the three official strings, no id, the
    official system message and user messages byte for byte, a ``<think>`` trace in
    ``assistant_msg`` — train as they are, with ``cello1 train sft``."""
    records = []
    for rec in official_records:
        answer = rec["assistant_msg"]
        think = "Matching each cell's top genes to the candidates."
        records.append(
            {
                "system_msg": rec["system_msg"],
                "user_msg": rec["user_msg"],
                "assistant_msg": f"<think>{think}</think>\n<answer>{answer}</answer>",
            }
        )
    train = tmp_path / "reasoning.json"
    train.write_text(json.dumps(records))
    out = tmp_path / "sft"
    result = CliRunner().invoke(
        app,
        [
            "train", "sft", "--model", str(tiny_model_dir()), "--train", str(train), "--output-dir", str(out),
            "--max-steps", "1", "--no-merge", "--plot", "--no-resume",
            "--set", "per_device_train_batch_size=1", "--set", "gradient_accumulation_steps=1",
            "--set", "max_length=4096", "--set", "save_steps=100", "--set", "lora_r=4", "--set", "lora_alpha=8",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in e for e in logged)
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
