"""Benchmark: the 300,000-cell build and the 100,000-prediction eval, end to end, for one or
more source trees in the same sitting (issue 11: the reliability checks must not slow
these down).

Each measurement is a ``cello1`` command in a fresh child process (wall time from the
child's start to its end, CPU time = the child's user + system time, which other jobs on a
shared machine disturb far less than wall time; peak RSS = the child's ``VmHWM``); the
source trees take turns (A, B, A, B, …) so load hits both alike. Reported: the best and
the median of ``--repeats`` runs.

    python benchmarks/bench_scale.py --src before=/path/to/old/src --src after=src
    python benchmarks/bench_scale.py --cells 30000 --predictions 10000 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = (
    "import re, sys, time\n"
    "t = time.perf_counter()\n"
    "from cello1.cli import app\n"
    "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
    "finally:\n"
    "    print('SECONDS', time.perf_counter() - t)\n"
    "    print('MAXRSS_KB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
)

TYPES = [f"cell type {i}" for i in range(20)]


def write_h5ad(path: Path, cells: int, genes: int, nnz: int, donors: int, seed: int) -> None:
    """A synthetic CELLxGENE-schema .h5ad: log-normal CSR values, 10 types, ``donors`` donors."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from cello1.data.synthetic import TOY_TYPES, random_csr

    rng = np.random.default_rng(seed)
    X = random_csr(cells, genes, nnz_per_cell=nnz, seed=seed)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(list(TOY_TYPES), size=cells)),
            "donor_id": pd.Categorical([f"donor_{i % donors}" for i in range(cells)]),
            "tissue": pd.Categorical(["blood"] * cells),
            "disease": pd.Categorical(["normal"] * cells),
            "sex": pd.Categorical(["female"] * cells),
        },
        index=pd.Index([f"c{i}" for i in range(cells)]),
    )
    var = pd.DataFrame(index=pd.Index([f"GENE{i}" for i in range(genes)]))
    ad.AnnData(X=X, obs=obs, var=var).write_h5ad(path)


def write_predictions(path: Path, count: int, seed: int) -> None:
    """``count`` prediction records as ``cello1 solve`` writes them: N = 8–15, 1–2 KB of
    reasoning, 70% valid (partly wrong), the rest wrong count, repeats or format failures.
    """
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            n = rng.randint(8, 15)
            gold = rng.sample(TYPES, n)
            pred = gold[:]
            for _ in range(rng.randint(0, 3)):
                a, b = rng.randrange(n), rng.randrange(n)
                pred[a], pred[b] = pred[b], pred[a]
            kind = rng.random()
            if kind < 0.1:
                pred = pred[:-1]
            elif kind < 0.2:
                pred[0] = pred[1]
            think = " ".join(f"Cell {rng.randint(1, n)} expresses GENE{rng.randint(0, 999)}." for _ in range(40))
            text = f"<think>{think}</think>\n<answer>{' | '.join(pred)}</answer>"
            if kind > 0.9:
                text = text.replace("<think>", "")
            record = {
                "id": f"test_{i:06d}",
                "answer": " | ".join(gold),
                "prediction": text,
                "assignment": None,
                "solver": "bench",
                "model": None,
                "seconds": 0.1,
                "prompt_tokens": None,
                "completion_tokens": None,
                "error": None,
                "sample": 0,
                "n": n,
                "tissue": rng.choice(["blood", "lung", "liver"]),
                "disease": "normal",
                "source": f"s{i % 4}",
                "donor": f"d{i % 40}",
            }
            fh.write(json.dumps(record) + "\n")


def run(src: Path, args: list[str]) -> dict[str, float]:
    """One ``cello1 ARGS`` in a child process using the sources in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # children run one at a time: the delta is this one's
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{src}: cello1 {' '.join(args[:3])} … failed:\n{proc.stderr[-2000:]}")
    values = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.startswith(("SECONDS", "MAXRSS_KB")))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "command_s": float(values["SECONDS"]),
        "peak_mb": int(values["MAXRSS_KB"]) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", action="append", default=None, help="name=path of a source tree (repeatable)")
    ap.add_argument("--cells", type=int, default=300_000)
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--nnz", type=int, default=300, help="stored values per cell")
    ap.add_argument("--donors", type=int, default=40)
    ap.add_argument("--predictions", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw runs as JSON")
    ap.add_argument("--tasks", default="memory,backed,eval", help="which of memory, backed, eval to run")
    args = ap.parse_args()

    trees = dict(item.split("=", 1) for item in (args.src or [f"current={Path(__file__).parents[1] / 'src'}"]))
    trees = {name: Path(path).resolve() for name, path in trees.items()}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cello1-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    h5ad, preds = work / "cells.h5ad", work / "pred.jsonl"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    if not h5ad.exists():
        t0 = time.perf_counter()
        write_h5ad(h5ad, args.cells, args.genes, args.nnz, args.donors, seed=0)
        print(f"wrote {h5ad} ({h5ad.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    if not preds.exists():
        write_predictions(preds, args.predictions, seed=0)
        print(f"wrote {preds} ({preds.stat().st_size / 2**20:.0f} MiB)")

    jobs = {
        "build (in memory)": lambda out: ["build", str(h5ad), "-o", str(out), "--max-cells", "0", "--no-progress"],
        "build --backed": lambda out: [
            "build",
            str(h5ad),
            "-o",
            str(out),
            "--max-cells",
            "0",
            "--no-progress",
            "--backed",
        ],  # fmt: skip
        "eval": lambda out: ["eval", str(preds), "--json", str(out / "metrics.json"), "-q"],
    }
    wanted = {"memory": "build (in memory)", "backed": "build --backed", "eval": "eval"}
    jobs = {job: make for job, make in jobs.items() if job in {wanted[t] for t in args.tasks.split(",")}}
    results: dict[str, dict[str, list[dict[str, float]]]] = {job: {name: [] for name in trees} for job in jobs}
    for repeat in range(args.repeats):
        for job, make_args in jobs.items():
            for name, src in trees.items():
                out = work / f"out_{name}_{repeat}_{job.split()[0]}{'_b' if 'backed' in job else ''}"
                out.mkdir(exist_ok=True) if job == "eval" else None
                r = run(src, make_args(out))
                results[job][name].append(r)
                print(
                    f"  {job:<18} {name:<8} run {repeat + 1}: {r['wall_s']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, "
                    f"peak {r['peak_mb']:7.0f} MB"
                )
                subprocess.run(["rm", "-rf", str(out)], check=False)
    print()
    print("| task | tree | CPU s, best | CPU s, median | wall s, best | wall s, median | peak RSS MB (max) | runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for job, by_tree in results.items():
        for name, runs in by_tree.items():
            cpus, walls = [r["cpu_s"] for r in runs], [r["wall_s"] for r in runs]
            print(
                f"| {job} | {name} | {min(cpus):.1f} | {statistics.median(cpus):.1f} | {min(walls):.1f} | "
                f"{statistics.median(walls):.1f} | {max(r['peak_mb'] for r in runs):,.0f} | {len(runs)} |"
            )
    if args.json:
        args.json.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "results": results}, indent=1))


if __name__ == "__main__":
    main()
