"""``cello1 solve PUZZLES -o PRED.jsonl --solver NAME [options]``: a thin layer over
:func:`cello1.solvers.run.solve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cello1.cli._common import cli_errors, given_options, prompt_layout_option
from cello1.errors import CelloError, InputError

_LLM = "LLM solvers"
_API = "openai solver"
_CLASSIC = "Non-LLM solvers"


@cli_errors
def solve(
    puzzles: str = typer.Argument(
        ..., help="Puzzles: builder/official JSON, JSONL or Parquet, a folder, or hf://datasets/OWNER/NAME:SPLIT."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Prediction JSONL (appended to; re-running resumes)."),
    solver: str = typer.Option(
        "markers",
        "--solver",
        "-s",
        help="random | markers | reference | ensemble | hf | openai | vllm | gguf | auto (the fastest installed "
        "local engine for --model: vllm, then gguf for a .gguf file, then hf)",
    ),
    model: str | None = typer.Option(
        None, help="Model: hub id, local folder, .gguf file, or API model name.", rich_help_panel=_LLM
    ),
    prompt_layout: str | None = prompt_layout_option(rich_help_panel=_LLM),
    n: int | None = typer.Option(None, "--n", min=1, help="Samples per puzzle (default 1).", rich_help_panel=_LLM),
    max_new_tokens: int | None = typer.Option(None, help="Generation budget per sample.", rich_help_panel=_LLM),
    temperature: float | None = typer.Option(None, help="0 = greedy (default for --n 1).", rich_help_panel=_LLM),
    top_p: float | None = typer.Option(None, help="Nucleus sampling (default 1 = off).", rich_help_panel=_LLM),
    top_k: int | None = typer.Option(None, min=0, help="Top-k sampling (default 0 = off).", rich_help_panel=_LLM),
    min_p: float | None = typer.Option(None, min=0, help="Min-p sampling (default 0 = off).", rich_help_panel=_LLM),
    repeat_penalty: float | None = typer.Option(
        None,
        help="Repetition penalty, every backend (default 1 = off; llama.cpp's server would use 1.1).",
        rich_help_panel=_LLM,
    ),
    batch_size: int | None = typer.Option(None, help="Puzzles per generation batch.", rich_help_panel=_LLM),
    constrained: bool = typer.Option(
        False,
        "--constrained",
        help="The answer is always strict-format and a permutation of the candidates (hf, vllm, gguf; "
        "openai: see --constrain-via).",
        rich_help_panel=_LLM,
    ),
    chat_template: str | None = typer.Option(
        None, help="hf: Jinja template (string or file) or 'plain' for tokenizers without one.", rich_help_panel=_LLM
    ),
    device: str | None = typer.Option(
        None, help="hf/vllm/gguf: cpu, cuda, cuda:1 … (default: auto).", rich_help_panel=_LLM
    ),
    dtype: str | None = typer.Option(
        None,
        help="hf/vllm: float32, bfloat16, float16 (default: auto; float32 on CPUs without bfloat16).",
        rich_help_panel=_LLM,
    ),
    threads: int | None = typer.Option(
        None, help="hf/vllm/gguf: CPU threads (default: one per idle core).", rich_help_panel=_LLM
    ),
    kv_cache_gb: float | None = typer.Option(
        None,
        help="vllm: KV-cache size in GiB (default 2 on CPU; GPU: from --gpu-memory-utilization).",
        rich_help_panel=_LLM,
    ),
    max_model_len: int | None = typer.Option(
        None, min=1, help="vllm/gguf: context length in tokens (default: the model's; gguf 8192).", rich_help_panel=_LLM
    ),
    tensor_parallel_size: int | None = typer.Option(
        None, min=1, help="vllm: GPUs to split the model over.", rich_help_panel=_LLM
    ),
    gpu_memory_utilization: float | None = typer.Option(
        None,
        help="vllm on GPU: fraction of GPU memory for weights + KV cache (vLLM's default 0.9).",
        rich_help_panel=_LLM,
    ),
    base_url: str | None = typer.Option(
        None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.", rich_help_panel=_API
    ),
    api_key_env: str | None = typer.Option(
        None, help="Environment variable holding the API key (default OPENAI_API_KEY).", rich_help_panel=_API
    ),
    concurrency: int | None = typer.Option(None, min=1, help="Parallel requests.", rich_help_panel=_API),
    extra_body: str | None = typer.Option(
        None, help="JSON object merged into every request, e.g. '{\"top_k\": 20}'.", rich_help_panel=_API
    ),
    constrain_via: str | None = typer.Option(
        None,
        help="--constrained on a server: auto (default: ask it) | structured-outputs (vllm serve; + --repair) | "
        "grammar (llama.cpp server; + --repair) | logits-processor (vllm serve --logits-processors "
        "cello1.solvers.vllm_constrained:AnswerLogitsProcessor; a permutation).",
        rich_help_panel=_API,
    ),
    reasoning_effort: str | None = typer.Option(
        None, help="Reasoning models: low | medium | high.", rich_help_panel=_API
    ),
    timeout: float | None = typer.Option(
        None, min=0.001, help="Seconds per request before a retry.", rich_help_panel=_API
    ),
    max_retries: int | None = typer.Option(None, min=0, help="Retries on 429/5xx/time-outs.", rich_help_panel=_API),
    allow_insecure_key: bool = typer.Option(
        False,
        "--allow-insecure-key",
        help="Send the API key even over plain http to a non-local server (anyone on the way can read it).",
        rich_help_panel=_API,
    ),
    seed: int | None = typer.Option(None, help="Random seed.", rich_help_panel=_CLASSIC),
    train: str | None = typer.Option(
        None, help="reference, ensemble: labelled training puzzles (file or hub reference).", rich_help_panel=_CLASSIC
    ),
    assignment: str | None = typer.Option(
        None,
        help="hungarian (default) | none; LLM solvers: generate (default) | likelihood (score every "
        "(cell, candidate) pair, then the Hungarian assignment; hf, vllm).",
        rich_help_panel=_CLASSIC,
    ),
    members: str | None = typer.Option(
        None, help="ensemble: member solvers, e.g. markers,reference (the default).", rich_help_panel=_CLASSIC
    ),
    weights: str | None = typer.Option(
        None, help="ensemble: one weight per member, e.g. 1,0.5 (default: all 1).", rich_help_panel=_CLASSIC
    ),
    specificity: bool = typer.Option(
        False,
        "--specificity",
        help="markers: weight a cell's genes by log(N/df) within the puzzle.",
        rich_help_panel=_CLASSIC,
    ),
    malignant: str | None = typer.Option(
        None,
        help="markers: 'malignant cell' profile: match (the donor's cancer, default) | mean (all cancers).",
        rich_help_panel=_CLASSIC,
    ),
    transductive: bool = typer.Option(
        False,
        "--transductive",
        help="markers, reference, ensemble: also learn from confidently solved cells of the file's other "
        "puzzles (not per-puzzle zero-shot; the records say so).",
        rich_help_panel=_CLASSIC,
    ),
    repair: bool = typer.Option(False, "--repair", help="Also record an optimal-assignment fix of invalid answers."),
    shard: str | None = typer.Option(None, help="i/n: solve only shard i of n (by id)."),
    limit: int | None = typer.Option(None, min=0, help="Only the first K puzzles."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Solve puzzles with a solver; one JSONL record per puzzle (and sample), resumable."""
    from cello1.solvers.run import solve as run_solve

    # only what the user set reaches the solver (constructors reject what they don't support)
    options = given_options(
        model=model,
        prompt_layout=prompt_layout,
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        batch_size=batch_size,
        constrained=True if constrained else None,
        chat_template=chat_template,
        device=device,
        dtype=dtype,
        threads=threads,
        kv_cache_gb=kv_cache_gb,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        extra_body=parse_json_object(extra_body, "extra_body"),
        constrain_via=constrain_via,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        reasoning_effort=reasoning_effort,
        timeout=timeout,
        max_retries=max_retries,
        allow_insecure_key=True if allow_insecure_key else None,
        seed=seed,
        train=train,
        assignment=assignment,
        members=members,
        weights=weights,
        specificity=True if specificity else None,
        malignant=malignant,
        transductive=True if transductive else None,
    )
    records = run_solve(puzzles, solver, out, shard=shard, repair=repair, progress=progress, limit=limit, **options)
    if records.nothing_succeeded:
        # e.g. no server answered: a non-zero exit stops `cello1 solve … && cello1 eval …`
        first = next(r.error for r in records if r.error is not None)
        raise CelloError(
            f"all {records.new} predictions of this run failed (first error: {first}); "
            f"they are recorded in {out} and retried when you re-run the same command"
        )
    typer.echo(_summary(records, out), err=True)


def parse_json_object(text: str | None, param: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object (``None`` stays ``None``); one-line error otherwise."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{{{param}}} is not valid JSON ({exc}): {text[:80]!r}", params=[param]) from None
    if not isinstance(value, dict):
        raise InputError(f"{{{param}}} must be a JSON object ({{...}}), not {type(value).__name__}", params=[param])
    return value


def _summary(records: Any, out: Path) -> str:
    errors = sum(r.error is not None for r in records)
    valid = sum(r.assignment is not None for r in records)
    text = f"{len(records)} predictions in {out} ({records.new} new): {valid} strict-format valid, {errors} errors"
    if errors:
        text += " (re-run the same command to retry them)"
    if records.stale:
        text += f"; {records.stale} stale predictions were redone"
    return text
