"""Ontology-aware error analysis of predictions — reported beside the strict metrics, never mixed in.

For every wrong position of a strictly valid answer the predicted type is compared with
the gold type in the Cell Ontology (:func:`cello1.knowledge.ontology.relation`): the same
term under another name, an ancestor (too coarse: "T cell" for "CD8-positive, alpha-beta
T cell") or a descendant (too fine). From these:

* ``related_share`` — the share of wrong cells whose predicted type is an ancestor or a
  descendant of the gold type;
* ``partial_credit_accuracy`` — (right cells + same-term cells + ``weight`` × ancestor or
  descendant cells) / all cells, where a format failure still counts all its cells wrong;
* ``confusions`` — the most frequent gold → predicted pairs, with their relation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from cello1.scoring.metrics import Scored
from cello1.scoring.readable import Readable

PARTIAL_CREDIT_WEIGHT = 0.5
TOP_CONFUSIONS = 10


@dataclass(eq=False)
class Confusion(Readable):
    """One gold → predicted pair and how often it occurred."""

    gold: str
    predicted: str
    count: int
    relation: str | None = None


@dataclass(eq=False)
class ErrorAnalysis(Readable):
    """Where the wrong cells went (see the module docstring)."""

    wrong_cells: int
    same_term: int
    ancestor: int
    descendant: int
    related_share: float
    partial_credit_accuracy: float
    partial_credit_weight: float
    confusions: list[Confusion] = field(default_factory=list)


def analyse(
    scored: Sequence[Scored], weight: float = PARTIAL_CREDIT_WEIGHT, top: int = TOP_CONFUSIONS
) -> ErrorAnalysis:
    """The error analysis of scored predictions."""
    from cello1.knowledge.ontology import relation

    pairs = Counter(pair for s in scored for pair in s.confusions)
    kinds: Counter[str | None] = Counter()
    for (gold, predicted), count in pairs.items():
        kinds[relation(predicted, gold)] += count
    wrong = sum(pairs.values())
    related = kinds["ancestor"] + kinds["descendant"]
    cells = sum(s.n for s in scored)
    correct = sum(s.correct for s in scored)
    credit = correct + kinds["same"] + weight * related
    return ErrorAnalysis(
        wrong_cells=wrong,
        same_term=kinds["same"],
        ancestor=kinds["ancestor"],
        descendant=kinds["descendant"],
        related_share=related / wrong if wrong else 0.0,
        partial_credit_accuracy=credit / cells if cells else float("nan"),
        partial_credit_weight=weight,
        confusions=[
            Confusion(gold, predicted, count, relation(predicted, gold))
            for (gold, predicted), count in pairs.most_common(top)
        ],
    )


__all__ = ["Confusion", "ErrorAnalysis", "analyse"]
