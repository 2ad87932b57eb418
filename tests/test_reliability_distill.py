"""``cello1 distill`` (issue 11): the shared puzzle validator, outputs checked before the
teacher runs, honest messages when nothing comes back, and kill -9 / a second process on the
resumable traces file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from cello1.io import read_puzzles, write_puzzles
from cello1.puzzle import parse_record
from reliability_helpers import ChatServer, assert_one_line_error, bad_puzzle_files, cli, jsonl, spawn, wait_for


@pytest.fixture()
def puzzle_file(official_records, tmp_path):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, [parse_record(dict(r, id=f"{r['id']}_{k}")) for k in range(3) for r in official_records])
    return path


@pytest.fixture()
def gold(puzzle_file):
    """What a perfect teacher answers: the gold labels of each puzzle."""
    return {p.user_msg: p.answer for p in read_puzzles(puzzle_file)}


def test_every_broken_puzzle_file_is_one_line_and_writes_nothing(official_records, tmp_path):
    for case, path, phrases in bad_puzzle_files(tmp_path / "bad", official_records[1]):
        out = tmp_path / f"sft_{case}.jsonl"
        line = assert_one_line_error(cli("distill", path, "-o", out, "--no-progress"), *phrases)
        assert "stronger teacher" not in line
        assert not out.exists() and not (tmp_path / f"sft_{case}.traces.jsonl").exists()


def test_bad_requests_are_refused_before_the_teacher_runs(puzzle_file, official_records, tmp_path):
    before = puzzle_file.read_bytes()
    cases = [
        (["-o", puzzle_file], ["is also an input"]),
        (["-o", tmp_path], ["is a folder"]),
        (["-o", tmp_path / "sft.json"], [".jsonl name"]),
        (["-o", tmp_path / "sft.jsonl", "--limit", "0"], ["nothing to distil", "--limit"]),
        (["-o", tmp_path / "sft.jsonl", "--limit", "-2"], ["--limit"]),
        (["-o", tmp_path / "sft.jsonl", "--k", "0"], ["--k"]),
        (["-o", tmp_path / "sft.jsonl", "--k", "2"], ["deterministic", "n"]),
    ]
    for args, phrases in cases:
        assert_one_line_error(cli("distill", puzzle_file, *args, "--no-progress"), *phrases)
    assert puzzle_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["puzzles.jsonl"]
    unlabelled = tmp_path / "unlabelled.jsonl"
    write_puzzles(unlabelled, [parse_record({k: v for k, v in official_records[0].items() if k != "assistant_msg"})])
    assert_one_line_error(cli("distill", unlabelled, "-o", tmp_path / "s.jsonl"), "no gold answer")


def test_a_teacher_that_never_answers_is_not_called_weak(puzzle_file, gold, tmp_path):
    out = tmp_path / "sft.jsonl"
    args = ["distill", puzzle_file, "-o", out, "--solver", "openai", "--model", "m", "--no-progress",
            "--max-retries", "0"]  # fmt: skip
    line = assert_one_line_error(cli(*args, "--base-url", "http://127.0.0.1:9/v1"), "answered none of the 9")
    assert "stronger teacher" not in line and "cannot reach" in line and not out.exists()
    assert len(jsonl(tmp_path / "sft.traces.jsonl")) == 9  # recorded, retried next time
    with ChatServer(oracle=gold) as server:
        code, _, err = cli(*args, "--base-url", server.url)
    assert code == 0, err
    assert len(read_puzzles(out)) == 9 and len(server.bodies) == 9


def test_kill_9_then_rerun_and_a_second_process_on_the_same_output(puzzle_file, gold, tmp_path):
    out = tmp_path / "sft.jsonl"
    traces = tmp_path / "sft.traces.jsonl"
    args = ["distill", str(puzzle_file), "-o", str(out), "--solver", "openai", "--model", "m", "--concurrency", "1",
            "--no-progress"]  # fmt: skip
    env = {"OPENAI_API_KEY": "x"}
    with ChatServer(delay=0.3, oracle=gold) as server:
        args += ["--base-url", server.url]
        proc = spawn(args, env)
        assert wait_for(lambda: len(jsonl(traces)) >= 2)
        second = subprocess.run([sys.executable, "-c", "from cello1.cli import main; main()", *args],
                                env={**os.environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert not out.exists()
        done = len(jsonl(traces))
        code, stdout, err = cli(*args)
        assert code == 0, err
        assert len(server.bodies) <= 9 + 1  # finished traces were not asked again (one may have been in flight)
    ids = [r["id"] for r in jsonl(traces)]
    assert len(ids) == len(set(ids)) == 9 and done < 9
    assert len(read_puzzles(out)) == 9
