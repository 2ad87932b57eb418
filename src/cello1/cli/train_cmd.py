"""``cello1 train sft|grpo``: a thin layer over :mod:`cello1.training`.

Settings come from a YAML/TOML stage config (``--config``), then the common options
below, then ``--set key=value`` overrides (any stage-config key or TRL argument). The
resolved config is saved next to the outputs. Multi-GPU/multi-node::

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml \\
        -m cello1.cli train grpo --config configs/grpo.yaml
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cello1.cli._common import cli_errors, prompt_layout_option

if TYPE_CHECKING:
    from cello1.training.config import StageConfig

app = typer.Typer(help="Train Cell-o1 models (SFT, GRPO).", no_args_is_help=True)

_CONFIG = typer.Option(
    None, "--config", "-c", help="Stage config (.yaml/.yml/.toml); see configs/sft.yaml, configs/grpo.yaml."
)
_MODEL = typer.Option(None, "--model", "-m", help="Base model: hub id, local folder or .gguf file.")
_TRAIN = typer.Option(None, "--train", help="Training puzzles (any file `cello1 build`/official data provides).")
_EVAL = typer.Option(None, "--eval", help="Held-out puzzles for periodic evaluation (cello1 eval metrics).")
_OUT = typer.Option(None, "-o", "--output-dir", help="Run folder (checkpoints, logs, final model, resolved config).")
_MODE = prompt_layout_option()
_STEPS = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimiser steps (overrides epochs).")
_LR = typer.Option(None, "--lr", help="Learning rate.")
_SET = typer.Option(None, "--set", help="Override any setting: --set key=value (repeatable), e.g. --set lora_r=64.")
_RESUME = typer.Option(
    None, "--resume/--no-resume", help="Resume from the last checkpoint in the run folder [default: auto]."
)


def build_config(stage: str, config: Path | None, options: dict[str, Any], overrides: list[str] | None) -> StageConfig:
    from cello1.training.config import load_config, parse_overrides

    values = {k: v for k, v in options.items() if v is not None}
    values.update(parse_overrides(overrides or []))
    return load_config(stage, config, values)


def preflight(config: StageConfig) -> StageConfig:
    """Read and check the puzzle files and the run folder before any model is loaded, so a
    bad input fails in a second with one line, not after minutes of loading.
    """
    from cello1.io import check_output_dir, read_puzzles

    config.check()
    read_puzzles(config.train_file)
    if config.eval_file:
        read_puzzles(config.eval_file)
    check_output_dir(config.output_dir, overwrite=True, param="output_dir")
    return config


def _options(model, train, eval_file, output_dir, prompt_layout, max_steps, lr, resume) -> dict[str, Any]:
    return {
        "model": model,
        "train_file": None if train is None else str(train),
        "eval_file": None if eval_file is None else str(eval_file),
        "output_dir": None if output_dir is None else str(output_dir),
        "prompt_layout": prompt_layout,
        "max_steps": max_steps,
        "learning_rate": lr,
        "resume_from_checkpoint": None if resume is None else ("auto" if resume else False),
    }


def _report(stage: str, result) -> None:
    typer.echo(f"{stage}: run folder {result.output_dir}")
    if result.model_dir is not None:
        typer.echo(f"{stage}: model {result.model_dir} (use: cello1 solve --solver hf --model {result.model_dir})")
    if result.heldout:
        last = result.heldout[-1]
        keys = ("step", "n_puzzles", "cell_accuracy", "batch_accuracy", "format_rate")
        typer.echo(f"{stage}: held-out {json.dumps({k: last[k] for k in keys if k in last})}")


@app.command("sft")
@cli_errors
def sft(
    config: Path | None = _CONFIG,
    model: str | None = _MODEL,
    train: str | None = _TRAIN,
    eval_file: str | None = _EVAL,
    output_dir: Path | None = _OUT,
    prompt_layout: str | None = _MODE,
    max_steps: int | None = _STEPS,
    lr: float | None = _LR,
    use_dora: bool | None = typer.Option(None, "--dora/--lora", help="DoRA instead of LoRA [default: LoRA]."),
    merge: bool | None = typer.Option(
        None, "--merge/--no-merge", help="Merge the adapter into OUTPUT/merged [default: merge]."
    ),
    resume: bool | None = _RESUME,
    set_: list[str] | None = _SET,
) -> None:
    """Cold-start SFT with LoRA/DoRA on reasoning traces (paper defaults), adapter merged at the end."""
    from cello1.training.sft import train_sft

    options = _options(model, train, eval_file, output_dir, prompt_layout, max_steps, lr, resume)
    options.update(use_dora=use_dora, merge=merge)
    _report("sft", train_sft(preflight(build_config("sft", config, options, set_))))


@app.command("grpo")
@cli_errors
def grpo(
    config: Path | None = _CONFIG,
    model: str | None = _MODEL,
    train: str | None = _TRAIN,
    eval_file: str | None = _EVAL,
    output_dir: Path | None = _OUT,
    prompt_layout: str | None = _MODE,
    max_steps: int | None = _STEPS,
    lr: float | None = _LR,
    num_generations: int | None = typer.Option(
        None, "--num-generations", min=2, help="Rollouts per prompt [default: 5]."
    ),
    use_vllm: str | None = typer.Option(None, "--use-vllm", help="auto | true | false [default: auto]."),
    resume: bool | None = _RESUME,
    set_: list[str] | None = _SET,
) -> None:
    """GRPO with the batch-level reward (paper defaults); logs reward, accuracy, format rate."""
    from cello1.training.grpo import train_grpo

    options = _options(model, train, eval_file, output_dir, prompt_layout, max_steps, lr, resume)
    options.update(num_generations=num_generations, use_vllm=use_vllm)
    _report("grpo", train_grpo(preflight(build_config("grpo", config, options, set_))))
