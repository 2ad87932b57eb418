"""Reliability trials (issue 11): random ``kill -9`` of ``cello1 solve`` and two ``solve``
processes on one output, counting what is lost or doubled.

1. **Kill/resume**, per backend (``openai`` against a slow local chat server, ``markers``,
   ``random``): start ``cello1 solve`` as a real process, ``kill -9`` it at a random moment,
   check the file (complete records, duplicates), start again … ``--kills`` times, then let
   a run finish. Counted: runs, kills that landed mid-run, ids lost, ids doubled (at any
   point), records that changed after they were finished.
2. **Concurrent runs**: two ``solve`` processes on one output, the second started at a random
   delay (0 to ``--max-delay`` s) after the first, against the slow server. Counted: runs in
   which both wrote, second runs refused with the lock message, ids lost and doubled once
   both ended (after one plain re-run when the refused run was the first).

    python benchmarks/bench_kill_resume.py                 # 3 x 14 kills + 20 concurrent trials
    python benchmarks/bench_kill_resume.py --kills 3 --concurrent 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CLI = [sys.executable, "-c", "from cello1.cli import main; main()"]


class SlowServer:
    """A local OpenAI-compatible server answering the candidates in order after ``delay`` s."""

    def __init__(self, delay: float) -> None:
        from cello1.puzzle import parse_user_msg

        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                time.sleep(delay)
                _, _, candidates = parse_user_msg(body["messages"][-1]["content"])
                text = "<think>x</think>\n<answer>" + " | ".join(candidates) + "</answer>"
                payload = json.dumps({"choices": [{"index": 0, "message": {"content": text}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client was killed mid-request: that is the point
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def make_puzzles(path: Path, count: int) -> list[str]:
    """``count`` puzzles built from the synthetic atlas; returns their ids."""
    import warnings

    from cello1.data import build_puzzles
    from cello1.data.synthetic import toy_atlas
    from cello1.io import write_puzzles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = build_puzzles(
            toy_atlas(n_donors=6, cells_per_donor=400, seed=3), n_min=3, n_max=10, puzzles_per_n=200, split="random"
        )
    puzzles = (result.train + result.test)[:count]
    write_puzzles(path, puzzles)
    return [p.id for p in puzzles]


def complete_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def kill_trials(name: str, args: list[str], ids: list[str], out: Path, kills: int, window: tuple[float, float],
                rng: random.Random, env: dict) -> dict:  # fmt: skip
    """Kill ``solve`` ``kills`` times at random moments, then let it finish."""
    stats = {"backend": name, "puzzles": len(ids), "runs": 0, "kills_mid_run": 0, "finished_early": 0,
             "max_duplicates_seen": 0, "finished_records_changed": 0}  # fmt: skip
    finished: dict[str, str] = {}  # id -> the record's line, once it is complete
    for _ in range(kills):
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stats["runs"] += 1
        time.sleep(rng.uniform(*window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            stats["kills_mid_run"] += 1
        else:
            stats["finished_early"] += 1
        proc.wait()
        _check(out, finished, stats)
        if len(finished) == len(ids):
            break
    final = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    stats["runs"] += 1
    stats["final_exit"] = final.returncode
    _check(out, finished, stats)
    records = complete_records(out)
    present = [r["id"] for r in records]
    stats["ids_lost"] = len(set(ids) - set(present))
    stats["ids_doubled"] = len(present) - len(set(present))
    stats["errors_in_file"] = sum(r["error"] is not None for r in records)
    return stats


def _check(out: Path, finished: dict[str, str], stats: dict) -> None:
    records = complete_records(out)
    ids = [r["id"] for r in records]
    stats["max_duplicates_seen"] = max(stats["max_duplicates_seen"], len(ids) - len(set(ids)))
    for record in records:
        if record["error"] is not None:
            continue
        line = json.dumps(record, sort_keys=True)
        if record["id"] in finished and finished[record["id"]] != _without_timing(line):
            stats["finished_records_changed"] += 1
        finished.setdefault(record["id"], _without_timing(line))


def _without_timing(line: str) -> str:
    record = json.loads(line)
    record.pop("seconds", None)
    return json.dumps(record, sort_keys=True)


def concurrent_trials(trials: int, puzzle_file: Path, ids: list[str], work: Path, url: str, max_delay: float,
                      rng: random.Random, env: dict) -> dict:  # fmt: skip
    stats = {"trials": trials, "both_wrote": 0, "second_refused": 0, "first_refused": 0, "both_finished": 0,
             "ids_lost": 0, "ids_doubled": 0}  # fmt: skip
    for trial in range(trials):
        out = work / f"concurrent_{trial}.jsonl"
        args = ["solve", str(puzzle_file), "-o", str(out), "--solver", "openai", "--model", "m", "--base-url", url,
                "--concurrency", "4", "--no-progress"]  # fmt: skip
        first = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0, max_delay))
        second = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = [(p.wait(), p.stderr.read()) for p in (first, second)]
        refused = ["being written by another cello1 process" in err for _, err in results]
        ok = [code == 0 for code, _ in results]
        stats["both_finished"] += all(ok)
        stats["second_refused"] += refused[1]
        stats["first_refused"] += refused[0]
        # both "finished" without either being refused would mean they wrote at the same time,
        # unless the second started after the first had ended (then it had nothing left to do)
        wrote = [ok[i] and "(0 new)" not in results[i][1] for i in range(2)]
        stats["both_wrote"] += all(wrote)
        if not all(ok):
            subprocess.run([*CLI, *args], env=env, capture_output=True)  # the plain re-run a user would do
        present = [r["id"] for r in complete_records(out)]
        stats["ids_lost"] += len(set(ids) - set(present))
        stats["ids_doubled"] += len(present) - len(set(present))
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=14, help="kills per backend")
    ap.add_argument("--concurrent", type=int, default=20, help="concurrent-run trials")
    ap.add_argument("--max-delay", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cello1-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    server = SlowServer(delay=0.25)
    small, large = work / "puzzles_api.jsonl", work / "puzzles_large.jsonl"
    small_ids, large_ids = make_puzzles(small, 600), make_puzzles(large, 3000)
    pair = work / "puzzles_concurrent.jsonl"
    pair_ids = make_puzzles(pair, 120)

    # kill windows: from "still importing" to "nearly done", as measured on this machine
    backends = [
        (
            "openai",
            small,
            small_ids,
            ["--solver", "openai", "--model", "m", "--base-url", server.url, "--concurrency", "4"],
            (0.5, 7.0),
        ),  # fmt: skip
        ("markers", large, large_ids, ["--solver", "markers"], (0.5, 8.0)),
        ("random", large, large_ids, ["--solver", "random", "--seed", "1"], (0.5, 5.0)),
    ]
    report = {"kill_resume": [], "concurrent": None}
    for name, puzzle_file, ids, options, window in backends:
        out = work / f"kill_{name}.jsonl"
        stats = kill_trials(name, ["solve", str(puzzle_file), "-o", str(out), "--no-progress", *options], ids, out,
                            args.kills, window, rng, env)  # fmt: skip
        report["kill_resume"].append(stats)
        print(json.dumps(stats))
    report["concurrent"] = concurrent_trials(args.concurrent, pair, pair_ids, work, server.url, args.max_delay, rng,
                                             env)  # fmt: skip
    report["concurrent"]["server_requests"] = server.requests
    print(json.dumps(report["concurrent"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
