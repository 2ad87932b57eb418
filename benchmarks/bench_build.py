"""Benchmark: CellPuzzles build throughput and memory (issue 2).

1. Top-K genes on a synthetic sparse matrix (default 200,000 cells x 20,000 genes,
   ~1,000 stored values per cell): the compiled engine (numba) and the vectorised numpy
   engine against a straightforward per-cell implementation, the way the original
   scripts work (densify one row, ``np.argpartition``, a Python loop per cell). The
   per-cell version runs on an evenly spaced subsample (it is slow) and its cells/s
   are extrapolated; its gene lists are checked to be identical to ours on that subsample.
   Each method runs ``--repeats`` times and the best time counts (shared machine).
2. Peak resident memory of a full ``cello1 build --backed`` of the same matrix written
   as an .h5ad (measured with ``resource.getrusage`` on the child process), plus
   optionally the same build in memory for comparison.

    python benchmarks/bench_build.py                      # full size
    python benchmarks/bench_build.py --cells 20000 --skip-build   # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_top_genes(X, names: list[str], k: int, rows) -> list[list[str]]:
    """The original way, one cell at a time: densify the row, ``np.argpartition``,
    order the K, a Python loop for the names. (At an exact tie for the K-th place
    argpartition's pick is arbitrary; the synthetic values are continuous, so ties do
    not occur and the lists can be compared exactly.)"""
    out = []
    for i in rows:
        dense = X[i].toarray().ravel()
        top = np.argpartition(-dense, k)[:k]
        top = top[np.argsort(-dense[top])]
        out.append([names[j] for j in top if dense[j] > 0])
    return out


def time_engine(X, names, k, engine, chunk_size):
    """Seconds for the ranked gene-index lists (what the build keeps) and for turning
    all of them into Python lists of names (what ``top_genes`` returns)."""
    from cello1.data.topgenes import indices_to_names, top_gene_indices

    t0 = time.perf_counter()
    idx = top_gene_indices(X, k=k, chunk_size=chunk_size, engine=engine)
    t1 = time.perf_counter()
    genes = indices_to_names(idx, np.asarray(names, dtype=object))
    return t1 - t0, time.perf_counter() - t0, genes


def write_h5ad(X, path: Path, n_donors: int, seed: int) -> float:
    import anndata as ad
    import pandas as pd

    from cello1.data.synthetic import TOY_TYPES

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(list(TOY_TYPES), size=n)),
            "donor_id": pd.Categorical([f"donor_{i % n_donors}" for i in range(n)]),
            "tissue": pd.Categorical(["blood"] * n),
            "disease": pd.Categorical(["normal"] * n),
        },
        index=pd.Index([f"c{i}" for i in range(n)]),
    )
    var = pd.DataFrame(index=pd.Index([f"GENE{i}" for i in range(X.shape[1])]))
    t0 = time.perf_counter()
    ad.AnnData(X=X, obs=obs, var=var).write_h5ad(path)
    return time.perf_counter() - t0


def run_build(path: Path, out: Path, backed: bool) -> dict:
    """``cello1 build`` in a child process; wall time and the child's peak RSS."""
    # VmHWM (peak RSS of this process image) rather than getrusage's ru_maxrss, which on
    # Linux keeps the parent's high-water mark across fork + exec.
    code = (
        "import re, sys, time; from cello1.cli import app; t=time.perf_counter()\n"
        "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    print('SECONDS', time.perf_counter()-t); "
        "print('MAXRSS_KB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    args = ["build", str(path), "-o", str(out), "--max-cells", "0", "--no-progress", "--overwrite"]
    if backed:
        args.append("--backed")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-2000:]}")
    values = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.startswith(("SECONDS", "MAXRSS_KB")))
    leak = json.loads((out / "leakage.json").read_text())
    return {
        "seconds": float(values["SECONDS"]),
        "peak_rss_mb": int(values["MAXRSS_KB"]) / 1024,
        "n_train": leak["n_train"],
        "n_test": leak["n_test"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--nnz", type=int, default=1_000, help="stored values per cell")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--naive-cells", type=int, default=2_000, help="subsample for the per-cell baseline")
    ap.add_argument("--chunk-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method; the best is reported")
    ap.add_argument("--donors", type=int, default=40)
    ap.add_argument("--skip-build", action="store_true", help="only the top-K comparison")
    ap.add_argument("--in-memory-build", action="store_true", help="also run the build without --backed")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import os

    from cello1.data.synthetic import random_csr
    from cello1.data.topgenes import resolve_engine

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start; best of {args.repeats} runs per method"
    )
    t0 = time.perf_counter()
    X = random_csr(args.cells, args.genes, nnz_per_cell=args.nnz, seed=args.seed)
    print(
        f"synthetic CSR {X.shape[0]:,} x {X.shape[1]:,}, {X.nnz / X.shape[0]:.0f} stored values/cell, "
        f"{(X.data.nbytes + X.indices.nbytes) / 2**30:.2f} GiB, made in {time.perf_counter() - t0:.1f} s"
    )
    names = [f"GENE{i}" for i in range(args.genes)]

    results = {}
    t0 = time.perf_counter()
    time_engine(X[:10], names, args.k, "numba", args.chunk_size)
    print(f"numba compile/load: {time.perf_counter() - t0:.1f} s (cached on disk after the first run)")
    for engine in ("numba", "numpy"):
        # best of --repeats (the machine is shared: the minimum is the least disturbed run)
        runs = [time_engine(X, names, args.k, engine, args.chunk_size) for _ in range(args.repeats)]
        idx_s, total_s = min(r[0] for r in runs), min(r[1] for r in runs)
        genes = runs[-1][2]
        del runs
        results[engine] = (idx_s, total_s, genes)
        print(
            f"{engine:>6}: ranked gene indices {idx_s:6.2f} s = {args.cells / idx_s:9,.0f} cells/s; "
            f"+ name lists for every cell {total_s:6.2f} s = {args.cells / total_s:9,.0f} cells/s"
        )

    rows = np.linspace(0, args.cells - 1, args.naive_cells).astype(int)
    naive_s = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        naive = naive_top_genes(X, names, args.k, rows)
        naive_s = min(naive_s, time.perf_counter() - t0)
    naive_rate = len(rows) / naive_s
    print(
        f" naive: {naive_s:7.2f} s for {len(rows):,} cells = {naive_rate:10,.0f} cells/s "
        f"(extrapolated {args.cells / naive_rate:,.0f} s for all {args.cells:,})"
    )
    for engine, (idx_s, total_s, genes) in results.items():
        same = all(genes[r] == naive[i] for i, r in enumerate(rows))
        print(
            f"speed-up {engine} vs per-cell: {args.cells / idx_s / naive_rate:6.1f}x (gene indices), "
            f"{args.cells / total_s / naive_rate:6.1f}x (with name lists); "
            f"identical top-gene lists on the {len(rows):,} checked cells: {same}"
        )
    assert results["numba"][2] == results["numpy"][2], "engines disagree"
    print("numba and numpy engines: identical lists for all cells")
    del results

    if args.skip_build:
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cello1-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "synthetic.h5ad"
    seconds = write_h5ad(X, path, args.donors, args.seed)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {seconds:.1f} s")
    del X
    builds = [("backed", True)] + ([("in memory", False)] if args.in_memory_build else [])
    for label, backed in builds:
        r = run_build(path, work / f"out_{'backed' if backed else 'memory'}", backed)
        print(
            f"cello1 build ({label}, engine {resolve_engine('auto')}): {r['seconds']:.1f} s, "
            f"{args.cells / r['seconds']:,.0f} cells/s end to end, peak RSS {r['peak_rss_mb']:,.0f} MB, "
            f"{r['n_train']:,} train / {r['n_test']:,} test puzzles"
        )


if __name__ == "__main__":
    main()
