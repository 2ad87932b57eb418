"""TRL adapter: reward functions ``(prompts, completions, **columns) -> list[float]``.

TRL (``GRPOTrainer(reward_funcs=[...])``) passes every extra dataset column as a keyword
argument, so the gold answer comes from the ``answer`` column (``"A | B | C"``, one per
completion). Completions are plain strings or, for conversational datasets, lists of
message dicts (we score the last assistant message). TRL logs each function under its
``__name__``, hence the explicit names (``reward_paper``, ``reward_format`` …).

    from cello1.scoring import make_reward
    trainer = GRPOTrainer(..., reward_funcs=[make_reward("paper"), make_reward("format")],
                          reward_weights=[1.0, 0.1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cello1.errors import InputError
from cello1.scoring.reward import batch_reward, check_options

GOLD_COLUMNS = ("answer", "ground_truth", "solution")


def completion_text(completion: Any) -> str:
    """Text of a plain or conversational completion (last assistant message)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant or messages
        return _content_text(chosen[-1].get("content")) if chosen else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal-style parts: [{"type": "text", "text": ...}]
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def _gold_column(columns: dict[str, Any], n: int) -> list[Any]:
    for name in GOLD_COLUMNS:
        if columns.get(name) is not None:
            gold = list(columns[name])
            if len(gold) != n:
                raise InputError(f"reward: {n} completions but {len(gold)} values in column {name!r}")
            return gold
    raise InputError(
        "reward: no gold answer; the dataset needs an 'answer' column holding 'A | B | C' "
        f"(got columns: {', '.join(sorted(columns)) or 'none'})"
    )


def make_reward(variant: str = "paper", **options: float) -> Callable[..., list[float]]:
    """A TRL reward function for one variant (see :mod:`cello1.scoring.reward`); ``options`` are
    the variant's credits (e.g. ``make_reward("ontology", coarse_credit=0.25)``).
    """
    options = check_options(variant, options)

    def reward(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
        completions = list(completions)
        if variant == "format":
            return [batch_reward(completion_text(c), "", variant) for c in completions]
        golds = _gold_column(columns, len(completions))
        return [
            batch_reward(completion_text(c), g, variant, **options) for c, g in zip(completions, golds, strict=True)
        ]

    reward.__name__ = reward.__qualname__ = f"reward_{variant}"
    reward.__doc__ = f"Cell-o1 batch-level reward, variant {variant!r}, for TRL."
    return reward


trl_reward = make_reward("paper")

__all__ = ["completion_text", "make_reward", "trl_reward"]
