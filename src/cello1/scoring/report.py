"""Presenting evaluation results: a rich table, Markdown, and an accuracy-vs-N plot."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cello1.scoring.evaluation import EvalResult, Metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def error_rows(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """Ontology-aware error analysis per input (kept apart from the strict metrics)."""
    header = ["input", "wrong cells", "ancestor", "descendant", "same term", "related %", "partial-credit acc %"]
    rows = [
        [
            r.name,
            str(e.wrong_cells),
            str(e.ancestor),
            str(e.descendant),
            str(e.same_term),
            _pct(e.related_share),
            _pct(e.partial_credit_accuracy),
        ]
        for r in results
        if (e := r.errors) is not None
    ]
    return header, rows


def confusion_rows(result: EvalResult, top: int = 10) -> tuple[list[str], list[list[str]]]:
    """The most frequent gold → predicted confusions of one input."""
    header = ["gold", "predicted", "count", "relation"]
    confusions = result.errors.confusions[:top] if result.errors else []
    return header, [[c.gold, c.predicted, str(c.count), c.relation or "–"] for c in confusions]


def report_sections(results: Sequence[EvalResult]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every table of a report as (title, header, rows), in order; empty tables left out."""
    sections = [
        ("Strict metrics, % [95% bootstrap CI]", *summary_rows(results)),
        ("By N (cells per puzzle)", *by_n_rows(results)),
    ]
    if len(results) == 1:
        sections += [(f"By {field}", *group_rows(results[0], field)) for field in ("tissue", "disease", "source")]
    sections.append(("Paired bootstrap vs the first input (percentage points)", *paired_rows(results)))
    weight = next((r.errors.partial_credit_weight for r in results if r.errors), None)
    sections.append(
        (
            f"Error analysis (Cell Ontology; partial credit {weight} for an ancestor/descendant; "
            "not in the strict metrics)",
            *error_rows(results),
        )
    )
    sections += [(f"Most frequent confusions: {r.name}", *confusion_rows(r)) for r in results]
    return [(title, header, rows) for title, header, rows in sections if rows]


def print_report(results: Sequence[EvalResult], console: Any = None) -> None:
    """Rich tables on the terminal (the summary transposed for narrow terminals)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    sections = report_sections(results)
    sections[0] = (sections[0][0], *transposed_summary(results))
    for title, header, rows in sections:
        table = Table(title=title, title_justify="left")
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


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
    ]
    for title, header, rows in report_sections(results):
        parts += ["", f"### {title}", "", _md_table(header, rows)]
    return "\n".join(parts) + "\n"


def accuracy_by_n_figure(results: Sequence[EvalResult]) -> Figure:
    """Cell- and batch-level accuracy vs N, one line per input, 95% CI as error bars.

    Uses matplotlib's object API with the Agg canvas, so a notebook's backend is left alone.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure((10, 4))
    axes = fig.subplots(1, 2, sharex=True)
    for r in results:
        groups = _groups(r, "n")
        ns = sorted(groups, key=int)
        for ax, key in zip(axes, ("cell_accuracy", "batch_accuracy"), strict=True):
            ys = [getattr(groups[n], key) for n in ns]
            ax.errorbar([int(n) for n in ns], ys, yerr=_errors(groups, ns, key), marker="o", capsize=3, label=r.name)
    for ax, title in zip(axes, ("Cell-level accuracy", "Batch-level accuracy"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("N (cells per puzzle)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (95% bootstrap CI)")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(fig, axes[0])
    return fig


def accuracy_by_group_figure(results: Sequence[EvalResult], group: str = "tissue") -> Figure | None:
    """Cell-level accuracy per value of ``group`` (bars, one colour per input); None without data."""
    keys = sorted({k for r in results for k in _groups(r, group)})
    if not keys:
        return None
    fig = _figure((max(6.0, 0.9 * len(keys) * max(1, len(results)) + 2), 4))
    ax = fig.subplots()
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        groups = _groups(r, group)
        xs = [k + i * width for k in range(len(keys))]
        ys = [groups[k].cell_accuracy if k in groups else float("nan") for k in keys]
        ax.bar(xs, ys, width=width, yerr=_errors(groups, keys, "cell_accuracy"), capsize=2, label=r.name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys, rotation=30, ha="right", fontsize="small")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("cell-level accuracy (95% CI)")
    ax.set_title(f"Cell-level accuracy by {group}")
    ax.grid(alpha=0.3, axis="y")
    _legend_below(fig, ax)
    return fig


def plot_accuracy_by_n(results: Sequence[EvalResult], path: str | os.PathLike) -> None:
    """Save :func:`accuracy_by_n_figure` in the format the file name asks for (.png, .pdf, .svg)."""
    from cello1.io import atomic_path

    fig = accuracy_by_n_figure(results)
    suffix = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=120)


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _errors(groups: dict[str, Metrics], keys: Sequence[str], metric: str) -> list[list[float]] | None:
    """Asymmetric error bars from the groups' CIs (None when any is missing)."""
    cis = [(groups[k].ci or {}).get(metric) if k in groups else None for k in keys]
    if any(ci is None for ci in cis):
        return None
    values = [getattr(groups[k], metric) for k in keys]
    return [
        [v - ci[0] for v, ci in zip(values, cis, strict=True)],
        [ci[1] - v for v, ci in zip(values, cis, strict=True)],
    ]


def _legend_below(fig: Figure, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4) or 1, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))


def html_report(results: Sequence[EvalResult], command: str | None = None) -> str:
    """The evaluation as one self-contained HTML page: every table of :func:`report_sections`
    and the accuracy-by-N and accuracy-by-tissue plots, several inputs side by side.
    """
    from cello1 import html

    sections = ['<p class="note">Strict metrics as in the Cell-o1 paper; error analysis kept apart.</p>']
    sections.append("<h2>Accuracy by N</h2>" + html.figure(accuracy_by_n_figure(results), "accuracy by N"))
    by_tissue = accuracy_by_group_figure(results, "tissue")
    if by_tissue is not None:
        sections.append("<h2>Accuracy by tissue</h2>" + html.figure(by_tissue, "accuracy by tissue"))
    sections += [
        f"<h2>{html.escape(title)}</h2>" + html.table(header, rows) for title, header, rows in report_sections(results)
    ]
    return html.page("cello1 evaluation: " + ", ".join(r.name for r in results), sections, command)


def write_html_report(results: Sequence[EvalResult], path: str | os.PathLike, command: str | None = None) -> None:
    """Write :func:`html_report` to ``path`` atomically."""
    from cello1.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(html_report(results, command), encoding="utf-8")
