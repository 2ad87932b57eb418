"""Time and peak memory of `cello1 audit` on a synthetic pair of the official split's size.

    python benchmarks/bench_audit.py [--train 6912] [--test 1095] [--near 0.8]

Cells are drawn from a pool of 62,000 distinct ranked 50-gene lists over 20,000 genes;
puzzles of N 8–15 reuse pool cells (as the official split does), so many test puzzles
leak. Each configuration runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def make(n_train: int, n_test: int, seed: int = 0) -> tuple[list, list]:
    from cello1.puzzle import Puzzle

    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i}" for i in range(20_000)], dtype=object)
    pool = [genes[rng.choice(20_000, 50, replace=False)].tolist() for _ in range(62_000)]

    def puzzles(count: int, prefix: str) -> list:
        out = []
        for i in range(count):
            n = int(rng.integers(8, 16))
            types = [f"type {k}" for k in range(n)]
            cells = [pool[j] for j in rng.choice(len(pool), n, replace=False)]
            out.append(
                Puzzle(id=f"{prefix}{i}", context="c", cells=cells, candidates=types, answer=types, tissue="lung")
            )
        return out

    return puzzles(n_train, "train_"), puzzles(n_test, "test_")


def run_one(n_train: int, n_test: int, near: float | None) -> dict:
    from cello1.data.audit import audit

    train, test = make(n_train, n_test)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = audit(train, test, near_threshold=near)
    seconds = time.perf_counter() - start
    return {
        "near_threshold": near,
        "train_puzzles": n_train,
        "train_cells": result.train_cells,
        "test_puzzles": n_test,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_audit_mb": round(before / 1024, 1),
        "leaked_share": round(result.leaked_share, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6912)
    parser.add_argument("--test", type=int, default=1095)
    parser.add_argument("--near", type=float, default=0.8)
    parser.add_argument("--one", choices=["exact", "near"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.train, args.test, args.near if args.one == "near" else None)))
        return
    for mode in ("exact", "near"):
        cmd = [sys.executable, __file__, "--train", str(args.train), "--test", str(args.test), "--near", str(args.near)]
        out = subprocess.run([*cmd, "--one", mode], check=True, capture_output=True, text=True).stdout
        print(out.strip())


if __name__ == "__main__":
    main()
