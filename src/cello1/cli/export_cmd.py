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
    verl_version: str = config_option(VerlRunSettings, "verl_version", "--verl-version"),
) -> None:
    """Write verl Parquet files (data_source, prompt, ability, reward_model, extra_info), the
    reward shim and a ready GRPO launch script (the paper's settings).
    """
    from cello1.training.verl import export_verl

    result = export_verl(
        puzzles,
        out,
        prompt_layout or DEFAULT_PROMPT_LAYOUT,
        VerlRunSettings(model=model, n_gpus_per_node=n_gpus_per_node, nnodes=nnodes, verl_version=verl_version),
    )
    for split, path in result.files.items():
        typer.echo(f"{split}: {result.counts[split]} rows -> {path}")
    layout = f"verl {result.verl_version}" if result.verl_version else "no verl installed here: newest layout"
    typer.echo(
        f"reward: {result.reward_key}.path={result.reward_path.resolve()} "
        f"{result.reward_key}.name=compute_score ({layout}; --verl-version to choose)"
    )
    typer.echo(f"run: bash {result.script}")
