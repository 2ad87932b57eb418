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
  to add next to an accuracy reward);
* ``"shaped"`` — format shaping for cold starts: a well-formed answer scores as ``paper``
  (in [0, 1]); anything else scores in [−1, −0.5] instead of a flat −1: −1, plus
  ``think_credit`` (0.1) for a ``<think>…</think>`` block, plus ``answer_credit`` (0.1) for
  an ``<answer>`` tag, plus ``slots_credit`` (0.3) × the share of the N gold labels that the
  forgiving reading (:func:`cello1.grammar.loose_labels`) finds among the first N it reads.
  Every well-formed answer still beats every malformed one, but a group of malformed
  rollouts is no longer flat, so it carries a gradient;
* ``"ontology"`` — Cell Ontology partial credit: −1 when invalid, else
  (credit / N + exact match) / 2, where a cell's credit is 1 for the right label,
  ``coarse_credit`` (0.5) when the predicted label's Cell Ontology term is an ancestor of
  the gold one (too coarse: "T cell" for "CD8+ T cell"), ``fine_credit`` (0.5) when it is
  a descendant (too fine), ``same_term_credit`` (0.5) when two different labels name the
  same term, else 0 (:func:`cello1.knowledge.ontology.relation`; fuzzy label mappings never
  count). Batch accuracy (the exact-match half) stays strict.

Variant options (the credits above) are keyword arguments of :func:`batch_reward`,
:func:`cello1.scoring.make_reward` and ``reward_options`` in verl's ``extra_info``;
:data:`VARIANT_OPTIONS` lists them with their defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cello1.errors import InputError
from cello1.grammar import (
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    is_valid_format,
    loose_labels,
    parse_gold,
    split_labels,
    strict_answer,
)

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


def tag_credit(completion: str, think_credit: float, answer_credit: float) -> float:
    """The ``shaped`` variant's credit for the tags a malformed completion got right: a
    ``<think>…</think>`` block and an ``<answer>`` tag.
    """
    credit = 0.0
    start = completion.find(THINK_OPEN)
    if start >= 0 and completion.find(THINK_CLOSE, start) > start:
        credit += think_credit
    if ANSWER_OPEN in completion:
        credit += answer_credit
    return credit


def _shaped(
    completion: str, gold: tuple[str, ...], think_credit: float = 0.1, answer_credit: float = 0.1,
    slots_credit: float = 0.3,
) -> float:  # fmt: skip
    labels, correct = judge(completion, gold)
    if well_formed(labels, len(gold)):
        return paper_reward(labels, correct, len(gold))
    read = {label.lower() for label in loose_labels(completion)[: len(gold)]}
    found = len(read & set(gold)) / len(gold)
    return INVALID + tag_credit(completion, think_credit, answer_credit) + slots_credit * found


def cell_credit(
    predicted: str, gold: str, coarse_credit: float = 0.5, fine_credit: float = 0.5, same_term_credit: float = 0.5
) -> float:
    """Credit of one cell: 1 for the right label (case-insensitive), the matching partial credit
    when the two labels' Cell Ontology terms are the same, or one is an ancestor of the other, else 0.
    """
    if predicted.lower() == gold.lower():
        return 1.0
    from cello1.knowledge.ontology import relation

    kind = relation(predicted, gold)
    return {"ancestor": coarse_credit, "descendant": fine_credit, "same": same_term_credit}.get(kind, 0.0)


def _ontology(
    completion: str, gold: tuple[str, ...], coarse_credit: float = 0.5, fine_credit: float = 0.5,
    same_term_credit: float = 0.5,
) -> float:  # fmt: skip
    labels, correct = judge(completion, gold)
    if not well_formed(labels, len(gold)):
        return INVALID
    credit = sum(
        cell_credit(p, g, coarse_credit, fine_credit, same_term_credit) for p, g in zip(labels, gold, strict=True)
    )
    return (credit / len(gold) + (correct == len(gold))) / 2


VARIANTS: dict[str, Callable[..., float]] = {
    "paper": _paper,
    "exact_match": _exact_match,
    "cell_accuracy": _cell_accuracy,
    "format": _format,
    "shaped": _shaped,
    "ontology": _ontology,
}

VARIANT_OPTIONS: dict[str, dict[str, float]] = {
    "shaped": {"think_credit": 0.1, "answer_credit": 0.1, "slots_credit": 0.3},
    "ontology": {"coarse_credit": 0.5, "fine_credit": 0.5, "same_term_credit": 0.5},
}
"""The options each variant takes, with their defaults (variants not listed take none)."""


def check_variant(variant: str) -> Callable[..., float]:
    """The scoring function of a reward variant; raises :class:`~cello1.errors.InputError` if unknown."""
    try:
        return VARIANTS[variant]
    except KeyError:
        raise InputError(f"unknown reward variant {variant!r}; choose one of: {', '.join(VARIANTS)}") from None


def check_options(variant: str, options: dict[str, object] | None) -> dict[str, float]:
    """``options`` as numbers, checked against what ``variant`` takes (:data:`VARIANT_OPTIONS`)."""
    check_variant(variant)
    allowed = VARIANT_OPTIONS.get(variant, {})
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise InputError(
            f"reward variant {variant!r} does not take {', '.join(unknown)} (it takes {takes}); "
            "check {reward_options}",
            params=["reward_options"],
        )
    checked = {}
    for key, value in (options or {}).items():
        try:
            checked[key] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"reward option {key}={value!r} is not a number") from None
    return checked


def batch_reward(completion: str, gold: str | list[str], variant: str = "paper", **options: float) -> float:
    """Reward of one completion against the gold (``"A | B | C"`` or a list of labels).

    Never raises on the completion: anything that is not a well-formed answer scores −1
    (0 for the ``format`` variant; at least −1 for ``shaped``). An empty gold scores −1 like
    the released code. ``options`` are the variant's credits (:data:`VARIANT_OPTIONS`).
    """
    score = check_variant(variant)
    if options:
        score = functools.partial(score, **check_options(variant, options))
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


def batch_rewards(
    completions: list[str], golds: list[str | list[str]], variant: str = "paper", **options: float
) -> list[float]:
    """:func:`batch_reward` over parallel lists."""
    if len(completions) != len(golds):
        raise InputError(f"{len(completions)} completions but {len(golds)} gold answers; they must pair up")
    return [batch_reward(c, g, variant, **options) for c, g in zip(completions, golds, strict=True)]
