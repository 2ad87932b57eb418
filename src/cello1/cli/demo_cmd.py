"""``cello1 demo -o DIR``: build from the embedded data, solve with the non-LLM solvers,
evaluate side by side (a thin layer over :func:`cello1.demo.run_demo`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cello1.cli._common import cli_errors


@cli_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "-o", "--out", help="Output folder (puzzles, predictions, summary)."),
    seed: int = typer.Option(0, help="Seed for the puzzle build and the random baseline."),
    n_min: int | None = typer.Option(None, min=2, help="Smallest puzzle size (default: the builder's)."),
    n_max: int | None = typer.Option(None, min=2, help="Largest puzzle size (default: the builder's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a non-empty output folder (an earlier demo's output is always replaced)."
    ),
) -> None:
    """Build puzzles from the embedded PBMC data, solve them with random, markers and
    reference, and print accuracy side by side plus the label → Cell Ontology mapping.
    """
    from rich.console import Console

    from cello1.demo import (
        MAPPING_HEADER,
        RESULT_HEADER,
        mapping_rows,
        results_rows,
        run_demo,
    )

    overrides = {k: v for k, v in {"n_min": n_min, "n_max": n_max}.items() if v is not None}
    summary = run_demo(out, seed=seed, progress=not quiet, overwrite=overwrite, **overrides)
    console = Console()
    d = summary["data"]
    console.print(
        f"[bold]cello1 demo[/bold] — {d['source']}: {d['train_puzzles']} train / {d['test_puzzles']} test puzzles, "
        f"N = {d['n_range'][0]}–{d['n_range'][1]}"
    )
    console.print(_table("Test-split accuracy", RESULT_HEADER, results_rows(summary)))
    console.print(_table("Label → Cell Ontology term (marker solver)", MAPPING_HEADER, mapping_rows(summary)))
    console.print(f"Wrote {out}/summary.json, {out}/summary.md and {out}/pred_<solver>.jsonl")


def _table(title: str, header: list[str], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table
