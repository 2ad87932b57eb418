"""``cello1 solve`` under bad input, foreign output files, stale predictions, a second process,
``kill -9``, SIGTERM and a misbehaving server (issue 11; guarantees in docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.puzzle import parse_record
from cello1.solvers.openai_api import OpenAISolver, key_safe_to_send
from cello1.solvers.run import OutputLock, content_hash, read_predictions, solve
from reliability_helpers import (
    ChatServer,
    assert_one_line_error,
    bad_puzzle_files,
    cli,
    jsonl,
    spawn,
    wait_for,
)


@pytest.fixture()
def puzzles(official_records):
    """12 puzzles with distinct ids (the 3 official examples, 4 times)."""
    return [parse_record(dict(r, id=f"{r['id']}_{k}")) for k in range(4) for r in official_records]


@pytest.fixture()
def puzzle_file(puzzles, tmp_path):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, puzzles)
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- bad input ---------------------------------------------------------------------------


def test_every_broken_puzzle_file_is_one_line_naming_file_and_line(official_records, tmp_path):
    cases = bad_puzzle_files(tmp_path / "bad", official_records[1])
    assert len(cases) >= 30
    for case, path, phrases in cases:
        out = tmp_path / f"pred_{case}.jsonl"
        assert_one_line_error(cli("solve", path, "-o", out, "--no-progress"), *phrases)
        assert not out.exists(), case
    assert leftovers(tmp_path) == []


def test_duplicate_ids_name_the_file_and_both_puzzles(official_records, tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [official_records[0], *official_records]))
    assert_one_line_error(cli("solve", path, "-o", tmp_path / "p.jsonl"), "dup.jsonl", "more than once", "1 and 2")


@pytest.mark.parametrize(
    "args,phrases",
    [
        (["--max-retries", "-1", "--solver", "openai", "--model", "m"], ["--max-retries"]),
        (["--timeout", "0", "--solver", "openai", "--model", "m"], ["--timeout"]),
        (["--concurrency", "0", "--solver", "openai", "--model", "m"], ["--concurrency"]),
        (["--limit", "-1"], ["--limit"]),
        (["--n", "0"], ["--n"]),
        (["--shard", "3/3"], ["--shard", "0 <= i < n"]),
        (["--shard", "x"], ["--shard"]),
        (["--solver", "nope"], ["--solver", "markers"]),
        (["--bogus-option"], ["No such option"]),
        (["--solver", "markers", "--temperature", "0.5"], ["does not support", "temperature"]),
    ],
)
def test_bad_options_are_one_line(puzzle_file, tmp_path, args, phrases):
    out = tmp_path / "p.jsonl"
    assert_one_line_error(cli("solve", puzzle_file, "-o", out, "--base-url", "http://127.0.0.1:9/v1", *args), *phrases)
    assert not out.exists()


# ---- output ownership ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,content,phrases",
    [
        ("notes.jsonl", b"my notes\n", ["not a cello1 prediction file", "line 1"]),
        ("notes_no_newline.jsonl", b"my notes", ["not a cello1 prediction file"]),
        ("train.jsonl", None, ["not a cello1 prediction file", "prediction record"]),  # a puzzle file
        ("table.jsonl", b"PAR1\x00\x01binary", ["Parquet"]),
        ("mixed.jsonl", None, ["line 2"]),  # a prediction, then something else
    ],
)
def test_a_file_that_is_not_this_runs_predictions_is_never_touched(puzzle_file, tmp_path, name, content, phrases):
    out = tmp_path / name
    if name == "train.jsonl":
        content = puzzle_file.read_bytes()
    if name == "mixed.jsonl":
        solve(puzzle_file, "markers", out, progress=False, limit=1)
        content = out.read_bytes() + b'{"some": "other record"}\n'
    out.write_bytes(content)
    assert_one_line_error(cli("solve", puzzle_file, "-o", out, "--no-progress"), *phrases, "nothing was changed")
    assert out.read_bytes() == content
    assert leftovers(tmp_path) == []


def test_output_name_and_kind_are_checked_first(puzzle_file, tmp_path):
    assert_one_line_error(cli("solve", puzzle_file, "-o", tmp_path / "train.parquet"), ".jsonl name")
    assert_one_line_error(cli("solve", puzzle_file, "-o", tmp_path / "pred.json"), ".jsonl name")
    assert_one_line_error(cli("solve", puzzle_file, "-o", tmp_path), "is a folder")
    assert_one_line_error(cli("solve", puzzle_file, "-o", puzzle_file), "not a cello1 prediction file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["puzzles.jsonl"]


def test_another_solver_model_options_or_puzzle_set_is_refused(puzzle_file, puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    assert cli("solve", puzzle_file, "-o", out, "--no-progress")[0] == 0
    before = out.read_bytes()
    assert_one_line_error(cli("solve", puzzle_file, "-o", out, "--solver", "random"), "solver 'markers'")
    assert_one_line_error(
        cli("solve", puzzle_file, "-o", out, "--assignment", "none"), "other options", "assignment", "'hungarian'"
    )
    other = tmp_path / "other.jsonl"
    write_puzzles(other, [parse_record(dict(p.to_record(), id=f"x{i}")) for i, p in enumerate(puzzles)])
    assert_one_line_error(cli("solve", other, "-o", out), "not in this input", "another run")
    assert out.read_bytes() == before
    # options that change how, not what (batch size) may change on a resume
    code, _, err = cli("solve", puzzle_file, "-o", out, "--batch-size", "3", "--no-progress")
    assert code == 0 and "(0 new)" in err
    assert out.read_bytes() == before


def test_empty_file_and_limit_then_full_run_resume(puzzle_file, puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text("")
    assert cli("solve", puzzle_file, "-o", out, "--limit", "5", "--no-progress")[0] == 0
    assert len(jsonl(out)) == 5
    code, _, err = cli("solve", puzzle_file, "-o", out, "--no-progress")
    assert code == 0 and "(7 new)" in err
    assert sorted(r["id"] for r in jsonl(out)) == sorted(p.id for p in puzzles)


# ---- stale predictions ----------------------------------------------------------------------------


def test_predictions_of_another_puzzle_version_are_reported_and_redone(puzzles, tmp_path, capsys):
    out = tmp_path / "pred.jsonl"
    solve(puzzles, "markers", out, progress=False)
    # a rebuild with another seed: same ids, other cells and gold for the first half
    rebuilt = [p if i % 2 else parse_record(dict(puzzles[(i + 1) % 12].to_record(), id=p.id)) for i, p in
               enumerate(puzzles)]  # fmt: skip
    assert sum(content_hash(a) != content_hash(b) for a, b in zip(puzzles, rebuilt, strict=True)) == 6
    result = solve(rebuilt, "markers", out, progress=False)
    assert "6 predictions were made on another version" in capsys.readouterr().err
    assert (result.new, result.stale) == (6, 6)
    records = jsonl(out)
    assert len(records) == 12
    by_id = {p.id: p for p in rebuilt}
    assert all(r["answer"] == by_id[r["id"]].answer_str and r["puzzle_hash"] == content_hash(by_id[r["id"]])
               for r in records)  # fmt: skip


def test_records_written_before_puzzle_hashes_are_checked_by_gold(puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    solve(puzzles, "markers", out, progress=False)
    legacy = []
    for rec in jsonl(out):
        rec.pop("puzzle_hash"), rec.pop("options")
        if rec["id"] == puzzles[0].id:
            rec["answer"] = "not | the | gold"
        legacy.append(rec)
    out.write_text("".join(json.dumps(r) + "\n" for r in legacy))
    result = solve(puzzles, "markers", out, progress=False)
    assert (result.new, result.stale) == (1, 1)


# ---- one writer --------------------------------------------------------------------------------


def test_a_held_lock_stops_a_second_run_naming_the_holder(puzzle_file, tmp_path):
    out = tmp_path / "pred.jsonl"
    lock = OutputLock(out.resolve())
    lock.acquire()
    try:
        line = assert_one_line_error(cli("solve", puzzle_file, "-o", out), "being written by another", "pid")
        assert str(os.getpid()) in line
        assert not out.exists()
    finally:
        lock.release()
    assert cli("solve", puzzle_file, "-o", out, "--no-progress")[0] == 0
    assert leftovers(tmp_path) == []  # the lock file goes with its run


def test_a_symlinked_output_shares_the_lock_and_stays_a_link(puzzle_file, tmp_path):
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    solve(puzzle_file, "markers", target, progress=False, limit=4)
    link.symlink_to(target)
    lock = OutputLock(target.resolve())
    lock.acquire()
    try:
        assert_one_line_error(cli("solve", puzzle_file, "-o", link), "being written by another")
    finally:
        lock.release()
    with target.open("a") as fh:  # a duplicate forces the compaction (rewrite) path
        fh.write(target.read_text().splitlines()[0] + "\n")
    assert cli("solve", puzzle_file, "-o", link, "--no-progress")[0] == 0
    assert link.is_symlink() and len(jsonl(target)) == 12


def test_two_processes_on_one_output_one_wins_nothing_doubled(puzzle_file, puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    env = {"OPENAI_API_KEY": "x"}
    args = ["solve", str(puzzle_file), "-o", str(out), "--solver", "openai", "--model", "m", "--concurrency", "2",
            "--no-progress"]  # fmt: skip
    with ChatServer(delay=0.3) as server:
        args += ["--base-url", server.url]
        first = spawn(args, env)
        assert wait_for(lambda: len(jsonl(out)) >= 2)
        second = subprocess.run([sys.executable, "-c", "from cello1.cli import main; main()", *args],
                                env={**os.environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2
        assert "being written by another cello1 process" in second.stderr and f"pid {first.pid}" in second.stderr
        assert first.wait(timeout=120) == 0, first.stderr.read()
    ids = [r["id"] for r in jsonl(out)]
    assert sorted(ids) == sorted(p.id for p in puzzles)  # nothing lost, nothing twice
    assert len(server.bodies) == len(puzzles)  # the second process asked nothing


def test_kill_9_at_random_moments_loses_nothing_and_never_duplicates(puzzle_file, puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    env = {"OPENAI_API_KEY": "x"}
    kills = 0
    with ChatServer(delay=0.15) as server:
        args = ["solve", str(puzzle_file), "-o", str(out), "--solver", "openai", "--model", "m", "--base-url",
                server.url, "--concurrency", "3", "--no-progress"]  # fmt: skip
        for wanted in (1, 4, 8):  # kill once the file holds this many records
            proc = spawn(args, env)
            if wait_for(lambda w=wanted, p=proc: len(jsonl(out)) >= w or p.poll() is not None):
                proc.send_signal(signal.SIGKILL)
                kills += proc.wait(timeout=60) == -signal.SIGKILL
            records = jsonl(out)
            assert len({r["id"] for r in records}) == len(records)  # never twice, even mid-run
        final = subprocess.run([sys.executable, "-c", "from cello1.cli import main; main()", *args],
                               env={**os.environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert final.returncode == 0, final.stderr
    records = jsonl(out)
    assert kills >= 2
    assert sorted(r["id"] for r in records) == sorted(p.id for p in puzzles)
    assert all(r["error"] is None for r in records)
    assert not (tmp_path / ".pred.jsonl.lock").exists()


def test_a_record_cut_during_the_very_first_write_is_redone(puzzle_file, tmp_path):
    out = tmp_path / "pred.jsonl"
    solve(puzzle_file, "markers", out, progress=False, limit=1)
    out.write_text(out.read_text()[:30])  # what a kill -9 during the first write leaves
    records, dirty = read_predictions(out)
    assert records == {} and dirty
    assert cli("solve", puzzle_file, "-o", out, "--no-progress")[0] == 0
    assert len(jsonl(out)) == 12


def test_sigterm_unwinds_like_ctrl_c_and_the_rerun_resumes(puzzle_file, puzzles, tmp_path):
    out = tmp_path / "pred.jsonl"
    with ChatServer(delay=0.3) as server:
        args = ["solve", str(puzzle_file), "-o", str(out), "--solver", "openai", "--model", "m", "--base-url",
                server.url, "--concurrency", "1", "--no-progress"]  # fmt: skip
        proc = spawn(args, {"OPENAI_API_KEY": "x"})
        assert wait_for(lambda: len(jsonl(out)) >= 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert not (tmp_path / ".pred.jsonl.lock").exists()  # released on the way out
        done = len(jsonl(out))
        assert 2 <= done < len(puzzles)
        code, _, err = cli(*args)
    assert code == 0 and f"({len(puzzles) - done} new)" in err, err
    assert sorted(r["id"] for r in jsonl(out)) == sorted(p.id for p in puzzles)


# ---- file modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_and_compacted_files_respect_the_umask_and_keep_their_mode(puzzle_file, tmp_path, umask, mode):
    out = tmp_path / "pred.jsonl"
    old = os.umask(umask)
    try:
        solve(puzzle_file, "markers", out, progress=False, limit=3)
        assert stat.S_IMODE(out.stat().st_mode) == mode
        out.chmod(0o640)
        with out.open("a") as fh:  # a duplicate line: the resume rewrites the file
            fh.write(out.read_text().splitlines()[0] + "\n")
        solve(puzzle_file, "markers", out, progress=False)
        assert stat.S_IMODE(out.stat().st_mode) == 0o640 and len(jsonl(out)) == 12
    finally:
        os.umask(old)


# ---- a misbehaving server ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["truncate", "garbage", "no-choices", "drop", 502])
def test_a_broken_response_is_retried_then_answered(puzzles, fault):
    with ChatServer(faults=[fault]) as server:
        solver = OpenAISolver(model="m", base_url=server.url, concurrency=1, retry_base=0.001)
        records = solve(puzzles[:2], solver, progress=False)
    assert all(r.error is None and r.assignment is not None for r in records)
    assert len(server.bodies) == 3  # the broken one was asked again


@pytest.mark.parametrize("fault", ["truncate", "garbage", "no-choices", "bad-content", "drop"])
def test_a_persistently_broken_response_is_that_puzzles_error_retried_next_run(puzzles, tmp_path, fault):
    out = tmp_path / "pred.jsonl"
    with ChatServer(faults=[fault] * 2) as server:  # first puzzle: both tries broken
        solver = OpenAISolver(model="m", base_url=server.url, concurrency=1, retry_base=0.001, max_retries=1)
        first = solve(puzzles[:3], solver, out, progress=False)
    assert [r.error is not None for r in first] == [True, False, False]
    assert first[0].error and "\n" not in first[0].error
    with ChatServer() as server:
        solver = OpenAISolver(model="m", base_url=server.url, concurrency=1)
        second = solve(puzzles[:3], solver, out, progress=False)
    assert len(server.bodies) == 1 and all(r.error is None for r in second)
    assert len(jsonl(out)) == 3


def test_no_server_at_all_exits_non_zero_and_the_records_are_retried(puzzle_file, tmp_path):
    out = tmp_path / "pred.jsonl"
    args = ["solve", puzzle_file, "-o", out, "--solver", "openai", "--model", "m", "--max-retries", "0",
            "--no-progress", "--limit", "3"]  # fmt: skip
    assert_one_line_error(
        cli(*args, "--base-url", "http://127.0.0.1:9/v1"), "all 3 predictions of this run failed", "cannot reach"
    )
    assert [r["error"] is not None for r in jsonl(out)] == [True] * 3
    with ChatServer() as server:
        code, _, err = cli(*args, "--base-url", server.url)
    assert code == 0 and "(3 new)" in err and all(r["error"] is None for r in jsonl(out))


def test_the_key_never_goes_over_plain_http_to_another_host(puzzles, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    assert key_safe_to_send("https://api.example.com/v1")
    assert key_safe_to_send("http://localhost:8000/v1") and key_safe_to_send("http://127.0.0.1:8000/v1")
    assert key_safe_to_send("http://[::1]:8000/v1")
    assert not key_safe_to_send("http://10.1.2.3:8000/v1") and not key_safe_to_send("http://gpu-box:8000/v1")
    withheld = OpenAISolver(model="m", base_url="http://10.1.2.3:8000/v1")
    assert withheld.api_key is None and "not sending the API key" in capsys.readouterr().err
    allowed = OpenAISolver(model="m", base_url="http://10.1.2.3:8000/v1", allow_insecure_key=True)
    assert allowed.api_key == "sk-secret"
    with ChatServer() as server:  # loopback: the key is sent
        solve(puzzles[:1], OpenAISolver(model="m", base_url=server.url), progress=False)
    assert server.headers[0]["Authorization"] == "Bearer sk-secret"


def test_fatal_status_names_the_withheld_key(puzzles, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    solver = OpenAISolver(model="m", base_url="http://10.1.2.3:8000/v1", concurrency=1)
    with ChatServer(faults=[401]) as server:
        solver.base_url = server.url  # the key stays withheld; the 401 comes from a local server
        with pytest.raises(InputError, match="allow-insecure-key"):
            solve(puzzles[:1], solver, progress=False)
    assert "Authorization" not in server.headers[0]
