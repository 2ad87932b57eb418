"""The batch-level reward (spec §5) and its variants.

``batch_reward(completion, gold)`` — the paper's reward:

* −1 if the strict format check fails, if the number of predicted labels (split on
  ``|``, stripped, empties dropped) differs from N, or if a label repeats;
* else (cell accuracy + exact match) / 2, comparing position by position,
  case-insensitively, after stripping. Range: {−1} ∪ [0, 1].

Repeats are judged **case-insensitively** (``"T cell | t cell"`` is a repeat). The
released code used a case-sensitive ``set``; we deliberately differ because the
comparison with the gold is case-insensitive, so two casings of one label name the
same type — and at most one of them can be right. The two definitions only disagree
on completions that repeat a label in two casings.

Variants (``variant=``):

* ``"paper"`` (default) — as above;
* ``"exact_match"`` — −1 when invalid (as above), else 1 if every cell is right, else 0
  (the alternative left as a comment in the released code);
* ``"cell_accuracy"`` — −1 when invalid, else the share of right cells;
* ``"format"`` — 1 if the strict format check passes, else 0 (a separate shaping term
  to add next to an accuracy reward).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cello1.scoring.parse import gold_labels, is_valid_format, split_labels, strict_answer

INVALID = -1.0


def _labels_or_none(completion: str, n_gold: int) -> list[str] | None:
    """Lower-cased predicted labels of a well-formed answer (strict format, N labels,
    no repeats), else None."""
    answer = strict_answer(completion)
    if answer is None:
        return None
    labels = split_labels(answer.lower())
    if len(labels) != n_gold or len(set(labels)) != n_gold:
        return None
    return labels


def _n_correct(pred: list[str], gold: tuple[str, ...]) -> int:
    return sum(map(str.__eq__, pred, gold))


@functools.lru_cache(maxsize=16384)
def _gold_key(gold: str) -> tuple[str, ...]:
    # GRPO scores several rollouts per prompt against one gold string: cache its parse.
    return tuple(gold_labels(gold.lower()))


@functools.lru_cache(maxsize=16384)
def _gold_key_seq(gold: tuple) -> tuple[str, ...]:
    return tuple(label.lower() for label in gold_labels(gold))


def _paper(completion: str, gold: tuple[str, ...]) -> float:
    pred = _labels_or_none(completion, len(gold))
    if pred is None:
        return INVALID
    correct = _n_correct(pred, gold)
    return (correct / len(gold) + (correct == len(gold))) / 2


def _exact_match(completion: str, gold: tuple[str, ...]) -> float:
    pred = _labels_or_none(completion, len(gold))
    if pred is None:
        return INVALID
    return float(_n_correct(pred, gold) == len(gold))


def _cell_accuracy(completion: str, gold: tuple[str, ...]) -> float:
    pred = _labels_or_none(completion, len(gold))
    if pred is None:
        return INVALID
    return _n_correct(pred, gold) / len(gold)


def _format(completion: str, gold: tuple[str, ...]) -> float:
    return float(is_valid_format(completion))


VARIANTS: dict[str, Callable[[str, tuple[str, ...]], float]] = {
    "paper": _paper,
    "exact_match": _exact_match,
    "cell_accuracy": _cell_accuracy,
    "format": _format,
}


def check_variant(variant: str) -> Callable[[str, tuple[str, ...]], float]:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown reward variant {variant!r}; choose one of: {', '.join(VARIANTS)}") from None


def batch_reward(completion: str, gold: str | list[str], variant: str = "paper") -> float:
    """Reward of one completion against the gold (``"A | B | C"`` or a list of labels).

    Never raises on the completion: anything that is not a well-formed answer scores −1
    (0 for the ``format`` variant). An empty gold scores −1 like the released code.
    """
    score = check_variant(variant)
    if isinstance(gold, str):
        gold_list = _gold_key(gold)
    else:
        try:
            gold_list = _gold_key_seq(tuple(gold))
        except TypeError:  # unhashable items: parse without the cache
            gold_list = tuple(label.lower() for label in gold_labels(gold))
    if not gold_list and variant != "format":
        return INVALID
    if not isinstance(completion, str):
        return INVALID if variant != "format" else 0.0
    return float(score(completion, gold_list))


def batch_rewards(completions: list[str], golds: list[str | list[str]], variant: str = "paper") -> list[float]:
    """:func:`batch_reward` over parallel lists."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers; they must pair up")
    return [batch_reward(c, g, variant) for c, g in zip(completions, golds)]
