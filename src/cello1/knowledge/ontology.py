"""How two cell-type labels relate in the Cell Ontology: same term, ancestor, descendant.

Used by ``cello1 eval``'s error analysis (a wrong label that is the gold type's parent or
child is a near miss, not a random error) and by the ontology-aware partial-credit reward.
Labels are mapped with :func:`cello1.knowledge.map_label`; fuzzy mappings do not count,
so a relation is only claimed when both labels map reliably.
"""

from __future__ import annotations

import functools
from typing import Literal

from cello1.knowledge.base import knowledge_base

Relation = Literal["same", "ancestor", "descendant"]


@functools.lru_cache(maxsize=65536)
def term_of(label: str) -> str | None:
    """The Cell Ontology term of ``label``, or ``None`` when unmapped or only fuzzily mapped."""
    mapping = knowledge_base().map_label(label)
    return None if mapping.how in ("fuzzy", "unmapped") else mapping.term_id


@functools.lru_cache(maxsize=65536)
def relation(predicted: str, gold: str) -> Relation | None:
    """``"same"`` when both labels name one term, ``"ancestor"`` when ``predicted`` is an
    ancestor of ``gold`` (too coarse), ``"descendant"`` when it is a descendant (too fine),
    else ``None``.
    """
    p, g = term_of(predicted), term_of(gold)
    if p is None or g is None:
        return None
    if p == g:
        return "same"
    kb = knowledge_base()
    if p in kb.ancestors(g):
        return "ancestor"
    if g in kb.ancestors(p):
        return "descendant"
    return None


__all__ = ["Relation", "relation", "term_of"]
