"""The first thing a new user runs: build puzzles from the embedded data, solve them with
the three non-LLM solvers, and compare them side by side (``cello1 demo -o DIR``).

Offline and fast (seconds): scanpy's bundled ``pbmc68k_reduced`` (700 PBMCs, 10
FACS-sorted populations in ``bulk_labels``) → :func:`cello1.data.build_puzzles` with the
default split → ``random``, ``markers`` (zero-shot) and ``reference`` (fitted on the
train split), each with the one-to-one assignment and, to show what that constraint is
worth, the two informed solvers once more with ``assignment="none"``.

>>> from cello1.demo import run_demo
>>> summary = run_demo("demo_out")          # doctest: +SKIP
>>> summary["results"]["markers"]["batch_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.io import atomic_dir, atomic_path, check_output_dir, write_puzzles
from cello1.scoring.evaluation import EvalResult

# (row name, solver, assignment) in table order
RUNS: tuple[tuple[str, str, str], ...] = (
    ("random", "random", "hungarian"),
    ("markers", "markers", "hungarian"),
    ("reference", "reference", "hungarian"),
    ("markers_none", "markers", "none"),
    ("reference_none", "reference", "none"),
)


@dataclass
class DemoRun:
    """One solver run of the demo: its name, solver, assignment rule, metrics and predictions file."""

    name: str
    solver: str
    assignment: str
    metrics: EvalResult
    path: Path


DEMO_FILES = frozenset(
    {"train.jsonl", "test.jsonl", "summary.json", "summary.md"} | {f"pred_{name}.jsonl" for name, _, _ in RUNS}
)


def check_demo_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """The demo writes into a new or empty folder, or replaces an earlier demo's output
    (nothing but :data:`DEMO_FILES`); any other non-empty folder needs ``overwrite``.
    """
    out = Path(out)
    if out.is_dir() and not overwrite:
        names = {p.name for p in out.iterdir()}
        if names and (not names <= DEMO_FILES or "summary.json" not in names):
            raise InputError(
                f"{out}: folder exists and holds files that are not an earlier demo's output; "
                "pass {overwrite} to replace it, or choose another {out}",
                params=["overwrite", "out"],
            )
    return check_output_dir(out, overwrite=True)


def run_demo(
    out_dir: str | os.PathLike = "demo_out",
    *,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    **build_overrides: Any,
) -> dict[str, Any]:
    """Build, solve, evaluate; write ``DIR/{train,test}.jsonl``, ``DIR/pred_<run>.jsonl``,
    ``DIR/summary.json`` and ``DIR/summary.md``; return the summary dict.

    ``build_overrides`` go to :func:`cello1.data.build_puzzles` (e.g. ``n_min=3, n_max=5``
    for a quicker, easier run). ``DIR`` must be new, empty or an earlier demo's output
    (which is replaced); ``overwrite`` replaces any folder. Everything is written to a
    temporary folder first, so an error leaves ``DIR`` as it was.
    """
    from cello1.data import EMBEDDED_LABEL_KEY, build_puzzles, pbmc68k_reduced
    from cello1.scoring import evaluate
    from cello1.solvers.run import solve

    out = check_demo_dir(out_dir, overwrite)
    adata = pbmc68k_reduced()
    with warnings.catch_warnings():
        # the embedded data is one donor by design; the builder's warning is noise here
        warnings.filterwarnings("ignore", message=".*no 'donor_id' column")
        built = build_puzzles(adata, label_key=EMBEDDED_LABEL_KEY, seed=seed, **build_overrides)
    if not built.test or not built.train:
        raise InputError(
            f"the build gave {len(built.train)} train and {len(built.test)} test puzzles; "
            "relax the build options (e.g. a smaller n_min)"
        )
    with atomic_dir(out, overwrite=True) as tmp:
        write_puzzles(tmp / "train.jsonl", built.train)
        write_puzzles(tmp / "test.jsonl", built.test)
        runs: list[DemoRun] = []
        for name, solver, assignment in RUNS:
            options: dict[str, Any] = {"assignment": assignment}
            if solver == "reference":
                options["train"] = built.train
            if solver == "random":
                options["seed"] = seed
            path = tmp / f"pred_{name}.jsonl"
            records = solve(built.test, solver, out=path, progress=progress, **options)
            runs.append(DemoRun(name, solver, assignment, evaluate(records), out / path.name))
        summary = _summary(adata, built, runs)
        with atomic_path(tmp / "summary.json") as target:
            target.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        with atomic_path(tmp / "summary.md") as target:
            target.write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def _summary(adata: Any, built: Any, runs: list[DemoRun]) -> dict[str, Any]:
    """The demo summary: data, each run's metrics and the label → Cell Ontology mapping."""
    from cello1.data import EMBEDDED_LABEL_KEY
    from cello1.knowledge import map_labels

    labels = sorted({label for p in built.train + built.test for label in (p.answer or [])})
    mapping = {label: m.to_dict() for label, m in map_labels(labels).items()}
    summary = {
        "data": {
            "source": "pbmc68k_reduced (scanpy, 10x Genomics Fresh 68k PBMCs, Zheng et al. 2017)",
            "label_key": EMBEDDED_LABEL_KEY,
            "cells": int(adata.n_obs),
            "train_puzzles": len(built.train),
            "test_puzzles": len(built.test),
            "n_range": [min(p.n for p in built.test), max(p.n for p in built.test)],
            "leakage": _jsonable(built.leakage),
        },
        "results": {
            r.name: {"solver": r.solver, "assignment": r.assignment, **_jsonable(r.metrics.to_dict())} for r in runs
        },
        "label_mapping": mapping,
    }
    return summary


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays → Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{100 * value:.1f}"


def _ci(metrics: dict[str, Any], key: str) -> str:
    """A metric (in %) with its 95% bootstrap interval when the evaluator gives one."""
    ci = (metrics.get("ci") or {}).get(key)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{_pct(metrics.get(key))} ({_pct(ci[0])}–{_pct(ci[1])})"
    return _pct(metrics.get(key))


def results_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the demo's accuracy table, one per run."""
    rows = []
    for m in summary["results"].values():
        rows.append(
            [
                m["solver"],
                m["assignment"],
                _ci(m, "cell_accuracy"),
                _ci(m, "batch_accuracy"),
                _pct(m.get("format_rate")),
                _pct(m.get("uniqueness")),
            ]
        )
    return rows


RESULT_HEADER = ["solver", "assignment", "cell acc. % (95% CI)", "batch acc. % (95% CI)", "format %", "unique %"]
MAPPING_HEADER = ["label", "Cell Ontology term", "matched by", "markers"]


def mapping_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the label → Cell Ontology mapping table, one per label."""
    rows = []
    for label, m in summary["label_mapping"].items():
        term = f"{m['term_name']} ({m['term_id']})" if m["term_id"] else "unmapped"
        if m["marker_term_id"] is None:
            markers = "none (neutral scores)"
        elif m["marker_term_id"] == m["term_id"]:
            markers = f"{m['n_markers']} genes"
        else:
            markers = f"{m['n_markers']} genes of ancestor {m['marker_term_name']}"
        rows.append([label, term, m["how"], markers])
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    """The demo summary as Markdown: data, accuracy table and label mapping table."""
    d = summary["data"]
    lines = [
        "# cello1 demo",
        "",
        f"Data: {d['source']}, label key `{d['label_key']}`, {d['cells']} cells → "
        f"{d['train_puzzles']} train / {d['test_puzzles']} test puzzles (N = {d['n_range'][0]}–{d['n_range'][1]}).",
        "",
        "## Test-split accuracy",
        "",
        _md_table(RESULT_HEADER, results_rows(summary)),
        "",
        "## Label → Cell Ontology mapping (used by the marker solver)",
        "",
        _md_table(MAPPING_HEADER, mapping_rows(summary)),
        "",
    ]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)
