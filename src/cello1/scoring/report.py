"""Presenting evaluation results: a rich table, Markdown, and an accuracy-vs-N plot."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from cello1.scoring.evaluation import EvalResult, Metrics

MAIN_COLUMNS = [
    ("cell_accuracy", "cell acc"),
    ("batch_accuracy", "batch acc"),
    ("format_rate", "format"),
    ("uniqueness", "unique"),
]
LENIENT_COLUMNS = [("cell_accuracy", "lenient cell"), ("batch_accuracy", "lenient batch")]


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _with_ci(result: Any, key: str) -> str:
    """``value [low, high]`` in % for a metric of a :class:`Metrics`/``LenientMetrics``."""
    ci = (result.ci or {}).get(key)
    text = _pct(getattr(result, key))
    if ci and not any(math.isnan(x) for x in ci):
        text += f" [{_pct(ci[0])}, {_pct(ci[1])}]"
    return text


def _groups(result: EvalResult, field: str) -> dict[str, Metrics]:
    return (result.by or {}).get(field, {})


def summary_rows(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table (percentages, 95% CI in brackets)."""
    header = ["input", "puzzles", *(label for _, label in MAIN_COLUMNS), f"length ({results[0].length_unit})", "reward"]
    lenient = any(r.lenient is not None for r in results)
    if lenient:
        header += [label for _, label in LENIENT_COLUMNS]
    rows = []
    for r in results:
        row = [r.name, str(r.n_puzzles)]
        row += [_with_ci(r, key) for key, _ in MAIN_COLUMNS]
        row += [f"{r.mean_length:.1f}", f"{r.mean_reward:.3f}"]
        if lenient:
            row += ["–" if r.lenient is None else _with_ci(r.lenient, key) for key, _ in LENIENT_COLUMNS]
        rows.append(row)
    return header, rows


def by_n_rows(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """One row per N; per input "cell acc / batch acc (puzzles)"."""
    ns = sorted({int(n) for r in results for n in _groups(r, "n")})
    header = ["N", *(f"{r.name}: cell / batch acc (puzzles)" for r in results)]
    rows = []
    for n in ns:
        row = [str(n)]
        for r in results:
            g = _groups(r, "n").get(str(n))
            row.append("–" if g is None else f"{_pct(g.cell_accuracy)} / {_pct(g.batch_accuracy)} ({g.n_puzzles})")
        rows.append(row)
    return header, rows


def transposed_summary(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """The summary with metrics as rows and inputs as columns (narrow terminals)."""
    header, rows = summary_rows(results)
    return ["metric", *(row[0] for row in rows)], [
        [name, *(row[i] for row in rows)] for i, name in enumerate(header) if i > 0
    ]


def group_rows(result: EvalResult, field: str) -> tuple[list[str], list[list[str]]]:
    """One row per value of ``field`` (tissue, disease, source)."""
    header = [field, "puzzles", "cell acc", "batch acc", "format"]
    rows = [
        [key, str(g.n_puzzles), _with_ci(g, "cell_accuracy"), _with_ci(g, "batch_accuracy"), _pct(g.format_rate)]
        for key, g in _groups(result, field).items()
    ]
    return header, rows


def paired_rows(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """The paired bootstrap of each input against the first."""
    header = ["input", "vs", "pairs", "Δ cell acc [95% CI] (p)", "Δ batch acc [95% CI] (p)", "Δ format (p)"]
    rows = []
    resamples = results[0].bootstrap.get("resamples") or 0
    for r in results[1:]:
        p = r.paired_vs_first
        if not p:
            continue
        cells = []
        for key in ("cell_accuracy", "batch_accuracy", "format_rate"):
            d = p.get(key)
            if d is None:
                cells.append("–")
                continue
            text = f"{100 * d['diff']:+.1f}"
            if key != "format_rate":
                text += f" [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"
            cells.append(f"{text} ({_p_value(d['p_value'], resamples)})")
        rows.append([r.name, str(p.get("baseline")), str(p.get("n_pairs")), *cells])
    return header, rows


def _p_value(p: float, resamples: int) -> str:
    # a bootstrap p-value of 0 only means "below the resolution of the resamples"
    if p == 0 and resamples:
        return f"p<{1 / resamples:.2g}"
    return f"p={p:.3f}"


def print_report(results: Sequence[EvalResult], console: Any = None) -> None:
    """Rich tables on the terminal: summary, by N, by tissue/disease/source, paired."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def show(title: str, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        table = Table(title=title, title_justify="left")
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    show("Strict metrics, % [95% bootstrap CI]", *transposed_summary(results))
    show("By N (cells per puzzle)", *by_n_rows(results))
    if len(results) == 1:
        for field in ("tissue", "disease", "source"):
            show(f"By {field}", *group_rows(results[0], field))
    show("Paired bootstrap vs the first input (percentage points)", *paired_rows(results))


def _md_escape(text: object) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(results: Sequence[EvalResult]) -> str:
    """The same tables as Markdown."""
    resamples = results[0].bootstrap.get("resamples")
    parts = [
        "## Evaluation",
        "",
        f"Strict metrics as in the Cell-o1 paper, in %; 95% bootstrap CI ({resamples} resamples) in brackets.",
        "",
        _md_table(*summary_rows(results)),
    ]
    header, rows = by_n_rows(results)
    if rows:
        parts += ["", "### By N", "", _md_table(header, rows)]
    if len(results) == 1:
        for field in ("tissue", "disease", "source"):
            header, rows = group_rows(results[0], field)
            if rows:
                parts += ["", f"### By {field}", "", _md_table(header, rows)]
    header, rows = paired_rows(results)
    if rows:
        parts += ["", "### Paired bootstrap vs the first input (percentage points)", "", _md_table(header, rows)]
    return "\n".join(parts) + "\n"


def plot_accuracy_by_n(results: Sequence[EvalResult], path: str | os.PathLike) -> None:
    """Cell- and batch-level accuracy vs N, one line per input, 95% CI as error bars.

    Uses matplotlib's object API with the Agg canvas, so a notebook's backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from cello1.io import atomic_path

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True)
    for r in results:
        groups = _groups(r, "n")
        ns = sorted(groups, key=int)
        for ax, key in zip(axes, ("cell_accuracy", "batch_accuracy"), strict=True):
            ys = [getattr(groups[n], key) for n in ns]
            cis = [(groups[n].ci or {}).get(key) for n in ns]
            if all(ci is not None for ci in cis):
                err = [
                    [y - ci[0] for y, ci in zip(ys, cis, strict=True)],
                    [ci[1] - y for y, ci in zip(ys, cis, strict=True)],
                ]
            else:
                err = None
            ax.errorbar([int(n) for n in ns], ys, yerr=err, marker="o", capsize=3, label=r.name)
    for ax, title in zip(axes, ("Cell-level accuracy", "Batch-level accuracy"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("N (cells per puzzle)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (95% bootstrap CI)")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    suffix = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=120)
