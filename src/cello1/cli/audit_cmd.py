"""``cello1 audit TRAIN TEST [-o DIR]``: a thin layer over :func:`cello1.data.audit.audit`."""

from __future__ import annotations

from pathlib import Path

import typer

from cello1.cli._common import cli_errors, command_line


@cli_errors
def audit(
    ctx: typer.Context,
    train: str = typer.Argument(..., help="Train puzzles (file, folder or hub reference)."),
    test: str = typer.Argument(..., help="Test puzzles to audit against the train set."),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Folder for audit.json, test_clean.jsonl and README.md (default: print only)."
    ),
    near_threshold: float | None = typer.Option(
        None, "--near-duplicates", help="Also count near-duplicate cells: Jaccard of top genes >= this (e.g. 0.8)."
    ),
    near_top_k: int = typer.Option(20, "--near-top-k", help="Top genes per cell compared for near-duplicates."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Audit a split for leakage: test puzzles holding a cell whose ranked gene list occurs in train."""
    from cello1.data.audit import audit as run_audit
    from cello1.data.audit import write_audit
    from cello1.io import check_output_dir, read_puzzles

    if out is not None:
        check_output_dir(out, overwrite)  # before reading possibly large inputs
    train_puzzles, test_puzzles = read_puzzles(train), read_puzzles(test)
    result = run_audit(train_puzzles, test_puzzles, near_threshold=near_threshold, near_top_k=near_top_k)
    typer.echo(
        f"{result.leaked_puzzles} of {result.test_puzzles} test puzzles ({100 * result.leaked_share:.1f}%) hold a cell "
        f"seen in train; {len(result.clean)} clean; {result.repeated_test_cells} cells repeat across test puzzles"
    )
    if result.near_duplicate:
        nd = result.near_duplicate
        typer.echo(
            f"with near-duplicates (Jaccard >= {nd['threshold']} on the top {nd['top_k']} genes): "
            f"{nd['leaked_puzzles']} leaked ({100 * nd['leaked_share']:.1f}%)"
        )
    if out is not None:
        write_audit(
            result, out, train_name=str(train), test_name=str(test), command=command_line(ctx), overwrite=overwrite
        )
        typer.echo(f"wrote {out}/audit.json, {out}/test_clean.jsonl, {out}/README.md")
