"""The curves of a training run, drawn from its ``metrics.jsonl`` (``cello1 train … --plot``).

One panel per group of metrics the run logged (panels with nothing logged are left out):

* reward mean with a ±1 std band, and the reward by N (``rewards/reward_n{N}/mean``);
* the share of rollout groups whose rewards were all equal (``frac_reward_zero_std``: zero
  advantage, no gradient from that group);
* rollout cell accuracy, batch accuracy and format rate, and the held-out ones (``heldout/…``);
* KL to the reference model, completion length, training loss, token accuracy (SFT);
* the constrained sampler's ``Σ log Z`` (``--constrained``).

Uses matplotlib's Agg canvas directly (no GUI backend, no global state).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path

from cello1.errors import InputError

CURVES_PNG = "training_curves.png"

# (panel title, [(metric key or regex, legend label)])
PANELS: list[tuple[str, list[tuple[str, str]]]] = [
    ("reward (mean ± std)", [("reward", "reward"), (r"rewards/reward_n(\d+)/mean", "N={0}")]),
    ("zero-variance groups (share)", [("frac_reward_zero_std", "no reward variance")]),
    (
        "rollouts: accuracy and format",
        [
            ("rewards/cell_accuracy/mean", "cell acc."),
            ("rewards/batch_accuracy/mean", "batch acc."),
            ("rewards/format_rate/mean", "format rate"),
        ],
    ),
    (
        "held-out",
        [
            ("heldout/cell_accuracy", "cell acc."),
            ("heldout/batch_accuracy", "batch acc."),
            ("heldout/format_rate", "format rate"),
        ],
    ),
    ("KL to the reference", [("kl", "KL")]),
    ("completion length (tokens)", [("completions/mean_length", "mean")]),
    ("loss", [("loss", "train loss")]),
    ("token accuracy (SFT)", [("mean_token_accuracy", "train")]),
    (
        "constrained sampler",
        [("constrained/log_Z", "Σ log Z, choice tokens"), ("constrained/forced_token_share", "forced share")],
    ),
]


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The numeric entries of a ``metrics.jsonl`` (non-finite values dropped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        rows.append({k: float(v) for k, v in entry.items() if _finite(v)})
    return rows


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(rows: list[dict[str, float]], pattern: str, label: str) -> dict[str, tuple[list[float], list[float]]]:
    """``{legend label: (steps, values)}`` of every key that matches ``pattern`` fully."""
    out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    regex = re.compile(pattern)
    for row in rows:
        for key, value in row.items():
            match = regex.fullmatch(key)
            if match and "step" in row:
                steps, values = out[label.format(*match.groups())]
                steps.append(row["step"])
                values.append(value)
    return dict(sorted(out.items(), key=lambda kv: _natural(kv[0])))


def _natural(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def plot_metrics(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, title: str | None = None) -> Path:
    """Draw the run's curves into ``out`` (default ``{run_dir}/training_curves.png``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cello1.io import atomic_path

    run = Path(run_dir)
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        raise InputError(f"{run}: no metrics.jsonl to plot; is this a cello1 training run folder?")
    rows = read_metrics(metrics)
    panels = [(name, [series(rows, key, label) for key, label in keys]) for name, keys in PANELS]
    panels = [(name, groups) for name, groups in panels if any(groups)]
    if not panels:
        raise InputError(f"{metrics}: no metric to plot yet")
    cols = min(3, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows_n), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (name, groups) in enumerate(panels, start=1):
        ax = fig.add_subplot(rows_n, cols, i)
        for group in groups:
            for label, (steps, values) in group.items():
                ax.plot(steps, values, marker="." if len(steps) < 60 else None, label=label)
        if name.startswith("reward"):
            _std_band(ax, rows)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if sum(len(g) for g in groups) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title or str(run.name), fontsize=10)
    target = Path(out) if out is not None else run / CURVES_PNG
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return target


def _std_band(ax, rows: list[dict[str, float]]) -> None:
    points = [(r["step"], r["reward"], r["reward_std"]) for r in rows if {"step", "reward", "reward_std"} <= set(r)]
    if points:
        steps = [p[0] for p in points]
        ax.fill_between(steps, [m - s for _, m, s in points], [m + s for _, m, s in points], alpha=0.15)


__all__ = ["CURVES_PNG", "PANELS", "plot_metrics", "read_metrics", "series"]
