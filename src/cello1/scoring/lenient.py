"""Lenient scoring: forgive surface form, keep the one-to-one constraint.

Never mixed into the strict numbers; ``cello1 eval --lenient`` reports it as separate
columns. Steps for one prediction:

1. **Extraction** — :func:`cello1.grammar.loose_labels`: the whole last ``<answer>``
   block, split on ``|`` and newlines, list prefixes such as ``Cell 3:`` removed.
2. **Comparison** — :func:`cello1.vocabulary.similarity`: the same canonical label
   (case, punctuation, ``-positive`` → ``+``, plurals, synonyms) counts as equal; when
   the knowledge base is installed, two labels mapped to the same Cell Ontology term
   also match (fuzzy mappings excluded); anything else is scored by string similarity.
3. **Repair** — :func:`cello1.vocabulary.repair_labels`: an optimal assignment of the
   gold types to the cell positions (columns in alphabetical order, so ties never favour
   the gold order). A position counts as right when it receives its gold type *and*
   either its prediction is similar enough to that type (≥ ``MIN_SIMILARITY``), or it is
   the only position whose type was not supported by its prediction (then the type is
   forced by elimination: a single duplicate or missing label is repaired).
"""

from __future__ import annotations

import functools
import math

from cello1.grammar import loose_labels
from cello1.vocabulary import label_key, repair_labels

MIN_SIMILARITY = 0.5


@functools.lru_cache(maxsize=65536)
def ontology_term(label: str) -> str | None:
    """The Cell Ontology term of a label when the knowledge base maps it other than fuzzily."""
    try:
        from cello1.knowledge import map_label
    except ImportError:  # the knowledge base is optional for scoring
        return None
    mapping = map_label(label)
    # a fuzzy mapping could send two different gold types to one term: not evidence enough
    return None if mapping.how == "fuzzy" else mapping.term_id


def lenient_assignment(predicted: list[str], gold: list[str], use_ontology: bool = True) -> tuple[list[str], int]:
    """Repaired labels (one gold type per position) and the number of right positions."""
    n = len(gold)
    if n == 0:
        return [], 0
    types = sorted(gold)  # never in gold order: ties must not break towards the right answer
    labels, sims = repair_labels(predicted, types, n, term_of=ontology_term if use_ontology else None)
    informative = [not math.isnan(s) and s >= MIN_SIMILARITY for s in sims]
    forced = informative.count(False) == 1  # one position left over: its type is forced
    correct = sum(
        1
        for i, label in enumerate(labels)
        if label is not None and label_key(label) == label_key(gold[i]) and (informative[i] or forced)
    )
    return [label or "" for label in labels], correct


def lenient_score(prediction: str, gold: list[str], use_ontology: bool = True) -> tuple[int, bool]:
    """(right positions, all right) under lenient scoring."""
    _, correct = lenient_assignment(loose_labels(prediction), gold, use_ontology)
    return correct, correct == len(gold)
