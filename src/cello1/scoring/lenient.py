"""Lenient scoring: forgive surface form, keep the one-to-one constraint.

Never mixed into the strict numbers; ``cello1 eval --lenient`` reports it as separate
columns. Steps for one prediction:

1. **Extraction** — the whole ``<answer>`` block (last one, all its lines; missing
   ``</answer>`` is fine), else the tolerant extraction; split on ``|`` and newlines,
   list prefixes such as ``Cell 3:`` or ``3.`` removed.
2. **Normalisation** — Unicode NFKC, case, punctuation, whitespace, ``-positive`` →
   ``+``, plural ``s``, and a small synonym table (``NK cell`` ↔ ``natural killer
   cell``, ``CD14+ monocyte`` ↔ ``classical monocyte`` …). When the knowledge base
   (:func:`cello1.knowledge.map_label`) is installed, two labels that map to the same
   Cell Ontology term also match.
3. **Repair** — an optimal assignment (scipy ``linear_sum_assignment``) of the gold
   types to the cell positions, maximising the string similarity with what was
   predicted at each position. This fixes duplicates and near-misses: every type is
   used once (columns in alphabetical order, so ties never favour the gold order). A
   position counts as right when it receives its gold type *and* either its prediction
   is similar enough to that type (≥ ``MIN_SIMILARITY``), or it is the only position
   whose type was not supported by its prediction (then the type is forced by
   elimination: a single duplicate or missing label is repaired).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from cello1.scoring.parse import ANSWER_CLOSE, ANSWER_OPEN, extract_answer

MIN_SIMILARITY = 0.5

# normalised form -> canonical normalised form (see normalise_label)
_SYNONYM_GROUPS = [
    ("natural killer cell", "nk cell", "nk"),
    ("classical monocyte", "cd14+ monocyte", "cd14 monocyte"),
    ("non classical monocyte", "nonclassical monocyte", "cd16+ monocyte", "cd16 monocyte", "fcgr3a+ monocyte"),
    ("b cell", "b lymphocyte"),
    ("t cell", "t lymphocyte"),
    ("regulatory t cell", "treg", "t regulatory cell"),
    ("plasmacytoid dendritic cell", "pdc", "plasmacytoid dc"),
    ("conventional dendritic cell", "cdc", "myeloid dendritic cell", "mdc"),
    ("dendritic cell", "dc"),
    ("cd4+ alpha beta t cell", "cd4+ t cell", "cd4 t cell", "helper t cell", "t helper cell"),
    ("cd8+ alpha beta t cell", "cd8+ t cell", "cd8 t cell", "cytotoxic t cell"),
    ("megakaryocyte", "mk", "platelet"),
    ("erythrocyte", "red blood cell", "rbc"),
    ("hematopoietic stem cell", "haematopoietic stem cell", "hsc"),
    ("type i pneumocyte", "alveolar type 1 cell", "at1 cell", "at1"),
    ("type ii pneumocyte", "alveolar type 2 cell", "at2 cell", "at2"),
    ("plasma cell", "plasmablast"),
]
SYNONYMS: dict[str, str] = {alias: group[0] for group in _SYNONYM_GROUPS for alias in group}

_PREFIX = re.compile(r"^\s*(?:(?:cell|type)\s*\d+\s*[:.)\-]|\d+\s*[:.)\-])\s*", re.IGNORECASE)
_POSITIVE = re.compile(r"[\s-]*positive\b")
_NEGATIVE = re.compile(r"[\s-]*negative\b")
_PUNCT = re.compile(r"[^\w+\s]")
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=65536)
def normalise_label(label: str) -> str:
    text = unicodedata.normalize("NFKC", label).lower()
    text = _POSITIVE.sub("+", text)
    text = _NEGATIVE.sub("-neg", text)
    text = _PUNCT.sub(" ", text.replace("_", " "))
    words = _SPACE.sub(" ", text).strip().split(" ")
    last = words[-1]
    if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
        words[-1] = last[:-1]
    text = " ".join(words)
    return SYNONYMS.get(text, text)


def lenient_labels(text: str) -> list[str]:
    """Predicted labels, forgiving layout (see module docstring, step 1)."""
    if not isinstance(text, str):
        return []
    start = text.rfind(ANSWER_OPEN)
    if start >= 0:
        start += len(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        block = text[start : end if end >= 0 else len(text)]
    else:
        block = extract_answer(text)
    parts = re.split(r"\||\r\n|\n|\r", block)
    return [p for p in (_PREFIX.sub("", part).strip() for part in parts) if p]


@functools.lru_cache(maxsize=65536)
def _trigrams(text: str) -> frozenset[str]:
    padded = f"  {text} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


@functools.lru_cache(maxsize=65536)
def _ontology_term(label: str) -> str | None:
    """CL term id via the knowledge base when it is installed; optional."""
    try:
        from cello1.knowledge import map_label
    except Exception:  # the knowledge base is optional for scoring
        return None
    try:
        mapping = map_label(label)
    except Exception:
        return None
    # a fuzzy mapping could send two different gold types to one term: not evidence enough
    return None if getattr(mapping, "how", None) == "fuzzy" else mapping.term_id


def similarity(a: str, b: str, use_ontology: bool = True) -> float:
    """1 for the same normalised label (or synonym / CL term), else trigram Dice."""
    na, nb = normalise_label(a), normalise_label(b)
    if na == nb:
        return 1.0
    if use_ontology:
        ta, tb = _ontology_term(a), _ontology_term(b)
        if ta is not None and ta == tb:
            return 1.0
    ga, gb = _trigrams(na), _trigrams(nb)
    return 2 * len(ga & gb) / (len(ga) + len(gb))


def lenient_assignment(predicted: list[str], gold: list[str], use_ontology: bool = True) -> tuple[list[str], int]:
    """Repaired labels (one gold type per position) and the number of right positions."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    n = len(gold)
    if n == 0:
        return [], 0
    # Columns in alphabetical order (as the candidates are shown), never in gold order,
    # so that ties cannot break towards the right answer.
    types = sorted(range(n), key=lambda j: gold[j])
    sim = np.zeros((n, n))
    for i, label in enumerate(predicted[:n]):
        for c, j in enumerate(types):
            sim[i, c] = similarity(label, gold[j], use_ontology)
    rows, cols = linear_sum_assignment(sim, maximize=True)
    assigned = [0] * n
    for r, c in zip(rows, cols):
        assigned[int(r)] = types[int(c)]
    informative = [bool(sim[r, c] >= MIN_SIMILARITY) for r, c in sorted(zip(rows.tolist(), cols.tolist()))]
    forced = informative.count(False) == 1  # one position left over: its type is forced
    correct = sum(
        1
        for i, j in enumerate(assigned)
        if gold[j].lower() == gold[i].lower() and (informative[i] or forced)
    )
    return [gold[j] for j in assigned], correct


def lenient_score(prediction: str, gold: list[str], use_ontology: bool = True) -> tuple[int, bool]:
    """(right positions, all right) under lenient scoring."""
    _, correct = lenient_assignment(lenient_labels(prediction), gold, use_ontology)
    return correct, correct == len(gold)
