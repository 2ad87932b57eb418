"""The label vocabulary: how cell-type names are compared, normalised, matched and repaired.

Every place that compares two cell-type labels goes through this module:

* :func:`label_key` — the identity of a label: case- and whitespace-insensitive
  (``"b  CELL "`` = ``"B cell"``). The gold comparison, repeat detection, candidate
  look-ups and reference profiles use it.
* :func:`ontology_key` — the looser key used to match a label to Cell Ontology names
  (``"CD14+"`` → ``"cd14-positive"``, plurals, ``T-cell``); :data:`ALIASES` holds curated
  labels that are neither CL names nor synonyms (``"CD56+ NK"`` → CL:0000623).
* :func:`normalise_label` — the canonical form used when scoring leniently: Unicode
  NFKC, case, punctuation, ``-positive`` → ``+``, plural ``s`` and the synonym groups of
  :data:`SYNONYM_GROUPS` (``NK cell`` = ``natural killer cell``).
* :func:`similarity` — 1 for labels with the same canonical form (or, given a
  ``term_of`` mapper, the same Cell Ontology term), else the :mod:`difflib` similarity
  ratio of their canonical forms.
* :func:`repair_labels` — the one optimal-assignment repair: turn what a model wrote
  for each position into candidates, each used at most once (or freely with
  ``allow_repeats``), rectangular problems allowed, leftovers ``unassigned``.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from cello1.assignment import argmax_assignment, optimal_assignment

UNASSIGNED = "unassigned"

# ---- keys ------------------------------------------------------------------------------


def label_key(label: str) -> str:
    """Case- and whitespace-insensitive identity of a label."""
    return " ".join(str(label).casefold().split())


def singular(key: str) -> str:
    """Fold a plural key ("nk cells", "cd16+ monocytes") to the singular."""
    return re.sub(r"(?<=[a-z]{3})s\b", "", key)


def ontology_key(label: str) -> str:
    """The key matched against Cell Ontology names: "+"/"-" spelled out, plurals and
    hyphenated "T-cell" folded, "_" and "/" as spaces.
    """
    s = label_key(label)
    s = re.sub(r"(?<=[a-z0-9])\+", "-positive", s)
    s = re.sub(r"(?<=\d)-(?=[\s,/]|$)", "-negative", s)
    s = s.replace("t-cell", "t cell").replace("b-cell", "b cell").replace("lymphocytes", "lymphocyte")
    s = re.sub(r"\bcells\b", "cell", s)
    s = re.sub(r"[_/]", " ", s)
    return singular(re.sub(r"\s+", " ", s).strip())


# Curated aliases: common labels that are not Cell Ontology names or synonyms.
# Keys are label_key()s (also tried in the singular); values are CL ids.
ALIASES: dict[str, str] = {
    # pbmc68k_reduced `bulk_labels` (Zheng et al. 2017 FACS-sorted populations)
    "cd56+ nk": "CL:0000623",
    "cd4+/cd45ra+/cd25- naive t": "CL:0000895",
    "dendritic": "CL:0000451",
    "cd34+": "CL:0008001",
    "cd19+ b": "CL:0000236",
    "cd8+ cytotoxic t": "CL:0000625",
    "cd4+/cd25 t reg": "CL:0000815",
    "cd4+/cd45ro+ memory": "CL:0000897",
    "cd8+/cd45ra+ naive cytotoxic": "CL:0000900",
    "cd14+ monocyte": "CL:0001054",
    # frequent short forms in annotated atlases
    "nk": "CL:0000623",
    "nk cell": "CL:0000623",
    "t": "CL:0000084",
    "b": "CL:0000236",
    "treg": "CL:0000815",
    "t reg": "CL:0000815",
    "cd4 t": "CL:0000624",
    "cd4 t cell": "CL:0000624",
    "cd4+ t": "CL:0000624",
    "cd4+ t cell": "CL:0000624",
    "cd8 t": "CL:0000625",
    "cd8 t cell": "CL:0000625",
    "cd8+ t": "CL:0000625",
    "cd8+ t cell": "CL:0000625",
    "naive cd4 t": "CL:0000895",
    "memory cd4 t": "CL:0000897",
    "naive cd8 t": "CL:0000900",
    "cd14 mono": "CL:0001054",
    "cd14+ mono": "CL:0001054",
    "cd16 mono": "CL:0000875",
    "cd16+ mono": "CL:0000875",
    "cd16+ monocyte": "CL:0000875",
    "fcgr3a+ mono": "CL:0000875",
    "fcgr3a+ monocyte": "CL:0000875",
    "mono": "CL:0000576",
    "dc": "CL:0000451",
    "pdc": "CL:0000784",
    "cdc": "CL:0000990",
    "cdc1": "CL:0002394",
    "cdc2": "CL:0002399",
    "mdc": "CL:0000782",
    "hsc": "CL:0000037",
    "hspc": "CL:0008001",
    "plasma": "CL:0000786",
    "platelet": "CL:0000233",
    "megakaryocyte": "CL:0000556",
    "erythrocyte": "CL:0000232",
    "at1": "CL:0002062",
    "at2": "CL:0002063",
    "mast": "CL:0000097",
    "macro": "CL:0000235",
    "mac": "CL:0000235",
}

# ---- the canonical form for lenient comparison ------------------------------------------

# Labels that name the same type (normalised forms); the first of each group is canonical.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
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
)
SYNONYMS: dict[str, str] = {alias: group[0] for group in SYNONYM_GROUPS for alias in group}

_POSITIVE = re.compile(r"[\s-]*positive\b")
_NEGATIVE = re.compile(r"[\s-]*negative\b")
_PUNCT = re.compile(r"[^\w+\s]")
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=65536)
def normalise_label(label: str) -> str:
    """The canonical form of a label for lenient comparison (see the module docstring)."""
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


TermOf = Callable[[str], "str | None"]


def similarity(a: str, b: str, term_of: TermOf | None = None) -> float:
    """1 for the same canonical label (or the same Cell Ontology term under ``term_of``),
    else the similarity ratio of the canonical forms (:class:`difflib.SequenceMatcher`), in [0, 1).
    """
    na, nb = normalise_label(a), normalise_label(b)
    if na == nb:
        return 1.0
    if term_of is not None:
        ta, tb = term_of(a), term_of(b)
        if ta is not None and ta == tb:
            return 1.0
    return 0.999 * _ratio(na, nb)


@functools.lru_cache(maxsize=65536)
def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def similarity_matrix(
    written: Sequence[str], candidates: Sequence[str], n: int, term_of: TermOf | None = None
) -> np.ndarray:
    """``n`` × candidates similarity of what was written at each position (positions
    with nothing written get zeros: any leftover candidate fits them equally).
    """
    sim = np.zeros((n, len(candidates)))
    for i, label in enumerate(list(written)[:n]):
        sim[i] = [similarity(label, c, term_of) for c in candidates]
    return sim


# ---- the one repair --------------------------------------------------------------------


def repair_labels(
    written: Sequence[str],
    candidates: Sequence[str],
    n: int,
    *,
    allow_repeats: bool = False,
    keep_unassigned: bool = False,
    term_of: TermOf | None = None,
) -> tuple[list[str | None], list[float]]:
    """Candidates for ``n`` positions from what was written at each, by similarity.

    Each candidate is used at most once (an optimal assignment maximising the total
    similarity; rectangular: with more positions than candidates the leftovers get
    ``None``), or, with ``allow_repeats``, the most similar candidate per position.
    With ``keep_unassigned``, a position where :data:`UNASSIGNED` was written stays
    ``None`` when there is room. Returns the labels and each one's similarity to what
    was written (NaN for ``None``).
    """
    sim = similarity_matrix(written, candidates, n, term_of)
    if allow_repeats:
        columns: list[int | None] = list(argmax_assignment(sim))
    else:
        penalty = np.zeros(n)
        if keep_unassigned:
            said = [label_key(w) == UNASSIGNED for w in list(written)[:n]]
            penalty[: len(said)] = said
        columns = optimal_assignment(sim - penalty[:, None])
    labels = [None if c is None else candidates[c] for c in columns]
    scores = [float("nan") if c is None else float(sim[i, c]) for i, c in enumerate(columns)]
    return labels, scores


__all__ = [
    "ALIASES",
    "SYNONYMS",
    "SYNONYM_GROUPS",
    "UNASSIGNED",
    "label_key",
    "normalise_label",
    "ontology_key",
    "repair_labels",
    "similarity",
    "similarity_matrix",
    "singular",
]
