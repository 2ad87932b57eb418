"""Cold-start data: ``distill`` with the markers teacher (evidence per cell) and with an LLM
teacher behind an OpenAI-compatible server, brief traces, and ``train sft`` on those traces and
on records in the official reasoning-split layout as they are."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.io import read_puzzles, write_puzzles
from cello1.puzzle import parse_record, parse_user_msg
from train_helpers import tiny_model_dir


@pytest.fixture()
def official(official_records):
    return [parse_record(r) for r in official_records]


class TeacherServer:
    """An OpenAI-compatible chat server whose "LLM" knows the gold answers: it reasons one line
    per cell and answers correctly, except for the puzzles listed in ``wrong`` (answered in the
    candidates' order, which rejection sampling must drop)."""

    def __init__(self, puzzles, wrong=()):
        self.gold = {p.user_msg: p.answer for p in puzzles}
        self.wrong = {puzzles[i].user_msg for i in wrong}
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                user = next(m["content"] for m in body["messages"] if m["role"] == "user")
                key = next(k for k in server.gold if k in user)
                _, _, candidates = parse_user_msg(key)
                labels = candidates if key in server.wrong else server.gold[key]
                think = "\n".join(f"Cell {i}: the top genes point to {t}." for i, t in enumerate(labels, 1))
                text = f"<think>{think}</think>\n<answer>{' | '.join(labels)}</answer>"
                payload = json.dumps({
                    "id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


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
    with TeacherServer(official, wrong=[1]) as server:
        args = ["distill", str(puzzles), "--solver", "openai", "--model", "teacher", "--base-url", server.url,
                "-o", str(out), "--no-progress"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert server.requests == len(official)
        # resumable: the same command again asks the teacher nothing new
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        assert server.requests == len(official)
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
