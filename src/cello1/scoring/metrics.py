"""Per-prediction scores and their aggregation into the paper's metrics (``docs/format.md``).

Per prediction (strict, as the released evaluation script):

* ``valid``   — the strict format check passes;
* ``correct`` — positions whose predicted label equals the gold one (case-insensitive,
  stripped), compared position by position; 0 when invalid. A valid answer with the
  wrong number of labels still earns its matching positions (only the *reward*
  gives −1 for a wrong count or repeats);
* ``exact``   — ``correct == N``;
* ``uniqueness`` — distinct labels / labels (case-insensitive), 0 when invalid;
* ``reward``  — :func:`cello1.scoring.batch_reward` (the RL reward, for reference).

Aggregates: ``cell_accuracy`` = Σ correct / Σ N (a format failure counts all its cells
wrong); ``batch_accuracy`` = mean exact; ``format_rate`` = mean valid; ``uniqueness``;
``mean_length``; ``mean_reward``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cello1.grammar import parse_prediction
from cello1.scoring.reward import INVALID, judge, paper_reward


@dataclass
class Scored:
    """One prediction scored against its gold."""

    key: tuple[str, int]  # (id, sample), used to pair predictions across files
    n: int
    valid: bool
    correct: int
    exact: bool
    uniqueness: float
    reward: float
    length: float
    groups: dict[str, str]
    lenient_correct: int | None = None
    lenient_exact: bool | None = None
    confusions: tuple[tuple[str, str], ...] = ()  # (gold, predicted) at wrong positions of a valid answer


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def score_prediction(prediction: str, gold: list[str]) -> tuple[bool, int, bool, float, float]:
    """(valid, correct, exact, uniqueness, reward) of one prediction against gold labels."""
    n = len(gold)
    pred, correct = judge(prediction, tuple(g.lower() for g in gold))
    if pred is None or not gold:
        return False, 0, False, 0.0, INVALID
    uniqueness = len(set(pred)) / len(pred) if pred else 0.0
    return True, correct, correct == n, uniqueness, paper_reward(pred, correct, n)


def score_record(
    record: dict[str, Any],
    gold: list[str],
    prediction: str,
    length_fn: Callable[[str], float] = word_count,
    group_fields: Sequence[str] = ("tissue", "disease", "source"),
    index: int = 0,
) -> Scored:
    """Score one prediction record against its gold labels.

    The result is keyed by ``(id, sample)`` and grouped by N and the non-empty ``group_fields``;
    ``length_fn`` measures the prediction (words by default).
    """
    valid, correct, exact, uniqueness, reward = score_prediction(prediction, gold)
    confusions: tuple[tuple[str, str], ...] = ()
    if valid and not exact:
        predicted = parse_prediction(prediction) or []
        confusions = tuple((g, p) for p, g in zip(predicted, gold, strict=False) if p.lower() != g.lower())
    groups = {"n": str(len(gold))}
    for name in group_fields:
        value = record.get(name)
        if value is not None and str(value) != "":
            groups[name] = str(value)
    key = (str(record.get("id", f"#{index}")), int(record.get("sample") or 0))
    return Scored(
        key=key,
        n=len(gold),
        valid=valid,
        correct=correct,
        exact=exact,
        uniqueness=uniqueness,
        reward=reward,
        length=float(length_fn(prediction)),
        groups=groups,
        confusions=confusions,
    )


# metric -> (numerator column, denominator column or None for a plain mean)
METRIC_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cell_accuracy": ("correct", "n"),
    "batch_accuracy": ("exact", None),
    "format_rate": ("valid", None),
    "uniqueness": ("uniqueness", None),
    "mean_length": ("length", None),
    "mean_reward": ("reward", None),
}
LENIENT_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cell_accuracy": ("lenient_correct", "n"),
    "batch_accuracy": ("lenient_exact", None),
}
