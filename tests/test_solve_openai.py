"""The ``openai`` backend against a chat-completions server started on 127.0.0.1, the
``cello1 solve`` CLI, and kill-and-resume of a real ``cello1 solve`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.puzzle import parse_record, parse_user_msg
from cello1.solvers.openai_api import OpenAISolver
from cello1.solvers.run import solve


class ChatServer:
    """A tiny OpenAI-compatible server: answers the candidates in the order shown.

    ``script`` is a list of statuses for the first requests (e.g. [429, 500]); later
    requests succeed. ``delay`` slows every answer down (for the kill test).
    """

    def __init__(self, script=(), delay=0.0):
        self.script, self.delay = list(script), delay
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    status = server.script.pop(0) if server.script else 200
                    server.statuses.append(status)
                if status != 200:
                    payload = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                time.sleep(server.delay)
                user = body["messages"][-1]["content"]
                _, _, candidates = parse_user_msg(user)
                text = "<think>in order</think>\n<answer>" + " | ".join(candidates) + "</answer>"
                n = body.get("n", 1)
                payload = json.dumps({
                    "id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                                for i in range(n)],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 7 * n, "total_tokens": 100 + 7 * n},
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


@pytest.fixture()
def puzzles(official_records):
    return [parse_record(r) for r in official_records]


def test_retries_429_and_500_then_answers(puzzles, tmp_path):
    with ChatServer(script=[429, 500, 503]) as server:
        solver = OpenAISolver(model="m", base_url=server.url, retry_base=0.01, concurrency=1, max_new_tokens=64)
        recs = solve(puzzles, solver, tmp_path / "p.jsonl", progress=False)
    assert server.statuses[:3] == [429, 500, 503] and server.statuses[3:] == [200] * len(puzzles)
    assert all(r["error"] is None for r in recs)
    for r, p in zip(recs, puzzles, strict=True):
        assert r["assignment"] == p.candidates and r["prompt_tokens"] == 100 and r["completion_tokens"] == 7
    body = server.bodies[0]
    assert body["max_tokens"] == 64 and body["temperature"] == 0  # greedy, sent explicitly
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_gives_up_after_max_retries_and_records_the_error(puzzles):
    with ChatServer(script=[500] * 3) as server:
        solver = OpenAISolver(model="m", base_url=server.url, retry_base=0.001, max_retries=2, concurrency=1)
        recs = solve(puzzles[:1], solver, progress=False)
    assert len(server.bodies) == 3
    assert recs[0]["error"].startswith("HTTP 500") and recs[0]["assignment"] is None


def test_fatal_status_stops_the_run(puzzles):
    with ChatServer(script=[401]) as server, pytest.raises(InputError, match="401"):
        solve(puzzles[:1], OpenAISolver(model="m", base_url=server.url, concurrency=1), progress=False)


def test_reasoning_params_samples_and_user_prompt_layout(puzzles):
    with ChatServer() as server:
        solver = OpenAISolver(
            model="o-mini", base_url=server.url, reasoning_effort="low", max_new_tokens=500, n=2, prompt_layout="test"
        )
        recs = solve(puzzles[:1], solver, progress=False)
    body = server.bodies[0]
    assert body["max_completion_tokens"] == 500 and "max_tokens" not in body
    assert body["reasoning_effort"] == "low" and body["n"] == 2 and body["temperature"] == 0.7
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert [r["sample"] for r in recs] == [0, 1] and recs[1]["completion_tokens"] == 7


def test_missing_key_for_openai_and_unknown_option(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        OpenAISolver(model="gpt-4o-mini")
    with pytest.raises(ValueError, match="train"):
        OpenAISolver(model="m", base_url="http://127.0.0.1:9/v1", train="x")


def test_cli_solve_with_openai_server(puzzles, tmp_path, monkeypatch):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, puzzles)
    out = tmp_path / "pred.jsonl"
    monkeypatch.setenv("MY_KEY", "sk-test")
    with ChatServer() as server:
        args = ["solve", str(path), "-o", str(out), "--solver", "openai", "--model", "m", "--base-url", server.url,
                "--api-key-env", "MY_KEY", "--concurrency", "2", "--no-progress", "--limit", "2",
                "--repair"]  # fmt: skip
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in recs) == sorted(p.id for p in puzzles[:2])
    assert all(r["repair_method"] == "none" for r in recs)
    bad = CliRunner().invoke(app, ["solve", str(path), "-o", str(out), "--solver", "openai", "--model", "m",
                                   "--base-url", server.url, "--train", "x.jsonl"])  # fmt: skip
    assert bad.exit_code == 2 and "does not support option(s) --train" in bad.output


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_kill_and_resume_loses_nothing_and_never_duplicates(official_records, tmp_path, sig):
    # 12 puzzles (distinct ids) from the official examples, served slowly
    records = [dict(r, id=f"{r['id']}_{k}") for k in range(4) for r in official_records]
    path = tmp_path / "puzzles.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "pred.jsonl"
    env = dict(os.environ, OPENAI_API_KEY="x")
    # slow enough (~5 s in all) that a loaded machine still signals the run mid-way
    with ChatServer(delay=0.8) as server:
        cmd = [sys.executable, "-c", "from cello1.cli import main; main()", "solve", str(path), "-o", str(out),
               "--solver", "openai", "--model", "m", "--base-url", server.url, "--concurrency", "2",
               "--no-progress"]  # fmt: skip
        # a suite started in the background (`make test &`) inherits SIGINT ignored, as every
        # background job of a non-interactive shell does; Ctrl-C needs the default disposition
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.05)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
        before = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
        assert 3 <= len(before) < len(records), "the kill should land mid-run"
        served_before = len(server.bodies)
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert len(server.bodies) - served_before == len(records) - len(before)  # finished ones were skipped
    after = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == len(records)
    assert {r["id"] for r in before} <= set(ids)
    assert all(r["error"] is None and r["assignment"] is not None for r in after)
