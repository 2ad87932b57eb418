"""Rewards per second on one core (best of --repeats; CPU time and wall time) for realistic Cell-o1 completions.

Completions: 1–3 KB of reasoning (gene-evidence sentences, as a reasoning model writes
them) + an N = 8–15 answer. Mix: 60% valid permutations (partly wrong), 15% wrong
count, 10% repeated label, 15% format failures (missing tags, CRLF, text after the
answer). Compared with a direct transcription of docs/format.md §5 (regex + splitlines), i.e.
what the released code does.

    python benchmarks/bench_reward.py [--completions 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time

from cello1.scoring import batch_reward, evaluate, is_valid_format, trl_reward
from cello1.scoring.reward import _gold_key

TYPES = [
    "CD14-positive monocyte",
    "CD16-positive monocyte",
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "natural killer cell",
    "naive B cell",
    "memory B cell",
    "plasmacytoid dendritic cell",
    "conventional dendritic cell",
    "regulatory T cell",
    "platelet",
    "erythrocyte",
    "hematopoietic stem cell",
    "plasma cell",
    "mast cell",
    "gamma-delta T cell",
    "mucosal invariant T cell",
    "type II pneumocyte",
    "alveolar macrophage",
    "fibroblast",
]
GENES = [
    "CD3E",
    "CD3D",
    "IL7R",
    "CCR7",
    "LEF1",
    "GNLY",
    "NKG7",
    "KLRD1",
    "MS4A1",
    "CD79A",
    "LYZ",
    "S100A8",
    "CD14",
    "FCGR3A",
    "PPBP",
    "HBB",
    "CST3",
    "FCER1A",
]


def reasoning(rng: random.Random, n: int, size: int) -> str:
    parts = []
    while sum(map(len, parts)) < size:
        cell = rng.randint(1, n)
        genes = ", ".join(rng.sample(GENES, 3))
        parts.append(f"Cell {cell} shows high {genes}, which points to {rng.choice(TYPES)}; ")
        if rng.random() < 0.2:
            parts.append("\n")
    return "".join(parts)[:size]


def make_group(rng: random.Random, rollouts: int) -> list[tuple[str, str]]:
    """GRPO-style: several rollouts for one puzzle (one gold answer)."""
    n = rng.randint(8, 15)
    gold = rng.sample(TYPES, n)
    return [make_case(rng, gold) for _ in range(rollouts)]


def make_case(rng: random.Random, gold: list[str]) -> tuple[str, str]:
    n = len(gold)
    think = reasoning(rng, n, rng.randint(1000, 3000))
    pred = gold[:]
    for _ in range(rng.randint(0, 3)):  # a few swaps: partly wrong
        i, j = rng.randrange(n), rng.randrange(n)
        pred[i], pred[j] = pred[j], pred[i]
    kind = rng.random()
    if kind < 0.15:
        pred = pred[:-1]  # wrong count
    elif kind < 0.25:
        pred[0] = pred[1]  # repeat
    text = f"<think>{think}</think>\n<answer>{' | '.join(pred)}</answer>"
    if kind > 0.85:  # format failures of several kinds
        text = rng.choice([text.replace("<think>", ""), text.replace("\n<answer>", "\r\n<answer>"), text + " Done."])
    return text, " | ".join(gold)


SPEC_RE = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)


def spec_reward(text: str, gold: str) -> float:
    """Direct transcription of docs/format.md §5, for comparison."""
    lines = text.splitlines()
    answer = ""
    for line in lines:
        if "<answer>" in line:
            answer = line.split("<answer>", 1)[1].strip()
            if answer.endswith("</answer>"):
                answer = answer.replace("</answer>", "").strip()
            break
    if not answer:
        answer = next((line.strip() for line in lines if "|" in line), "")
    if any(text.count(t) != 1 for t in ("<think>", "</think>", "<answer>", "</answer>")):
        return -1.0
    if not SPEC_RE.match(text) or "|" not in answer:
        return -1.0
    g = [s.strip() for s in gold.split("|") if s.strip()]
    p = [s.strip() for s in answer.split("|") if s.strip()]
    if len(p) != len(g) or len(set(p)) != len(p):
        return -1.0
    c = sum(a.lower() == b.lower() for a, b in zip(p, g, strict=True))
    return (c / len(g) + (c == len(g))) / 2


def cold_reward(text: str, gold: str) -> float:
    _gold_key.cache_clear()  # every call parses its gold afresh (no GRPO-group reuse)
    return batch_reward(text, gold)


def rate(fn, repeats: int, count: int) -> tuple[float, float]:
    """Items per CPU-second (process time, robust to other jobs on a shared machine) and
    items per wall-clock second, best of ``repeats``."""
    cpu_rates, wall_rates = [], []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        cpu_rates.append(count / (time.process_time() - cpu))
        wall_rates.append(count / (time.perf_counter() - wall))
    return max(cpu_rates), max(wall_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=5, help="completions per gold answer (GRPO group size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = random.Random(args.seed)
    cases = [c for _ in range(args.completions // args.rollouts) for c in make_group(rng, args.rollouts)]
    texts, golds = zip(*cases, strict=True)
    mean_kb = sum(map(len, texts)) / len(texts) / 1024
    n = len(cases)
    ours = [batch_reward(t, g) for t, g in cases]
    assert ours == [spec_reward(t, g) for t, g in cases], "implementation and spec transcription disagree"
    valid = sum(map(is_valid_format, texts)) / n
    invalid = sum(r == -1 for r in ours) / n

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs visible, pinned to 1 core"
    )
    print(
        f"{n} completions ({args.rollouts} per gold answer), mean {mean_kb:.2f} KB, N = 8–15, "
        f"strict-valid {valid:.0%}, reward −1 for {invalid:.0%}"
    )
    gold_lists = [g.split(" | ") for g in golds]
    rows = [
        ("batch_reward (paper)", lambda: [batch_reward(t, g) for t, g in cases]),
        ("batch_reward (exact_match)", lambda: [batch_reward(t, g, "exact_match") for t, g in cases]),
        ("batch_reward, gold as a list", lambda: [batch_reward(t, g) for t, g in zip(texts, gold_lists, strict=True)]),
        ("batch_reward, gold parse cache cleared per call", lambda: [cold_reward(t, g) for t, g in cases]),
        (
            "trl_reward, batches of 64",
            lambda: [trl_reward(None, texts[i : i + 64], answer=golds[i : i + 64]) for i in range(0, n, 64)],
        ),
        ("is_valid_format", lambda: [is_valid_format(t) for t in texts]),
        ("spec transcription (regex + splitlines)", lambda: [spec_reward(t, g) for t, g in cases]),
    ]
    print(f"| {'function':46} | per CPU-second | per wall second |")
    print(f"|{'-' * 48}|---:|---:|")
    for name, fn in rows:
        cpu, wall = rate(fn, args.repeats, n)
        print(f"| {name:46} | {cpu:,.0f} | {wall:,.0f} |")
    records = [{"id": str(i), "answer": g, "prediction": t} for i, (t, g) in enumerate(cases)]
    cpu, wall = rate(lambda: evaluate(records, bootstrap=1000), 1, n)
    print(
        f"evaluate() incl. 1000-resample bootstrap CIs and breakdown by N: {cpu:,.0f} records per CPU-second, "
        f"{wall:,.0f} per wall second"
    )


if __name__ == "__main__":
    sys.exit(main())
