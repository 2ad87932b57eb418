"""Marker-gene knowledge keyed by Cell Ontology (CL) terms, and label → term mapping.

Everything ships inside cello1 (``resources/cell_knowledge.json.gz``, 0.3 MB, built by
:mod:`cello1.knowledge.build_resources` from the MIT-licensed PyPI packages
``cellconsensus`` and ``cellxgene-ontology-guide``); nothing is downloaded at run time.

>>> from cello1.knowledge import map_label, markers_for
>>> map_label("CD14+ Monocyte").term_name
'CD14-positive monocyte'
>>> [g for g, _ in markers_for("classical monocyte")[:3]]
['CD14', 'S100A8', 'S100A9']
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
)

__all__ = [
    "KnowledgeBase",
    "LabelMapping",
    "candidates_for_tissue",
    "knowledge_base",
    "map_label",
    "map_labels",
    "markers_for",
    "normalise_gene",
]
