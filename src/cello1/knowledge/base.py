"""The knowledge base: Cell Ontology terms, their marker genes, and label → term mapping.

Mapping order for a free-text label (first hit wins):

1. ``exact``     — the label is a CL term name (case-insensitive);
2. ``synonym``   — the label is an exact CL synonym;
3. ``alias``     — a curated alias for common immunophenotype/short labels
   (e.g. pbmc68k's "CD56+ NK", "CD4+/CD25 T Reg");
4. ``normalised``— after normalisation ("CD14+" → "CD14-positive", plurals, "T-cell",
   a missing trailing "cell") the label equals a name or synonym;
5. ``fuzzy``     — the closest name/synonym by :mod:`difflib` ratio ≥ ``FUZZY_CUTOFF``;
6. ``unmapped``  — nothing close enough; the label gets no markers (neutral scores).

A term without markers of its own borrows them from its nearest ancestor that has some
(``LabelMapping.marker_term_id``), e.g. a rare subtype uses its parent type's markers.

Each term has a *deep profile* (:meth:`KnowledgeBase.profile_for`): up to 1,000 genes with
linear consensus weights ``s / max s``, best first. Its first :data:`TOP_MARKERS` genes are
the term's classic marker list (:meth:`KnowledgeBase.markers_for`). Cancer types have deep
profiles too (:meth:`KnowledgeBase.cancer_profile`), so "malignant cell" can be scored
against the cancer the donor has (:mod:`cello1.knowledge.donor`).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
from collections import deque
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from cello1.errors import InputError
from cello1.vocabulary import ALIASES, label_key, ontology_key, singular

RESOURCE = "cell_knowledge.json.gz"
FUZZY_CUTOFF = 0.86
TOP_MARKERS = 40  # genes in a term's classic marker list (the head of its deep profile)
WEIGHT_SCALE = 1000.0  # compact profiles store weights in thousandths

# Tissue → CL ids plausible there (curated; used to propose candidates when a user has
# none). Types found in most tissues are added to every list.
_EVERYWHERE = [
    "CL:0000084",
    "CL:0000236",
    "CL:0000623",
    "CL:0000235",
    "CL:0000576",
    "CL:0000451",
    "CL:0000097",
    "CL:0000115",
    "CL:0000057",
    "CL:0000669",
    "CL:0000192",
]
TISSUES: dict[str, list[str]] = {
    "blood": [
        "CL:0000895",
        "CL:0000897",
        "CL:0000815",
        "CL:0000900",
        "CL:0000909",
        "CL:0000625",
        "CL:0000624",
        "CL:0000798",
        "CL:0000788",
        "CL:0000787",
        "CL:0000786",
        "CL:0000938",
        "CL:0000939",
        "CL:0000860",
        "CL:0000875",
        "CL:0000784",
        "CL:0002394",
        "CL:0002399",
        "CL:0000233",
        "CL:0000232",
        "CL:0008001",
        "CL:0000775",
        "CL:0000771",
        "CL:0000767",
    ],
    "lung": [
        "CL:0000583",
        "CL:0002062",
        "CL:0002063",
        "CL:0002145",
        "CL:0000158",
        "CL:0002370",
        "CL:0002633",
        "CL:0002553",
        "CL:0000082",
        "CL:0002138",
        "CL:0000860",
        "CL:0000875",
        "CL:0000815",
        "CL:0000625",
        "CL:0000624",
        "CL:0000786",
        "CL:0001064",
    ],
    "liver": ["CL:0000182", "CL:0000091", "CL:1000488", "CL:1000398", "CL:0000632", "CL:0000786"],
    "brain": ["CL:0000679", "CL:0000617", "CL:0000127", "CL:0000128", "CL:0002453", "CL:0000129"],
    "kidney": ["CL:0002306", "CL:1000909", "CL:1000849", "CL:0000653", "CL:1000454"],
    "intestine": ["CL:0000584", "CL:0000160", "CL:0000164", "CL:0000510", "CL:0002250", "CL:0000786"],
    "skin": ["CL:0000312", "CL:0000148", "CL:0000453", "CL:0002551"],
    "heart": ["CL:0000746", "CL:0002548", "CL:0010006", "CL:0000359"],
    "pancreas": ["CL:0000171", "CL:0000169", "CL:0000173", "CL:0002079", "CL:0000622"],
    "muscle": ["CL:0008002", "CL:0000594", "CL:0002540"],
}
TISSUE_ALIASES = {
    "pbmc": "blood",
    "peripheral blood": "blood",
    "blood": "blood",
    "bone marrow": "blood",
    "lung": "lung",
    "airway": "lung",
    "bronchus": "lung",
    "trachea": "lung",
    "liver": "liver",
    "brain": "brain",
    "cortex": "brain",
    "kidney": "kidney",
    "gut": "intestine",
    "colon": "intestine",
    "intestine": "intestine",
    "ileum": "intestine",
    "small intestine": "intestine",
    "large intestine": "intestine",
    "skin": "skin",
    "heart": "heart",
    "pancreas": "pancreas",
    "islet": "pancreas",
    "skeletal muscle": "muscle",
    "muscle": "muscle",
}


@dataclass(frozen=True)
class LabelMapping:
    """How one label maps to the Cell Ontology, and whose markers it uses."""

    label: str
    term_id: str | None
    term_name: str | None
    how: str  # exact | synonym | alias | normalised | fuzzy | unmapped
    score: float = 1.0  # similarity for fuzzy matches
    marker_term_id: str | None = None  # the term (itself or nearest ancestor) with markers
    marker_term_name: str | None = None
    n_markers: int = 0

    @property
    def mapped(self) -> bool:
        """Whether the label maps to a Cell Ontology term."""
        return self.term_id is not None

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a plain dict."""
        return asdict(self)


class KnowledgeBase:
    """Cell Ontology terms with names, synonyms, parents and marker genes."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.about: dict[str, Any] = payload["about"]
        self.terms: dict[str, dict[str, Any]] = payload["terms"]
        # deep profiles stay in their stored form until a term is used (decoding all
        # 1.4 million entries up front would double the load time)
        self._profiles: dict[str, Any] = payload.get("profiles") or payload.get("markers") or {}
        self._decoded: dict[str, dict[str, float]] = {}
        self.markers: dict[str, list[tuple[str, float]]] = {
            cl: _decode(stored, TOP_MARKERS) for cl, stored in self._profiles.items()
        }
        self.n_sources: dict[str, int] = payload.get("n_sources", {})
        cancer = payload.get("cancer") or {}
        self._cancer_profiles: dict[str, Any] = cancer.get("profiles", {})
        self.cancer_names: dict[str, str] = dict(cancer.get("names", {}))
        self._by_name = {label_key(t["name"]): cl for cl, t in self.terms.items()}
        self._by_synonym: dict[str, str] = {}
        for cl, term in self.terms.items():
            for syn in term["synonyms"]:
                self._by_synonym.setdefault(label_key(syn), cl)
        self._by_normalised: dict[str, str] = {}
        for table in (self._by_synonym, self._by_name):  # names win over synonyms
            for key, cl in table.items():
                self._by_normalised[ontology_key(key)] = cl
        self._fuzzy_keys = sorted(self._by_normalised)

    @classmethod
    def load(cls) -> KnowledgeBase:
        """Load the knowledge base shipped in the package resources."""
        with resources.files("cello1").joinpath("resources", RESOURCE).open("rb") as raw, gzip.open(raw, "rt") as fh:
            return cls(json.load(fh))

    # ---- terms -----------------------------------------------------------------------
    def name(self, term_id: str) -> str:
        """Name of a Cell Ontology term."""
        return self.terms[term_id]["name"]

    def ancestors(self, term_id: str) -> list[str]:
        """Ancestors nearest first (breadth-first over ``is_a`` parents)."""
        seen, order, queue = {term_id}, [], deque(self.terms.get(term_id, {}).get("parents", []))
        while queue:
            cl = queue.popleft()
            if cl in seen or cl not in self.terms:
                continue
            seen.add(cl)
            order.append(cl)
            queue.extend(self.terms[cl]["parents"])
        return order

    def marker_term(self, term_id: str) -> str | None:
        """The term itself if it has markers, else its nearest ancestor that has some."""
        if term_id in self.markers:
            return term_id
        return next((cl for cl in self.ancestors(term_id) if cl in self.markers), None)

    # ---- labels ----------------------------------------------------------------------
    def lookup(self, label: str) -> tuple[str | None, str, float]:
        """(CL id or None, how, score) for a free-text label or a CL id."""
        key = label_key(label)
        if key.upper() in self.terms:  # a CL id such as "CL:0000236"
            return key.upper(), "exact", 1.0
        if key in self._by_name:
            return self._by_name[key], "exact", 1.0
        if key in self._by_synonym:
            return self._by_synonym[key], "synonym", 1.0
        for alias in (key, singular(key)):
            if alias in ALIASES:
                return ALIASES[alias], "alias", 1.0
        norm = ontology_key(label)
        for candidate in (norm, norm + " cell"):
            if candidate in self._by_normalised:
                return self._by_normalised[candidate], "normalised", 1.0
        match = difflib.get_close_matches(norm, self._fuzzy_keys, n=1, cutoff=FUZZY_CUTOFF)
        if match:
            score = difflib.SequenceMatcher(None, norm, match[0]).ratio()
            return self._by_normalised[match[0]], "fuzzy", round(score, 3)
        return None, "unmapped", 0.0

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one long-lived instance
    def map_label(self, label: str) -> LabelMapping:
        """Map a label to a Cell Ontology term and the term whose markers it uses (cached)."""
        term_id, how, score = self.lookup(label)
        if term_id is None:
            return LabelMapping(label, None, None, how, score)
        marker_id = self.marker_term(term_id)
        return LabelMapping(
            label=label,
            term_id=term_id,
            term_name=self.name(term_id),
            how=how,
            score=score,
            marker_term_id=marker_id,
            marker_term_name=None if marker_id is None else self.name(marker_id),
            n_markers=0 if marker_id is None else len(self.markers[marker_id]),
        )

    def markers_for(self, label: str) -> list[tuple[str, float]]:
        """Marker genes (symbol, weight in (0, 1]) of the label's term, best first; [] if unmapped.

        The classic list: the top :data:`TOP_MARKERS` genes of :meth:`profile_for`.
        """
        mapping = self.map_label(label)
        return [] if mapping.marker_term_id is None else list(self.markers[mapping.marker_term_id])

    # ---- deep profiles ---------------------------------------------------------------
    def profile(self, term_id: str) -> dict[str, float]:
        """Deep profile of a term that has markers: {gene: weight in (0, 1]}, best first."""
        if term_id not in self._decoded:
            self._decoded[term_id] = dict(_decode(self._profiles[term_id]))
        return self._decoded[term_id]

    def profile_for(self, label: str) -> list[tuple[str, float]]:
        """Deep profile (up to 1,000 genes, linear weights) of the label's term, best first; [] if unmapped."""
        mapping = self.map_label(label)
        return [] if mapping.marker_term_id is None else list(self.profile(mapping.marker_term_id).items())

    def cancer_profile(self, key: str) -> dict[str, float]:
        """Deep profile of one cancer type (a key of :attr:`cancer_names`)."""
        cache_key = "cancer:" + key
        if cache_key not in self._decoded:
            self._decoded[cache_key] = dict(_decode(self._cancer_profiles[key]))
        return self._decoded[cache_key]

    def candidates_for_tissue(self, tissue: str) -> list[str]:
        """Usual cell-type names of a tissue (plus types found everywhere), sorted case-insensitively.

        Raises :class:`~cello1.errors.InputError` for an unknown tissue.
        """
        key = label_key(tissue)
        group = TISSUE_ALIASES.get(key) or next((g for alias, g in TISSUE_ALIASES.items() if alias in key), None)
        if group is None:
            known = ", ".join(sorted(set(TISSUE_ALIASES)))
            raise InputError(f"no candidate list for tissue {tissue!r}; known tissues: {known}")
        ids = dict.fromkeys(TISSUES[group] + _EVERYWHERE)
        return sorted((self.name(cl) for cl in ids if cl in self.terms), key=str.casefold)


def _decode(stored: Any, limit: int | None = None) -> list[tuple[str, float]]:
    """A stored profile as (gene, weight) pairs: compact ``{"genes", "w"}`` or ``[[gene, weight], …]``."""
    if isinstance(stored, dict):
        genes = stored["genes"].split(" ", limit)[:limit] if limit else stored["genes"].split(" ")
        return [(g, w / WEIGHT_SCALE) for g, w in zip(genes, stored["w"], strict=False)]
    return [(g, float(w)) for g, w in stored[:limit]]


@functools.lru_cache(maxsize=1)
def knowledge_base() -> KnowledgeBase:
    """The shipped knowledge base (loaded once, well under a second)."""
    return KnowledgeBase.load()


def map_label(label: str) -> LabelMapping:
    """Map a cell-type label (CL name, synonym, common alias or near miss) to a CL term."""
    return knowledge_base().map_label(label)


def map_labels(labels: list[str]) -> dict[str, LabelMapping]:
    """Map each distinct label with :func:`map_label`, in first-seen order."""
    return {label: map_label(label) for label in dict.fromkeys(labels)}


def markers_for(label: str) -> list[tuple[str, float]]:
    """Marker genes (symbol, weight in (0, 1]) of the label's term, best first; [] if unmapped."""
    return knowledge_base().markers_for(label)


def profile_for(label: str) -> list[tuple[str, float]]:
    """Deep profile (up to 1,000 genes, linear weights in (0, 1]) of the label's term, best first; [] if unmapped."""
    return knowledge_base().profile_for(label)


def candidates_for_tissue(tissue: str) -> list[str]:
    """Cell Ontology names plausible in ``tissue`` (e.g. "blood", "PBMC", "lung"), sorted.

    Raises :class:`~cello1.errors.InputError` naming the known tissues when the tissue is not recognised.
    """
    return knowledge_base().candidates_for_tissue(tissue)
