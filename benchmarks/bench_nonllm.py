"""Benchmark the non-LLM solvers: accuracy (cell, batch, 95% bootstrap CIs), confidence
AUROC and CPU time per puzzle, on official CellPuzzles puzzles and on the embedded data.

    python benchmarks/bench_nonllm.py --dev DEV.jsonl [--seeds 5] [--out benchmarks/results/nonllm_solvers.md]

``--dev``: official CellPuzzles records with gold answers (e.g. a sample of the official
train split). Zero-shot solvers run on all of them. ``reference`` and ``ensemble`` are
2-fold cross-fitted: the puzzles are split into two halves that share no cell gene list
(puzzles sharing a list are kept together), each half is fitted on and the other half
solved, so every puzzle gets one held-out prediction. Without ``--dev`` only the
embedded data (scanpy's pbmc68k_reduced) is benchmarked.

Times are CPU seconds of this process (``time.process_time``) with numpy limited to one
thread, so they do not depend on what else runs on the machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: before numpy is imported

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from cello1.io import read_puzzles  # noqa: E402
from cello1.knowledge.donor import donor_of  # noqa: E402
from cello1.prediction import Prediction  # noqa: E402
from cello1.puzzle import Puzzle  # noqa: E402
from cello1.scoring import evaluate  # noqa: E402
from cello1.solvers import get_solver  # noqa: E402
from cello1.solvers.base import Solver  # noqa: E402
from cello1.solvers.markers import MarkerSolver  # noqa: E402
from cello1.solvers.run import solve  # noqa: E402
from cello1.vocabulary import label_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_TRAIN_SIZE = 6912  # puzzles in the official CellPuzzles train split
CONFIDENCE_BINS = (0.0, 0.25, 0.5, 1.0, 2.0, np.inf)
MARKERS = "**`markers`** (deep profiles, donor-matched malignant)"
TRANSDUCTIVE = "`markers --transductive` (whole file, not per-puzzle)"
REFERENCE = "`reference --train` (other half)"
ENSEMBLE = "**`ensemble --members markers,reference`** (weights 1,1)"


class ClassicMarkers(MarkerSolver):
    """The markers solver before deep profiles: each term's classic top-40 marker list,
    "malignant cell" as the mean over all cancer types (for comparison only).
    """

    def profile(self, label: str, puzzle: Puzzle | None = None) -> dict[str, float]:
        """The classic top-40 list of the label's term."""
        return dict(self.kb.markers_for(label))


# ---- measuring -------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def with_ci(m: Any, key: str) -> str:
    lo, hi = m["ci"][key]
    return f"{pct(m[key])} [{pct(lo)}, {pct(hi)}]"


def cell_correctness(records: Sequence[Prediction]) -> np.ndarray:
    out = []
    for r in records:
        gold = (r.answer or "").split(" | ")
        pred = r.assignment or [None] * len(gold)
        out.extend(p is not None and label_key(p) == label_key(g) for p, g in zip(pred, gold, strict=False))
    return np.asarray(out, dtype=bool)


def confidences(records: Sequence[Prediction]) -> np.ndarray:
    return np.concatenate([np.asarray(r.confidence, dtype=float) for r in records])


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a right cell has higher confidence than a wrong one (ties count half)."""
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def timed_solve(puzzles: list[Puzzle], solver: Solver) -> tuple[list[Prediction], float]:
    """(records, CPU milliseconds per puzzle) of one run of the runner."""
    start = time.process_time()
    records = solve(puzzles, solver, progress=False)
    return records, (time.process_time() - start) / len(puzzles) * 1000


def row(name: str, records: list[Prediction], ms: float | None, *, auc: bool = True) -> str:
    m = evaluate(records, by=False)
    area = f"{auroc(confidences(records), cell_correctness(records)):.3f}" if auc else "—"
    time_ms = "—" if ms is None else f"{ms:.2f}"
    return (
        f"| {name} | {with_ci(m, 'cell_accuracy')} | {with_ci(m, 'batch_accuracy')} | {area} | {time_ms} "
        f"| {m['n_puzzles']} |"
    )


HEADER = [
    "| solver | cell acc. % [95% CI] | batch acc. % [95% CI] | confidence AUROC | CPU ms / puzzle | puzzles |",
    "|---|---|---|---|---|---|",
]


# ---- official puzzles --------------------------------------------------------------------------


def zero_shot(dev: list[Puzzle]) -> tuple[list[str], dict[str, list[Prediction]]]:
    configs: list[tuple[str, Callable[[], Solver], bool]] = [
        ("`random` (chance)", lambda: get_solver("random"), True),
        ("`markers`, classic top-40 lists (before this change)", lambda: ClassicMarkers(malignant="mean"), True),
        (MARKERS, lambda: get_solver("markers"), True),
        ("`markers --malignant mean`", lambda: get_solver("markers", malignant="mean"), True),
        ("`markers --specificity`", lambda: get_solver("markers", specificity=True), True),
        ("`markers --assignment none`", lambda: get_solver("markers", assignment="none"), True),
        (TRANSDUCTIVE, lambda: get_solver("markers", transductive=True), True),
    ]
    rows = list(HEADER)
    kept: dict[str, list[Prediction]] = {}
    for name, make, auc in configs:
        solver = make()
        solver.solve_batch(dev[:3])  # warm the caches (knowledge base, label mapping)
        solver = make()
        records, ms = timed_solve(dev, solver)
        rows.append(row(name, records, ms, auc=auc))
        kept[name] = records
    return rows, kept


def disjoint_halves(puzzles: list[Puzzle], seed: int = 0) -> tuple[list[int], list[int]]:
    """Two halves of puzzle indices that share no cell gene list (union-find over shared lists)."""
    parent = list(range(len(puzzles)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, ...], int] = {}
    for i, p in enumerate(puzzles):
        for cell in p.cells:
            j = owner.setdefault(tuple(cell), i)
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(puzzles)):
        groups.setdefault(find(i), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    first: list[int] = []
    second: list[int] = []
    for group in order:
        (first if len(first) < len(puzzles) / 2 else second).extend(group)
    return sorted(first), sorted(second)


def cross_fitted(dev: list[Puzzle]) -> tuple[list[str], dict[str, list[Prediction]], list[str]]:
    a, b = disjoint_halves(dev)
    folds = [([dev[i] for i in a], [dev[i] for i in b]), ([dev[i] for i in b], [dev[i] for i in a])]
    for fit, held in folds:
        shared = {tuple(c) for p in fit for c in p.cells} & {tuple(c) for p in held for c in p.cells}
        assert not shared, "the halves must share no cell gene list"
    configs: list[tuple[str, str, dict[str, Any]]] = [
        ("`markers` (zero-shot, same puzzles)", "markers", {}),
        (REFERENCE, "reference", {}),
        (ENSEMBLE, "ensemble", {}),
        ("`ensemble --weights 1,0.5`", "ensemble", {"weights": "1,0.5"}),
        ("`ensemble --specificity`", "ensemble", {"specificity": True}),
        ("`ensemble --transductive`", "ensemble", {"transductive": True}),
    ]
    rows = list(HEADER)
    kept: dict[str, list[Prediction]] = {}
    fit_seconds: list[str] = []
    for name, solver_name, options in configs:
        records: list[Prediction] = []
        cpu = 0.0
        for fit, held in folds:
            opts = dict(options)
            if solver_name != "markers":
                opts["train"] = fit
            start = time.process_time()
            solver = get_solver(solver_name, **opts)
            if solver_name == "reference" and not fit_seconds:
                fit_seconds.append(f"{time.process_time() - start:.2f} s for {len(fit)} puzzles")
            fold_records, ms = timed_solve(held, solver)
            records += fold_records
            cpu += ms * len(held)
        by_id = {r.id: r for r in records}
        records = [by_id[p.id] for p in dev]
        rows.append(row(name, records, cpu / len(dev)))
        kept[name] = records
    notes = [
        f"Halves: {len(a)} and {len(b)} puzzles, no cell gene list in both. Reference fit: {fit_seconds[0]}.",
    ]
    return rows, kept, notes


def subsets(puzzles: list[Puzzle], n: int, seed: int = 0) -> list[Puzzle]:
    """One random ``n``-cell sub-puzzle of every puzzle with more than ``n`` cells."""
    rng = random.Random(seed)
    out = []
    for p in puzzles:
        if p.n > n:
            keep = sorted(rng.sample(range(p.n), n))
            labels = [p.answer[i] for i in keep]
            cells = [p.cells[i] for i in keep]
            out.append(
                Puzzle(id=f"{p.id}_n{n}", context=p.context, cells=cells, candidates=sorted(labels), answer=labels)
            )
    return out


def pooled(puzzles: list[Puzzle], n: int, per_context: int = 3, seed: int = 0) -> list[Puzzle]:
    """Puzzles of ``n`` distinct labels pooled from puzzles with the same context sentence
    (a donor proxy; one random cell per label), to stress N up to 15.
    """
    rng = random.Random(seed)
    groups: dict[str, dict[str, list[list[str]]]] = {}
    for p in puzzles:
        pool = groups.setdefault(p.context, {})
        for cell, label in zip(p.cells, p.answer or [], strict=False):
            pool.setdefault(label, []).append(cell)
    out = []
    for g, (context, pool) in enumerate(sorted(groups.items())):
        if len(pool) < n:
            continue
        for d in range(per_context):
            labels = rng.sample(sorted(pool), n)
            cells = [rng.choice(pool[label]) for label in labels]
            out.append(
                Puzzle(id=f"pool{n}_{g}_{d}", context=context, cells=cells, candidates=sorted(labels), answer=labels)
            )
    return out


def larger_puzzles(dev: list[Puzzle]) -> list[str]:
    """Markers and the ensemble on N = 8 sub-puzzles and N = 12 / 15 pooled puzzles, each
    built from one held-out half only (the other half fits the reference).
    """
    a, b = disjoint_halves(dev)
    folds = [([dev[i] for i in a], [dev[i] for i in b]), ([dev[i] for i in b], [dev[i] for i in a])]
    sets = {"N = 8 (sub-puzzles)": lambda h: subsets(h, 8), "N = 12 (pooled)": lambda h: pooled(h, 12)}
    sets["N = 15 (pooled)"] = lambda h: pooled(h, 15)
    rows = [
        "| puzzles | markers: cell % / batch % [95% CI] | ensemble (held-out): cell % / batch % [95% CI] | puzzles |",
        "|---|---|---|---|",
    ]
    for name, make in sets.items():
        runs: dict[str, list[Prediction]] = {"markers": [], "ensemble": []}
        for fit, held in folds:
            puzzles = make(held)
            runs["markers"] += solve(puzzles, "markers", progress=False)
            runs["ensemble"] += solve(puzzles, "ensemble", progress=False, train=fit)
        cells = []
        for records in runs.values():
            m = evaluate(records, by=False)
            cells.append(f"{pct(m['cell_accuracy'])} / {with_ci(m, 'batch_accuracy')}")
        rows.append(f"| {name} | {cells[0]} | {cells[1]} | {len(runs['markers'])} |")
    return rows


def by_tissue(dev: list[Puzzle], runs: dict[str, list[Prediction]]) -> list[str]:
    tissue = {p.id: donor_of(p).tissue for p in dev}
    rows = [
        "| solver | lung: cell / batch % | other tissues: cell / batch % | puzzles (lung / other) |",
        "|---|---|---|---|",
    ]
    for name, records in runs.items():
        lung = [r for r in records if tissue[r.id] == "lung"]
        other = [r for r in records if tissue[r.id] != "lung"]
        ml, mo = evaluate(lung, bootstrap=0, by=False), evaluate(other, bootstrap=0, by=False)
        rows.append(
            f"| {name} | {pct(ml['cell_accuracy'])} / {pct(ml['batch_accuracy'])} "
            f"| {pct(mo['cell_accuracy'])} / {pct(mo['batch_accuracy'])} | {len(lung)} / {len(other)} |"
        )
    return rows


def reliability(runs: dict[str, list[Prediction]]) -> list[str]:
    edges = CONFIDENCE_BINS
    names = [f"[{lo:g}, {hi:g})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    rows = [
        "| solver | " + " | ".join(f"confidence {n}: share of cells, % right" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, records in runs.items():
        conf, right = confidences(records), cell_correctness(records)
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            inside = (conf >= lo) & (conf < hi)
            share = inside.mean()
            cells.append(f"{pct(share)} %, {pct(right[inside].mean())} %" if inside.any() else "—")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def official_scale_fit(dev: list[Puzzle]) -> str:
    """Fit the reference on as many puzzles as the official train split (dev puzzles with
    their gene lists shuffled, so no cell repeats)."""
    rng = random.Random(0)
    big: list[Puzzle] = []
    while len(big) < OFFICIAL_TRAIN_SIZE:
        for p in dev[: OFFICIAL_TRAIN_SIZE - len(big)]:
            cells = [rng.sample(c, len(c)) for c in p.cells]
            big.append(
                Puzzle(id=f"big{len(big)}", context=p.context, cells=cells, candidates=p.candidates, answer=p.answer)
            )
    get_solver("reference", train=big[:10])  # load the knowledge base first
    start = time.process_time()
    solver = get_solver("reference", train=big)
    seconds = time.process_time() - start
    cells = int(solver.n_cells.sum())
    return (
        f"Reference fit at the official train split's size: {len(big):,} puzzles, {cells:,} distinct cells "
        f"(dev puzzles with their gene order shuffled): **{seconds:.1f} CPU s**."
    )


def knowledge_load() -> str:
    from cello1.knowledge.base import KnowledgeBase

    start = time.process_time()
    KnowledgeBase.load()
    return f"Loading the shipped knowledge base: {time.process_time() - start:.2f} CPU s (once per process)."


# ---- embedded data ------------------------------------------------------------------------------


def embedded_builds(seeds: int, **overrides: Any) -> list[Any]:
    from cello1.data import build_puzzles, pbmc68k_reduced

    adata = pbmc68k_reduced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [build_puzzles(adata, label_key="bulk_labels", seed=s, **overrides) for s in range(seeds)]


def embedded_table(builds: list[Any]) -> list[str]:
    configs = [
        ("random", {"assignment": "hungarian"}),
        ("markers", {"assignment": "hungarian"}),
        ("markers", {"assignment": "none"}),
        ("reference", {"assignment": "hungarian"}),
        ("reference", {"assignment": "none"}),
        ("ensemble", {"assignment": "hungarian"}),
    ]
    rows = [
        "| solver | assignment | cell acc. % [95% CI] | batch acc. % [95% CI] | confidence AUROC | CPU ms / puzzle "
        "| puzzles |",
        "|---|---|---|---|---|---|---|",
    ]
    for solver_name, options in configs:
        records: list[Prediction] = []
        cpu = 0.0
        for build in builds:
            opts = dict(options)
            if solver_name in ("reference", "ensemble"):
                opts["train"] = build.train
            fold, ms = timed_solve(build.test, get_solver(solver_name, **opts))
            records += fold
            cpu += ms * len(build.test)
        m = evaluate(records, by=False)
        area = auroc(confidences(records), cell_correctness(records))
        rows.append(
            f"| {solver_name} | {options['assignment']} | {with_ci(m, 'cell_accuracy')} "
            f"| {with_ci(m, 'batch_accuracy')} | {area:.3f} | {cpu / len(records):.2f} | {m['n_puzzles']} |"
        )
    return rows


# ---- report -------------------------------------------------------------------------------------


def official_section(dev_path: Path) -> list[str]:
    dev = read_puzzles(dev_path)
    n_values = sorted({p.n for p in dev})
    zs_rows, zs_runs = zero_shot(dev)
    cf_rows, cf_runs, cf_notes = cross_fitted(dev)
    main = {
        "markers (zero-shot)": zs_runs[MARKERS],
        "markers --transductive": zs_runs[TRANSDUCTIVE],
        "reference (held-out)": cf_runs[REFERENCE],
        "ensemble (held-out)": cf_runs[ENSEMBLE],
    }
    return [
        f"## Official CellPuzzles puzzles: `{dev_path.name}` ({len(dev)} puzzles, N {n_values[0]}–{n_values[-1]})",
        "",
        "Official train-split puzzles (real CELLxGENE cells; mostly lung). 95% intervals: bootstrap over "
        "puzzles (`cello1.scoring.evaluate`). Confidence AUROC: how well the per-cell confidence written in "
        "every record separates right from wrong cells (0.5 = no better than chance).",
        "",
        "### Zero-shot, all puzzles",
        "",
        *zs_rows,
        "",
        "### Fitted solvers, held out (2-fold cross-fit on halves that share no cell gene list)",
        "",
        *cf_rows,
        "",
        *cf_notes,
        "",
        "### Larger and smaller puzzles (the official test split has N 8–15)",
        "",
        "The dev file is almost all N = 10, so N = 8 puzzles are random sub-puzzles of held-out puzzles, and "
        "N = 12 / 15 puzzles pool distinct labels from held-out puzzles with the same context sentence (a donor "
        "proxy; pooled cells may come from different donors of that description).",
        "",
        *larger_puzzles(dev),
        "",
        "### By tissue",
        "",
        *by_tissue(dev, main),
        "",
        "### What the confidence means",
        "",
        "Confidence = how much the total score of the best assignment drops when the cell may not take its "
        "label (0 = an equally good alternative exists).",
        "",
        *reliability(main),
        "",
        "### Speed",
        "",
        official_scale_fit(dev),
        "",
        knowledge_load(),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, help="official CellPuzzles records with gold answers (JSONL)")
    parser.add_argument("--seeds", type=int, default=5, help="build seeds pooled for the embedded data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nonllm_solvers.md")
    args = parser.parse_args()
    start = time.perf_counter()
    dev = f" --dev {args.dev}" if args.dev else ""
    command = f"python benchmarks/bench_nonllm.py{dev} --seeds {args.seeds}"
    lines = [
        "# Non-LLM solvers: accuracy, confidence and speed",
        "",
        f"Command: `{command}`. Machine: 2-core CPU, no GPU ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}); times are CPU time of one process with numpy on one thread. "
        "Other jobs shared the two cores, which makes CPU times vary by up to ~50 % between runs.",
        "",
    ]
    if args.dev:
        lines += official_section(args.dev)
    builds = embedded_builds(args.seeds)
    small = embedded_builds(args.seeds, n_min=3, n_max=5)
    lines += [
        f"## Embedded data (pbmc68k_reduced, `bulk_labels`), default build and split, {args.seeds} build seeds pooled",
        "",
        "Default builder settings give N = 8–10 (the data has 10 types) and a cell-disjoint split (no test cell "
        "in train); `reference` and `ensemble` are fitted on each build's train split.",
        "",
        *embedded_table(builds),
        "",
        "### Smaller puzzles (N = 3–5), same data",
        "",
        *embedded_table(small),
        "",
        f"Whole benchmark: {time.perf_counter() - start:.0f} s wall.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
