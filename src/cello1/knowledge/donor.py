"""What a puzzle says about its donor (tissue, disease), and which cancer types match it.

The context sentence of a CellPuzzles record (docs/format.md §3) names the tissue
("… originating from the lung.") and the disease ("The patient has been diagnosed with
lung adenocarcinoma.", "The lung condition is described as …"). Puzzles built by cello1
also carry ``tissue``/``disease`` fields; those win when present.

:func:`match_cancer_types` picks the cancer types (of the knowledge base's per-cancer
profiles) whose name the donor's disease spells out, so that "malignant cell" is scored
against the cancer the donor actually has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cello1.vocabulary import label_key

_DISEASE = re.compile(r"diagnosed with (?P<d>[^.]+)\.")
_CONDITION = re.compile(r"condition is described as (?P<d>[^.]+)\.")
# "…, originating from the lung." and, without sex/stage, "The cell originates from the lung."
_TISSUE = re.compile(r"(?:originating|originates) from the (?P<t>[^.]+?)\.")

# words that never decide which cancer a donor has
_STOP = frozenset(
    {"of", "the", "and", "in", "with", "type", "not", "otherwise", "specified", "no", "special", "primary"}
)
_GENERIC = frozenset({"carcinoma", "neoplasm", "cancer", "malignant", "tumor"})
# a disease word implies these words of a cancer type's name
_IMPLIES: dict[str, frozenset[str]] = {
    "cancer": frozenset({"carcinoma", "neoplasm", "cancer"}),
    "tumor": frozenset({"neoplasm", "tumor"}),
    "tumour": frozenset({"neoplasm", "tumor"}),
    "neoplasm": frozenset({"neoplasm"}),
    "renal": frozenset({"kidney"}),
    "kidney": frozenset({"renal"}),
    "hepatic": frozenset({"liver"}),
    "liver": frozenset({"hepatic"}),
    "colon": frozenset({"colorectal"}),
    "rectum": frozenset({"colorectal"}),
    "rectal": frozenset({"colorectal"}),
    "pulmonary": frozenset({"lung"}),
    "gastric": frozenset({"stomach"}),
    "stomach": frozenset({"gastric"}),
}


@dataclass(frozen=True)
class Donor:
    """The donor facts a solver may use: the tissue (case-folded, ``""`` if unknown) and
    the disease phrases as written.
    """

    tissue: str
    diseases: tuple[str, ...]


def parse_donor(context: str, tissue: str | None = None, disease: str | None = None) -> Donor:
    """The donor of a context sentence; explicit ``tissue``/``disease`` values win.

    Examples
    --------
    >>> parse_donor("The cell is from a male, originating from the lung. "
    ...             "The patient has been diagnosed with lung adenocarcinoma.")
    Donor(tissue='lung', diseases=('lung adenocarcinoma',))
    """
    context = context or ""
    if not tissue:
        m = _TISSUE.search(context)
        tissue = m["t"] if m else ""
    if disease:
        diseases: tuple[str, ...] = (disease.strip(),)
    else:
        found = [m["d"].strip() for pattern in (_DISEASE, _CONDITION) for m in pattern.finditer(context)]
        diseases = tuple(found)
    return Donor(tissue=label_key(tissue), diseases=diseases)


def donor_of(puzzle: Any) -> Donor:
    """The donor of a :class:`~cello1.puzzle.Puzzle` (its fields, else its context sentence)."""
    return parse_donor(puzzle.context, getattr(puzzle, "tissue", None), getattr(puzzle, "disease", None))


def _words(text: str) -> set[str]:
    text = re.sub(r"\bnon[- ]", "non", label_key(text.replace("_", " ")))  # "non-small" -> "nonsmall"
    return {w for w in re.split(r"[^a-z0-9]+", text) if w and w not in _STOP}


def _implied(words: set[str]) -> set[str]:
    out = set(words)
    for w in words:
        out |= _IMPLIES.get(w, frozenset())
        if w.endswith("carcinoma"):  # adenocarcinoma, cholangiocarcinoma -> carcinoma
            out.add("carcinoma")
        if w.endswith(("oma", "emia", "aemia")):  # melanoma, leukemia -> a neoplasm
            out.add("neoplasm")
    return out


def match_cancer_types(donor: Donor, names: Mapping[str, str]) -> list[str]:
    """Keys of the cancer types (``key -> display name``) that the donor's disease names.

    A type qualifies when every word of its key (or of its name) is among a disease
    phrase's words, their light expansions ("cancer" → carcinoma, "adenocarcinoma" →
    carcinoma, "renal" ↔ kidney …) and the tissue's words, with at least one word from
    the disease itself: "pleomorphic carcinoma" in the lung → lung carcinoma; COPD or
    Crohn disease → nothing. The most specific match wins (words taken verbatim from the
    disease that are not generic, then verbatim words, then implied words, then length);
    equally good matches are all returned, sorted. ``[]`` means no cancer type matches.

    Examples
    --------
    >>> names = {"lung_carcinoma": "Lung Carcinoma", "lung_small_cell_carcinoma": "Lung Small Cell Carcinoma"}
    >>> match_cancer_types(Donor("lung", ("lung large cell carcinoma",)), names)
    ['lung_carcinoma']
    """
    tissue_words = _implied(_words(donor.tissue))
    best: list[str] = []
    best_rank: tuple[int, ...] = (0, 0, 0, 0)
    for phrase in donor.diseases:
        exact = _words(phrase)
        implied = _implied(exact)
        pool = implied | tissue_words
        for key, name in names.items():
            ranks = [
                (len((words & exact) - _GENERIC), len(words & exact), len(words & implied), len(words))
                for words in (_words(key), _words(name))
                if words and words <= pool and words & implied and not words <= _GENERIC
            ]
            if not ranks:
                continue
            rank = max(ranks)
            if rank > best_rank:
                best, best_rank = [key], rank
            elif rank == best_rank and key not in best:
                best.append(key)
    return sorted(best)


__all__ = ["Donor", "donor_of", "match_cancer_types", "parse_donor"]
