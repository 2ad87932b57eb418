"""Cell Ontology helpers for annotation: coarse labels, candidate panels, extra names.

* :func:`coarse_label` — the broad type above a fine one (``T cell`` above
  ``CD8-positive, alpha-beta T cell``): the term itself or its nearest ancestor among
  :data:`COARSE_TERMS`, walking the Cell Ontology ``is_a`` links of the shipped knowledge base.
* :data:`PANELS` — candidate lists for settings the knowledge base's tissue lists do not
  cover: tumours (glioma and a generic tumour microenvironment) and T-cell states
  (tissue-resident memory, exhausted, …). :func:`propose_candidates` tries these first,
  then :func:`cello1.knowledge.candidates_for_tissue`.
* :data:`EXTRA_TYPES` — types the knowledge base has no term or markers for, with a small
  curated marker list and their coarse type (tissue-resident memory T cells, from the core
  signature of Kumar et al., *Cell Reports* 2017, 20:2921, plus ZNF683/Hobit, Mackay et al.,
  *Science* 2016, 352:459).
* :data:`TUMOUR_WORDS` — everyday names of tumour cells, mapped to ``malignant cell``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cello1.errors import InputError
from cello1.vocabulary import label_key

# Broad types, most specific first where they nest (a plasma cell is not called "B cell").
COARSE_TERMS = {
    "CL:0000084": "T cell",
    "CL:0000236": "B cell",
    "CL:0000786": "plasma cell",
    "CL:0000623": "natural killer cell",
    "CL:0001065": "innate lymphoid cell",
    "CL:0000576": "monocyte",
    "CL:0000235": "macrophage",
    "CL:0000129": "microglial cell",
    "CL:0000451": "dendritic cell",
    "CL:0000097": "mast cell",
    "CL:0000775": "neutrophil",
    "CL:0000767": "basophil",
    "CL:0000771": "eosinophil",
    "CL:0000094": "granulocyte",
    "CL:0000232": "erythrocyte",
    "CL:0000233": "platelet",
    "CL:0000556": "megakaryocyte",
    "CL:0000037": "hematopoietic stem cell",
    "CL:0008001": "hematopoietic precursor cell",
    "CL:0001064": "malignant cell",
    "CL:0000066": "epithelial cell",
    "CL:0000115": "endothelial cell",
    "CL:0000057": "fibroblast",
    "CL:0000669": "pericyte",
    "CL:0000192": "smooth muscle cell",
    "CL:0000187": "muscle cell",
    "CL:0000136": "adipocyte",
    "CL:0000182": "hepatocyte",
    "CL:0000148": "melanocyte",
    "CL:0000540": "neuron",
    "CL:0000127": "astrocyte",
    "CL:0000128": "oligodendrocyte",
    "CL:0002453": "oligodendrocyte precursor cell",
}


@dataclass(frozen=True)
class ExtraType:
    """A cell type the knowledge base lacks: its curated markers and its coarse type."""

    name: str
    markers: tuple[tuple[str, float], ...]
    coarse: str
    source: str


_TRM_CORE = (
    ("CD69", 1.0), ("ITGAE", 1.0), ("CXCR6", 1.0), ("ITGA1", 0.9), ("ZNF683", 0.8), ("RGS1", 0.8),
    ("PDCD1", 0.7), ("CD101", 0.7), ("CRTAM", 0.6), ("DUSP6", 0.6), ("XCL1", 0.5),
)  # fmt: skip
_TRM_SOURCE = "cello1 curated: core TRM signature (Kumar et al. 2017) + ZNF683/Hobit (Mackay et al. 2016)"
EXTRA_TYPES = {
    label_key(t.name): t
    for t in (
        ExtraType("tissue-resident memory T cell", _TRM_CORE, "T cell", _TRM_SOURCE),
        ExtraType(
            "CD8-positive, alpha-beta tissue-resident memory T cell",
            (("CD8A", 1.0), ("CD8B", 1.0), *_TRM_CORE),
            "T cell",
            _TRM_SOURCE,
        ),
        ExtraType(
            "CD4-positive, alpha-beta tissue-resident memory T cell",
            (("CD4", 1.0), ("CD40LG", 0.8), *_TRM_CORE),
            "T cell",
            _TRM_SOURCE,
        ),
    )
}
_SHORT_NAMES = {
    "trm": "tissue-resident memory T cell",
    "tissue resident memory t cell": "tissue-resident memory T cell",
    "cd8 trm": "CD8-positive, alpha-beta tissue-resident memory T cell",
    "cd4 trm": "CD4-positive, alpha-beta tissue-resident memory T cell",
}
for _short, _full in _SHORT_NAMES.items():
    EXTRA_TYPES[_short] = EXTRA_TYPES[label_key(_full)]

# short names the knowledge base does not know (lower case) -> a name it maps exactly
NAME_ALIASES = {
    "microglia": "microglial cell",
    "nks": "natural killer cell",
    "nk cells": "natural killer cell",
    "mait": "mucosal-associated invariant T cell",
    "maits": "mucosal-associated invariant T cell",
    "opc": "oligodendrocyte precursor cell",
    "opcs": "oligodendrocyte precursor cell",
    "ilc": "innate lymphoid cell",
    "ilcs": "innate lymphoid cell",
    "gdt": "gamma-delta T cell",
    "tem": "effector memory T cell",
    "tcm": "central memory T cell",
}

TUMOUR_WORDS = {
    label_key(w)
    for w in (
        "tumor cell", "tumour cell", "tumor", "tumour", "cancer cell", "cancer", "malignant", "malignant cells",
        "tumor cells", "tumour cells", "cancer cells", "glioma cell", "glioma", "glioblastoma cell",
        "glioblastoma", "GBM", "malignant glioma cell", "neoplastic", "carcinoma cell",
    )
}  # fmt: skip

_T_STATES = [
    "naive thymus-derived CD4-positive, alpha-beta T cell",
    "central memory CD4-positive, alpha-beta T cell",
    "effector memory CD4-positive, alpha-beta T cell",
    "regulatory T cell",
    "T follicular helper cell",
    "T-helper 1 cell",
    "T-helper 17 cell",
    "naive thymus-derived CD8-positive, alpha-beta T cell",
    "effector memory CD8-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta cytotoxic T cell",
    "tissue-resident memory T cell",
    "exhausted T cell",
    "mucosal-associated invariant T cell",
    "gamma-delta T cell",
    "cycling T cell",
]
_GLIOMA = [
    "malignant cell",
    "astrocyte",
    "oligodendrocyte",
    "oligodendrocyte precursor cell",
    "neuron",
    "microglial cell",
    "macrophage",
    "monocyte",
    "endothelial cell",
    "pericyte",
    "T cell",
]
_TUMOUR = [
    "malignant cell",
    "epithelial cell",
    "fibroblast",
    "endothelial cell",
    "pericyte",
    "macrophage",
    "monocyte",
    "conventional dendritic cell",
    "plasmacytoid dendritic cell",
    "mast cell",
    "neutrophil",
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "regulatory T cell",
    "natural killer cell",
    "B cell",
    "plasma cell",
]
# panel name -> candidates; PANEL_NAMES maps what users type to a panel
PANELS = {"glioma": _GLIOMA, "tumour": _TUMOUR, "T cell states": _T_STATES}
PANEL_NAMES = {
    **dict.fromkeys(
        ("glioma", "glioblastoma", "gbm", "oligodendroglioma", "astrocytoma", "brain tumour", "brain tumor"), "glioma"
    ),
    **dict.fromkeys(
        ("tumour", "tumor", "cancer", "carcinoma", "tumour microenvironment", "tumor microenvironment", "tme"), "tumour"
    ),
    **dict.fromkeys(
        (
            "t cell states",
            "t cells",
            "t cell",
            "tils",
            "til",
            "tumour-infiltrating t cells",
            "tumor-infiltrating t cells",
            "tumor infiltrating lymphocytes",
            "tumour infiltrating lymphocytes",
        ),
        "T cell states",
    ),  # fmt: skip
}


def panel_for(tissue: str) -> str | None:
    """The panel name for what the user typed as ``tissue`` (``None`` when there is none)."""
    return PANEL_NAMES.get(label_key(tissue))


def propose_candidates(tissue: str) -> list[str]:
    """Candidate types for ``tissue``: a panel above (tumours, T-cell states) or the
    knowledge base's list for the tissue.

    Raises :class:`~cello1.errors.InputError` naming the known tissues and panels when neither knows it.
    """
    panel = panel_for(tissue)
    if panel is not None:
        return list(PANELS[panel])
    from cello1.knowledge import candidates_for_tissue

    try:
        return candidates_for_tissue(tissue)
    except InputError as exc:
        raise InputError(f"{exc}; panels: {', '.join(PANELS)}") from None


def coarse_label(term_id: str | None) -> str | None:
    """The broad type of a Cell Ontology term: itself or its nearest ancestor in :data:`COARSE_TERMS`."""
    if term_id is None:
        return None
    if term_id in COARSE_TERMS:
        return COARSE_TERMS[term_id]
    from cello1.knowledge import knowledge_base

    for ancestor in knowledge_base().ancestors(term_id):
        if ancestor in COARSE_TERMS:
            return COARSE_TERMS[ancestor]
    return None


__all__ = [
    "COARSE_TERMS",
    "EXTRA_TYPES",
    "NAME_ALIASES",
    "PANELS",
    "TUMOUR_WORDS",
    "ExtraType",
    "coarse_label",
    "panel_for",
    "propose_candidates",
]
