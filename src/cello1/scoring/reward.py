"""The batch-level reward and its variants (``docs/format.md``).

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

from cello1.errors import InputError
from cello1.grammar import is_valid_format, parse_gold, split_labels, strict_answer

INVALID = -1.0


def judge(completion: str, gold: tuple[str, ...]) -> tuple[list[str] | None, int]:
    """The one reading of a completion against lower-cased gold labels.

    Returns the lower-cased predicted labels (``None`` when the strict format check
    fails) and how many positions equal the gold one. Every reward variant and every
    metric is computed from these two values.
    """
    answer = strict_answer(completion)
    if answer is None:
        return None, 0
    labels = split_labels(answer.lower())
    return labels, sum(map(str.__eq__, labels, gold))


def well_formed(labels: list[str] | None, n: int) -> bool:
    """A strictly valid answer with exactly ``n`` labels and no repeat."""
    return labels is not None and len(labels) == n and len(set(labels)) == n


def paper_reward(labels: list[str] | None, correct: int, n: int) -> float:
    """−1 unless :func:`well_formed`, else (cell accuracy + exact match) / 2."""
    if not well_formed(labels, n):
        return INVALID
    return (correct / n + (correct == n)) / 2


@functools.lru_cache(maxsize=16384)
def _gold_key(gold: str) -> tuple[str, ...]:
    # GRPO scores several rollouts per prompt against one gold string: cache its parse.
    return tuple(parse_gold(gold.lower()))


@functools.lru_cache(maxsize=16384)
def _gold_key_seq(gold: tuple) -> tuple[str, ...]:
    return tuple(label.lower() for label in parse_gold(gold))


def _paper(completion: str, gold: tuple[str, ...]) -> float:
    return paper_reward(*judge(completion, gold), len(gold))


def _exact_match(completion: str, gold: tuple[str, ...]) -> float:
    labels, correct = judge(completion, gold)
    return float(correct == len(gold)) if well_formed(labels, len(gold)) else INVALID


def _cell_accuracy(completion: str, gold: tuple[str, ...]) -> float:
    labels, correct = judge(completion, gold)
    return correct / len(gold) if well_formed(labels, len(gold)) else INVALID


def _format(completion: str, gold: tuple[str, ...]) -> float:
    return float(is_valid_format(completion))


VARIANTS: dict[str, Callable[[str, tuple[str, ...]], float]] = {
    "paper": _paper,
    "exact_match": _exact_match,
    "cell_accuracy": _cell_accuracy,
    "format": _format,
}


def check_variant(variant: str) -> Callable[[str, tuple[str, ...]], float]:
    """The scoring function of a reward variant; raises :class:`~cello1.errors.InputError` if unknown."""
    try:
        return VARIANTS[variant]
    except KeyError:
        raise InputError(f"unknown reward variant {variant!r}; choose one of: {', '.join(VARIANTS)}") from None


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
            gold_list = tuple(label.lower() for label in parse_gold(gold))
    if not gold_list and variant != "format":
        return INVALID
    if not isinstance(completion, str):
        return INVALID if variant != "format" else 0.0
    return float(score(completion, gold_list))


def batch_rewards(completions: list[str], golds: list[str | list[str]], variant: str = "paper") -> list[float]:
    """:func:`batch_reward` over parallel lists."""
    if len(completions) != len(golds):
        raise InputError(f"{len(completions)} completions but {len(golds)} gold answers; they must pair up")
    return [batch_reward(c, g, variant) for c, g in zip(completions, golds, strict=True)]
