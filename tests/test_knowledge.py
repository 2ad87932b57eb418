"""The shipped marker knowledge base and the label → Cell Ontology mapping."""

from __future__ import annotations

import pytest

from cello1.knowledge import candidates_for_tissue, knowledge_base, map_label, map_labels, markers_for, normalise_gene
from cello1.puzzle import parse_record

# pbmc68k_reduced `bulk_labels` → the CL term each should map to
PBMC68K = {
    "CD14+ Monocyte": "CL:0001054",
    "CD56+ NK": "CL:0000623",
    "CD4+/CD45RA+/CD25- Naive T": "CL:0000895",
    "Dendritic": "CL:0000451",
    "CD34+": "CL:0008001",
    "CD19+ B": "CL:0000236",
    "CD8+ Cytotoxic T": "CL:0000625",
    "CD4+/CD25 T Reg": "CL:0000815",
    "CD4+/CD45RO+ Memory": "CL:0000897",
    "CD8+/CD45RA+ Naive Cytotoxic": "CL:0000900",
}


def _official_labels(official_records, model_card_record) -> set[str]:
    labels: set[str] = set()
    for rec in [*official_records, model_card_record]:
        puzzle = parse_record(rec)
        labels |= set(puzzle.candidates) | set(puzzle.answer or [])
    return labels


def test_every_official_example_label_maps_exactly_with_markers(official_records, model_card_record):
    labels = _official_labels(official_records, model_card_record)
    assert len(labels) >= 15
    for label in labels:
        m = map_label(label)
        assert m.how == "exact", (label, m)
        assert m.term_name.casefold() == label.casefold()
        assert m.n_markers >= 10, (label, m)
        assert markers_for(label), label


def test_official_examples_markers_point_the_right_way():
    # textbook markers lead each list for a few official labels
    top = {
        label: [g for g, _ in markers_for(label)[:15]]
        for label in ("classical monocyte", "club cell", "B cell", "mast cell")
    }
    assert "CD14" in top["classical monocyte"]
    assert "SCGB1A1" in top["club cell"]
    assert "MS4A1" in top["B cell"]
    assert "CPA3" in top["mast cell"] or "TPSAB1" in top["mast cell"]


def test_embedded_data_labels_map_to_expected_terms():
    import scanpy as sc

    labels = set(sc.datasets.pbmc68k_reduced().obs["bulk_labels"].astype(str))
    assert labels == set(PBMC68K)  # the real label set
    mapping = map_labels(sorted(labels))
    for label, expected in PBMC68K.items():
        assert mapping[label].term_id == expected, mapping[label]
        assert mapping[label].marker_term_id == expected


@pytest.mark.parametrize(
    ("label", "how", "term"),
    [
        ("B cell", "exact", "CL:0000236"),
        ("b CELL ", "exact", "CL:0000236"),
        ("CL:0000236", "exact", "CL:0000236"),
        ("Treg", "synonym", "CL:0000815"),
        ("inflammatory monocyte", "synonym", "CL:0000860"),
        ("B cells", "normalised", "CL:0000236"),
        ("T-cells", "normalised", "CL:0000084"),
        ("CD16+ monocytes", "alias", "CL:0000875"),
        ("clasical monocyte", "fuzzy", "CL:0000860"),
    ],
)
def test_mapping_order(label, how, term):
    m = map_label(label)
    assert (m.how, m.term_id) == (how, term)
    if how == "fuzzy":
        assert 0.86 <= m.score < 1


def test_unmapped_label_is_reported_and_has_no_markers():
    m = map_label("zorblax widget cell")
    assert not m.mapped
    assert m.how == "unmapped" and m.term_id is None and m.marker_term_id is None
    assert markers_for("zorblax widget cell") == []


def test_term_without_markers_borrows_from_nearest_ancestor():
    kb = knowledge_base()
    without = [cl for cl in kb.terms if cl not in kb.markers and kb.marker_term(cl) not in (None, cl)]
    assert len(without) > 100
    term = without[0]
    m = map_label(term)
    assert m.term_id == term and m.marker_term_id != term
    ancestors = kb.ancestors(term)
    assert m.marker_term_id in ancestors
    # nearest: no closer ancestor has markers
    assert all(a not in kb.markers for a in ancestors[: ancestors.index(m.marker_term_id)])


def test_knowledge_base_records_sources_and_licences():
    about = knowledge_base().about
    assert "CC BY 4.0" in about["cell_ontology"]["licence"]
    assert "cellconsensus" in about["markers"]["source"] and "MIT" in about["markers"]["source"]
    assert len(knowledge_base().markers) > 1000


def test_candidates_for_tissue():
    blood = candidates_for_tissue("PBMC")
    assert {"classical monocyte", "B cell", "natural killer cell", "regulatory T cell"} <= set(blood)
    assert blood == sorted(blood, key=str.casefold)
    assert all(map_label(c).how == "exact" and map_label(c).n_markers for c in blood)
    assert "pulmonary alveolar type 2 cell" in candidates_for_tissue("lung")
    with pytest.raises(ValueError, match="known tissues"):
        candidates_for_tissue("moon rock")


def test_normalise_gene_strips_ensembl_suffix():
    assert normalise_gene("CSF2RA_ENSG00000198223") == "CSF2RA"
    assert normalise_gene("cd14") == "CD14"
