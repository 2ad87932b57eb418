"""``cello1 build [INPUT.h5ad ...] -o DIR``: a thin layer over :func:`cello1.data.build_puzzles`
and :func:`cello1.data.write_build`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import typer

from cello1.cli._common import cli_errors, command_line, config_option, was_set
from cello1.data.config import BuildConfig

_KEYS = "Column names (CELLxGENE schema defaults)"
_PUZZLES = "Puzzles"
_SPLIT = "Train/test split"
_INPUT = "Reading the data"


@cli_errors
def build(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(
        None,
        metavar="[INPUT.h5ad ...]",
        help="AnnData .h5ad files. None: the embedded pbmc68k_reduced (labels in bulk_labels).",
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="Output folder (train/test .jsonl + .parquet, leakage.json, README.md)."
    ),
    label_key: str | None = typer.Option(
        None,
        help="obs column with the cell type (default: cell_type; bulk_labels for the embedded data).",
        rich_help_panel=_KEYS,
    ),
    donor_key: str = config_option(BuildConfig, "donor_key", rich_help_panel=_KEYS),
    gene_key: str = config_option(BuildConfig, "gene_key", rich_help_panel=_KEYS),
    batch_key: str = config_option(BuildConfig, "batch_key", rich_help_panel=_KEYS),
    suspension_key: str = config_option(BuildConfig, "suspension_key", rich_help_panel=_KEYS),
    suspension_type: str = config_option(BuildConfig, "suspension_type", rich_help_panel=_INPUT),
    query: str | None = config_option(BuildConfig, "query", rich_help_panel=_INPUT),
    tissue: str | None = config_option(BuildConfig, "tissue", rich_help_panel=_INPUT),
    donor: str | None = config_option(BuildConfig, "donor", rich_help_panel=_INPUT),
    max_cells: int = config_option(BuildConfig, "max_cells", rich_help_panel=_INPUT),
    top_k: int = config_option(BuildConfig, "top_k", rich_help_panel=_INPUT),
    keep_ensembl_suffix: bool = typer.Option(
        False,
        "--keep-ensembl-suffix",
        help="Keep 'CSF2RA_ENSG00000198223' as is (default strips to 'CSF2RA').",
        rich_help_panel=_INPUT,
    ),
    backed: bool = config_option(BuildConfig, "backed", "--backed", rich_help_panel=_INPUT),
    chunk_size: int = config_option(BuildConfig, "chunk_size", rich_help_panel=_INPUT),
    topk_engine: str = config_option(BuildConfig, "topk_engine", rich_help_panel=_INPUT),
    n_min: int = config_option(BuildConfig, "n_min", rich_help_panel=_PUZZLES),
    n_max: int = config_option(BuildConfig, "n_max", rich_help_panel=_PUZZLES),
    puzzles_per_n: int = config_option(BuildConfig, "puzzles_per_n", rich_help_panel=_PUZZLES),
    seed: int = config_option(BuildConfig, "seed", rich_help_panel=_PUZZLES),
    split: str = config_option(BuildConfig, "split", rich_help_panel=_SPLIT),
    test_fraction: float = config_option(BuildConfig, "test_fraction", rich_help_panel=_SPLIT),
    max_test: int = config_option(BuildConfig, "max_test", rich_help_panel=_SPLIT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build CellPuzzles (train/test) from annotated AnnData files, leakage-free by default."""
    from cello1.data import build_puzzles, write_build
    from cello1.io import check_output_dir

    started = time.perf_counter()
    config = BuildConfig(
        donor_key=donor_key,
        gene_key=gene_key,
        batch_key=batch_key or None,
        suspension_key=suspension_key,
        suspension_type=None if suspension_type.lower() in {"any", "all", ""} else suspension_type,
        query=query,
        tissue=tissue,
        donor=donor,
        top_k=top_k,
        n_min=n_min,
        n_max=n_max,
        puzzles_per_n=puzzles_per_n,
        max_cells=max_cells or None,
        seed=seed,
        split=split,
        test_fraction=test_fraction,
        max_test=max_test or None,
        strip_ensembl=not keep_ensembl_suffix,
        backed=backed,
        chunk_size=chunk_size,
        topk_engine=topk_engine,
        require_donor=was_set(ctx, "donor_key"),
        progress=progress,
    )
    if label_key is not None:
        config.label_key = label_key
    elif not inputs:
        from cello1.data import EMBEDDED_LABEL_KEY

        config.label_key = EMBEDDED_LABEL_KEY
    config.validate()
    check_output_dir(out, overwrite, inputs=inputs or [])  # fail before a possibly long build, not after it
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = build_puzzles(list(inputs) if inputs else None, config)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    write_build(result, out, command=command_line(ctx), overwrite=overwrite)
    _print_summary(result, out, time.perf_counter() - started)


def _print_summary(result: Any, out: Path, seconds: float) -> None:
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    leak = result.leakage
    table = Table(title=f"CellPuzzles build → {out}", show_lines=False)
    table.add_column("N", justify="right")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    train_n = Counter(p.n for p in result.train)
    test_n = Counter(p.n for p in result.test)
    for n in sorted(set(train_n) | set(test_n)):
        table.add_row(str(n), str(train_n.get(n, 0)), str(test_n.get(n, 0)))
    table.add_row("total", str(len(result.train)), str(len(result.test)), style="bold")
    console = Console(stderr=False)
    console.print(table)
    cells = sum(s["kept"] for s in result.sources.values())
    console.print(
        f"split [bold]{result.split}[/bold] · {cells} cells from {len(result.sources)} input(s) · "
        f"test puzzles with a train cell: {leak['test_puzzles_with_train_cell']} "
        f"({100 * leak['test_puzzles_with_train_cell_share']:.1f}%), with a train gene list: "
        f"{leak['test_puzzles_with_train_gene_list']} ({100 * leak['test_puzzles_with_train_gene_list_share']:.1f}%) · "
        f"{seconds:.1f} s"
    )
