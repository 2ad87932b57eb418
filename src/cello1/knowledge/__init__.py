"""Marker-gene knowledge keyed by Cell Ontology (CL) terms, and label → term mapping.

Everything ships inside cello1 (``resources/cell_knowledge.json.gz``, ~1 MB, built by
:mod:`cello1.knowledge.build_resources` from the MIT-licensed PyPI packages
``cellconsensus`` and ``cellxgene-ontology-guide``); nothing is downloaded at run time.

>>> from cello1.knowledge import map_label, markers_for
>>> map_label("CD14+ Monocyte").term_name
'CD14-positive monocyte'
>>> [g for g, _ in markers_for("classical monocyte")[:3]]
['CD14', 'S100A8', 'S100A9']

``markers_for`` gives a term's classic marker list (top 40 genes); ``profile_for`` its
deep profile (up to 1,000 genes, linear weights), which the ``markers`` solver scores
with; :mod:`cello1.knowledge.donor` reads the donor's tissue and disease from a puzzle.
"""

from __future__ import annotations

from cello1.genes import normalise_gene
from cello1.knowledge.base import (
    KnowledgeBase,
    LabelMapping,
    candidates_for_tissue,
    knowledge_base,
    map_label,
    map_labels,
    markers_for,
    profile_for,
)
from cello1.knowledge.donor import Donor, donor_of, match_cancer_types, parse_donor

__all__ = [
    "Donor",
    "KnowledgeBase",
    "LabelMapping",
    "candidates_for_tissue",
    "knowledge_base",
    "map_label",
    "map_labels",
    "markers_for",
    "match_cancer_types",
    "normalise_gene",
    "parse_donor",
    "donor_of",
    "profile_for",
]
