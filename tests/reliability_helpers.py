"""Shared pieces of the reliability tests (issue 11): the real console entry point run
in-process, the catalogue of broken puzzle files, a misbehaving chat server and a real
``cello1`` subprocess to kill.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

from cello1.puzzle import parse_user_msg

CLI = [sys.executable, "-c", "from cello1.cli import main; main()"]


def cli(*args: str | os.PathLike) -> tuple[int, str, str]:
    """``cello1 ARGS`` through :func:`cello1.cli.main` (the console script), in-process:
    ``(exit code, stdout, stderr)``.
    """
    from cello1.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.getsignal(signal.SIGTERM)
    code = 0
    try:
        with (
            mock.patch.object(sys, "argv", ["cello1", *map(str, args)]),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result: tuple[int, str, str], *phrases: str, code: int = 2) -> str:
    """Exit ``code``, exactly one ``error: …`` line on stderr holding every phrase, no traceback."""
    rc, out, err = result
    assert rc == code, (rc, out, err)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out and "internal error" not in err, err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def files_under(path: Path) -> set[str]:
    """Every file and folder below ``path`` (relative names), hidden ones included."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# ---- broken puzzle files --------------------------------------------------------------------


def bad_puzzle_files(root: Path, record: dict) -> list[tuple[str, Path, list[str]]]:
    """``(case, file, phrases the error must hold)`` for every kind of broken puzzle file the
    shared validator (``cello1.io.read_puzzles``) must refuse; ``record`` is a good record.
    """
    root.mkdir(parents=True, exist_ok=True)
    context, cells, candidates = parse_user_msg(record["user_msg"])
    gold = record["assistant_msg"].split(" | ")
    n = len(cells)

    def user_msg(cell_lists, cands) -> str:
        from cello1.puzzle import render_user_msg

        return render_user_msg(context, cell_lists, cands)

    def variant(**changes) -> dict:
        return {k: v for k, v in {**record, **changes}.items() if v is not ...}

    cases: list[tuple[str, str | bytes, list[str]]] = [
        ("empty", "", ["holds no puzzles"]),
        ("blank-only", "\n   \n\n", ["holds no puzzles"]),
        ("json-array-one-line", json.dumps([record, record]) + "\n", [":1:", "JSON array", ".json"]),
        ("json-array-pretty", json.dumps([record], indent=1) + "\n", [":1:", "not valid JSON", ".json"]),
        ("number-line", json.dumps(record) + "\n42\n", [":2:", "found a number"]),
        ("null-line", json.dumps(record) + "\nnull\n", [":2:", "found null"]),
        ("list-line", json.dumps(record) + "\n[1, 2]\n", [":2:", "JSON array"]),
        ("string-line", '"hello"\n', [":1:", "found a string"]),
        ("not-json", "id,user_msg\n1,2\n", [":1:", "not valid JSON"]),
        ("non-utf8", b'{"id": "\xff\xfe"}\n', [":1:", "not UTF-8"]),
        ("latin1", json.dumps(record, ensure_ascii=False).encode("latin-1", "replace") + b"\xe9\n", ["not UTF-8"]),
        ("cut-last-line", json.dumps(record) + "\n" + json.dumps(record)[:40], [":2:", "cut off"]),
        ("user-msg-number", json.dumps(variant(user_msg=7)) + "\n", [":1:", "'user_msg' must be a string"]),
        ("gold-number", json.dumps(variant(assistant_msg=3)) + "\n", [":1:", "gold answer", "must be a string"]),
        ("gold-list", json.dumps(variant(assistant_msg=gold)) + "\n", [":1:", "must be a string"]),
        ("id-list", json.dumps(variant(id=["a"])) + "\n", [":1:", "'id' must be a string"]),
        ("donor-object", json.dumps(variant(donor={"x": 1})) + "\n", [":1:", "'donor' must be a string"]),
        ("cell-ids-string", json.dumps(variant(cell_ids="c1,c2")) + "\n", [":1:", "'cell_ids'"]),
        ("n-mismatch", json.dumps(variant(n=n + 1)) + "\n", [":1:", f"says {n + 1} cells"]),
        ("no-user-msg", json.dumps(variant(user_msg=...)) + "\n", [":1:", "no 'user_msg'"]),
        ("bad-layout", json.dumps(variant(user_msg="hello")) + "\n", [":1:", "layout"]),
        (
            "n-equals-1",
            json.dumps(variant(user_msg=user_msg(cells[:1], candidates[:1]), assistant_msg=candidates[0])) + "\n",
            [":1:", "1 cell(s)", "at least 2"],
        ),
        (
            "repeated-candidate",
            json.dumps(variant(user_msg=user_msg(cells, [*candidates[:-1], candidates[0]]), assistant_msg=...)) + "\n",
            [":1:", "listed twice"],
        ),
        (
            "case-variant-candidate",
            json.dumps(variant(user_msg=user_msg(cells, [*candidates[:-1], candidates[0].upper()]), assistant_msg=...))
            + "\n",
            [":1:", "listed twice", "ignoring case"],
        ),
        (
            "pipe-in-candidate",
            json.dumps(variant(user_msg=user_msg(cells, [*candidates[:-1], "A | B"]), assistant_msg=...)) + "\n",
            [":1:", "contains '|'"],
        ),
        (
            "fewer-candidates",
            json.dumps(variant(user_msg=user_msg(cells, candidates[:-1]), assistant_msg=...)) + "\n",
            [":1:", f"{n - 1} candidate types for {n} cells"],
        ),
        (
            "gold-too-short",
            json.dumps(variant(assistant_msg=" | ".join(gold[:-1]))) + "\n",
            [":1:", f"{n - 1} labels for {n} cells"],
        ),
        (
            "gold-unknown-label",
            json.dumps(variant(assistant_msg=" | ".join(["X", *gold[1:]]))) + "\n",
            [":1:", "'X' is not among"],
        ),
        (
            "gold-repeats-label",
            json.dumps(variant(assistant_msg=" | ".join([gold[0], *gold[:-1]]))) + "\n",
            [":1:", "twice"],
        ),
    ]
    out = []
    for case, content, phrases in cases:
        path = root / f"{case}.jsonl"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        out.append((case, path, [path.name, *phrases]))
    extra = [
        ("json-number", root / "number.json", "5", ["number.json", "expected a JSON object"]),
        ("json-list-item", root / "items.json", json.dumps([record, 5]), ["items.json", "record 1", "found a number"]),
        ("broken-parquet", root / "broken.parquet", "PAR1 not really", ["broken.parquet", "not a readable Parquet"]),
        ("unknown-suffix", root / "puzzles.txt", json.dumps(record), ["puzzles.txt", "unknown file type"]),
    ]
    for case, path, content, phrases in extra:
        path.write_text(content, encoding="utf-8")
        out.append((case, path, phrases))
    (root / "empty_folder").mkdir(exist_ok=True)
    out.append(("empty-folder", root / "empty_folder", ["empty_folder", "holds no .json"]))
    out.append(("missing", root / "missing.jsonl", ["missing.jsonl", "no such file"]))
    return out


# ---- a chat server that misbehaves on request ------------------------------------------------


class ChatServer:
    """A local OpenAI-compatible server answering the candidates in the order shown.

    ``faults`` is a list of behaviours for the first requests, then answers are good:
    ``"truncate"`` (Content-Length promises more than is sent, then the connection
    closes), ``"garbage"`` (a 200 that is not JSON), ``"no-choices"`` (JSON without
    ``choices``), ``"bad-content"`` (a number as the message content), ``"drop"`` (the
    connection closes without a response), an int (that HTTP status). ``delay`` slows
    every good answer down; ``always`` repeats the first fault forever.
    """

    def __init__(self, faults=(), delay: float = 0.0, always: bool = False, oracle: dict | None = None) -> None:
        self.faults, self.delay, self.always = list(faults), delay, always
        self.oracle = oracle or {}  # user message -> the labels to answer (e.g. the gold, for distillation)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults[0] if server.faults else None
                    if server.faults and not server.always:
                        server.faults.pop(0)
                if fault is None:
                    time.sleep(server.delay)
                    return self._send(200, server.answer(body, server.oracle))
                if isinstance(fault, int):
                    return self._send(fault, json.dumps({"error": {"message": f"scripted {fault}"}}).encode())
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                if fault == "truncate":
                    payload = server.answer(body, server.oracle)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                payloads = {
                    "garbage": b"<html>502 Bad Gateway</html>",
                    "no-choices": json.dumps({"object": "chat.completion"}).encode(),
                    "bad-content": json.dumps({"choices": [{"index": 0, "message": {"content": 5}}]}).encode(),
                }
                return self._send(200, payloads[fault])

            def _send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def answer(body: dict, oracle: dict | None = None) -> bytes:
        user = body["messages"][-1]["content"]
        _, _, candidates = parse_user_msg(user)
        labels = (oracle or {}).get(user, candidates)
        think = "\n".join(f"Cell {i}: the top genes point to {t}." for i, t in enumerate(labels, 1))
        text = f"<think>{think}</think>\n<answer>{' | '.join(labels)}</answer>"
        n = body.get("n", 1)
        choices = [{"index": i, "message": {"role": "assistant", "content": text}} for i in range(n)]
        return json.dumps({"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": 5 * n}}).encode()

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- real processes ------------------------------------------------------------------------------


def spawn(args: list[str], env: dict | None = None, prelude: str = "") -> subprocess.Popen:
    """A real ``cello1 ARGS`` process (``prelude``: Python run first, e.g. to slow a step down)."""
    code = f"{prelude}\nfrom cello1.cli import main; main()" if prelude else "from cello1.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 60.0, step: float = 0.02) -> bool:
    """Poll ``condition()`` until it is true (``True``) or ``timeout`` seconds pass (``False``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def jsonl(path: Path) -> list[dict]:
    """The complete records of a JSONL file (a cut last line left out)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]
