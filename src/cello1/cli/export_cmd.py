"""``cello1 export verl PUZZLES… -o DIR``: a thin layer over :func:`cello1.training.verl.export_verl`."""

from __future__ import annotations

from pathlib import Path

import typer

from cello1.cli._common import cli_errors, config_option, prompt_layout_option
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT
from cello1.training.verl import VerlRunSettings

app = typer.Typer(help="Export puzzles to other frameworks.", no_args_is_help=True)


@app.command("verl")
@cli_errors
def verl(
    puzzles: list[str] = typer.Argument(
        ..., help="Puzzle files (train/test by name), a folder holding them, or hub references hf://datasets/…:SPLIT."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    prompt_layout: str | None = prompt_layout_option(),
    model: str = config_option(VerlRunSettings, "model", "--model"),
    n_gpus_per_node: int = config_option(VerlRunSettings, "n_gpus_per_node", "--n-gpus"),
    nnodes: int = config_option(VerlRunSettings, "nnodes", "--nnodes"),
) -> None:
    """Write verl Parquet files (data_source, prompt, ability, reward_model, extra_info), the
    reward shim and a ready GRPO launch script (the paper's settings).
    """
    from cello1.training.verl import export_verl

    result = export_verl(
        puzzles,
        out,
        prompt_layout or DEFAULT_PROMPT_LAYOUT,
        VerlRunSettings(model=model, n_gpus_per_node=n_gpus_per_node, nnodes=nnodes),
    )
    for split, path in result.files.items():
        typer.echo(f"{split}: {result.counts[split]} rows -> {path}")
    typer.echo(
        f"reward: custom_reward_function.path={result.reward_path.resolve()} custom_reward_function.name=compute_score"
    )
    typer.echo(f"run: bash {result.script}")
