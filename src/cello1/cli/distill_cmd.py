"""``cello1 distill PUZZLES --solver NAME -o SFT.jsonl --k K``: a thin layer over
:func:`cello1.training.distill.distill`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cello1.cli._common import cli_errors, given_options, prompt_layout_option


@cli_errors
def distill(
    puzzles: str = typer.Argument(..., help="Labelled puzzles: file, folder or hf://datasets/OWNER/NAME:SPLIT."),
    out: Path = typer.Option(
        ..., "-o", "--out", help="SFT records (official format with <think>…</think>\\n<answer>…</answer>)."
    ),
    solver: str = typer.Option(
        "markers", "--solver", "-s", help="Teacher: any solver (markers | reference | hf | openai | vllm | gguf …)."
    ),
    k: int = typer.Option(
        1, "--k", min=1, help="Traces asked per puzzle (sampling teachers; deterministic ones need 1)."
    ),
    model: str | None = typer.Option(None, help="Teacher model (LLM solvers)."),
    prompt_layout: str | None = prompt_layout_option(),
    temperature: float | None = typer.Option(None, help="Teacher sampling temperature (LLM solvers)."),
    max_new_tokens: int | None = typer.Option(None, help="Teacher generation budget (LLM solvers)."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint (openai solver)."),
    concurrency: int | None = typer.Option(None, min=1, help="Parallel requests (openai solver)."),
    max_retries: int | None = typer.Option(None, min=0, help="Retries on 429/5xx/time-outs (openai solver)."),
    allow_insecure_key: bool = typer.Option(
        False, "--allow-insecure-key", help="openai: send the API key even over plain http to a non-local server."
    ),
    train: str | None = typer.Option(None, help="reference solver: its training puzzles (file or hub reference)."),
    seed: int | None = typer.Option(None, help="Teacher random seed."),
    min_confidence: float | None = typer.Option(
        None,
        help="Keep only traces whose every cell has at least this confidence "
        "(teachers that write confidence: markers, reference, ensemble).",
    ),
    limit: int | None = typer.Option(None, min=0, help="Only the first K puzzles."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Distil correct teacher traces with rejection sampling (resumable); report acceptance by N."""
    from cello1.training.distill import distill as run_distill

    options = given_options(
        model=model,
        prompt_layout=prompt_layout,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        base_url=base_url,
        concurrency=concurrency,
        max_retries=max_retries,
        allow_insecure_key=True if allow_insecure_key else None,
        train=train,
        seed=seed,
    )
    report = run_distill(
        puzzles, solver, out, k=k, progress=progress, limit=limit, min_confidence=min_confidence, **options
    )
    typer.echo(f"{'N':>4} {'puzzles':>8} {'traces':>7} {'accepted':>9} {'rate':>7} {'solved':>7}")
    for row in report.table():
        typer.echo(
            f"{row['n']!s:>4} {row['puzzles']:>8} {row['traces']:>7} {row['accepted']:>9} "
            f"{row['acceptance_rate']:>7.1%} {row['puzzles_with_trace']:>7}"
        )
    typer.echo(
        f"wrote {len(report.kept)} SFT records to {out} "
        f"({report.duplicates} duplicate traces dropped"
        + (
            f", {report.low_confidence} correct but below the confidence threshold"
            if min_confidence is not None
            else ""
        )
        + f"; raw traces in {report.traces_path})"
    )
