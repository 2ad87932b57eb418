"""Scoring: the reward (with TRL and verl adapters), the paper's metrics and evaluation.

Pure Python (numpy only for the statistics); importing this package never imports
torch or transformers, so RL reward workers can use it cheaply.

    from cello1.scoring import batch_reward, trl_reward, evaluate
    batch_reward("<think>…</think>\\n<answer>B cell | T cell</answer>", "B cell | T cell")  # 1.0
"""

from __future__ import annotations

from cello1._lazy import lazy_getattr
from cello1.grammar import extract_answer, is_valid_format, parse_gold, parse_prediction, split_labels
from cello1.scoring.reward import VARIANTS, batch_reward, batch_rewards
from cello1.scoring.trl import completion_text, make_reward, trl_reward

# Heavier parts (numpy statistics, file reading) load on first use.
_LAZY = {
    "evaluate": "cello1.scoring.evaluation",
    "compare": "cello1.scoring.evaluation",
    "load_predictions": "cello1.scoring.evaluation",
    "bootstrap_ci": "cello1.scoring.bootstrap",
    "paired_bootstrap": "cello1.scoring.bootstrap",
    "lenient_score": "cello1.scoring.lenient",
    "compute_score": "cello1.scoring.verl",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "VARIANTS",
    "batch_reward",
    "batch_rewards",
    "completion_text",
    "extract_answer",
    "parse_gold",
    "is_valid_format",
    "make_reward",
    "parse_prediction",
    "split_labels",
    "trl_reward",
    *_LAZY,
]
