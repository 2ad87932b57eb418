"""Rebuild ``cello1/resources/cell_knowledge.json.gz`` from two MIT-licensed PyPI packages.

This is a maintainer tool, never run at install or run time (no downloads happen when
cello1 runs; the small derived table ships inside cello1). To rebuild::

    pip download --no-deps -d /tmp/cc cellconsensus==1.2.0 && unzip -o -q /tmp/cc/*.whl -d /tmp/cc
    pip install cellxgene-ontology-guide==1.11.1
    python -m cello1.knowledge.build_resources --cellconsensus /tmp/cc/cellconsensus

Sources (see ``docs/solvers.md`` for the full attribution):

* Cell Ontology terms (names, exact synonyms, parents) — the CL release shipped by
  ``cellxgene-ontology-guide`` (MIT, Chan Zuckerberg Initiative); the Cell Ontology itself
  is CC BY 4.0 (obophenotype/cell-ontology).
* Marker genes — the consensus marker database shipped by ``cellconsensus`` 1.2.0 (MIT,
  tansey-lab), which aggregates published marker resources (CellMarker 2.0, PanglaoDB
  and others) into one weighted gene list per Cell Ontology term. We keep the top
  markers per term; "malignant cell" gets the mean over the package's cancer-type lists.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
from pathlib import Path

CL_VERSION = "v2026-03-26"
CELLCONSENSUS_VERSION = "1.2.0"
ONTOLOGY_GUIDE_VERSION = "1.11.1"
TOP_MARKERS = 40
MALIGNANT_CELL = "CL:0001064"
ROOT = "CL:0000000"

OUT = Path(__file__).resolve().parents[1] / "resources" / "cell_knowledge.json.gz"


def load_cell_ontology() -> dict[str, dict]:
    """CL id -> {name, synonyms, parents} for non-deprecated terms."""
    import zstandard  # dependency of cellxgene-ontology-guide
    from cellxgene_ontology_guide._constants import DATA_ROOT

    path = Path(DATA_ROOT) / f"CL-ontology-{CL_VERSION}.json.zst"
    with path.open("rb") as fh:
        raw = json.load(zstandard.ZstdDecompressor().stream_reader(fh))
    terms = {}
    for term_id, term in raw.items():
        if term.get("deprecated"):
            continue
        parents = sorted(a for a, dist in term.get("ancestors", {}).items() if dist == 1)
        terms[term_id] = {"name": term["label"], "synonyms": sorted(set(term.get("synonyms", []))), "parents": parents}
    return terms


def top_markers(weights: dict[str, float], k: int = TOP_MARKERS) -> list[list]:
    """The ``k`` highest-weighted genes as ``[gene, weight]``, weights scaled to the best gene, zeros dropped."""
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    top = ranked[0][1] if ranked else 1.0
    return [[gene, round(score / top, 4)] for gene, score in ranked if score > 0]


def load_markers(cellconsensus_dir: Path) -> tuple[dict[str, list], dict[str, int]]:
    """Marker lists and source counts per CL term from the cellconsensus caches, plus a
    ``malignant cell`` entry averaged over the cancer consensus.
    """
    data_dir = cellconsensus_dir / "data"
    with (data_dir / "consensus_cache_full.pkl").open("rb") as fh:
        full = pickle.load(fh)
    markers = {cl: top_markers(w) for cl, w in full["consensus"].items() if cl != ROOT and w}
    n_sources = {cl: int(n) for cl, n in full["n_sources"].items() if cl in markers}
    with (data_dir / "consensus_cache_cancer.pkl").open("rb") as fh:
        cancer = pickle.load(fh)
    mean: dict[str, float] = {}
    for weights in cancer["consensus"].values():
        top = max(weights.values())
        for gene, score in weights.items():
            mean[gene] = mean.get(gene, 0.0) + score / top / len(cancer["consensus"])
    markers[MALIGNANT_CELL] = top_markers(mean)
    n_sources[MALIGNANT_CELL] = int(sum(cancer["n_sources"].values()))
    return markers, n_sources


def build(cellconsensus_dir: Path, out: Path = OUT) -> Path:
    """Write the gzipped knowledge-base resource (ontology terms + markers) to ``out``; returns ``out``."""
    terms = load_cell_ontology()
    markers, n_sources = load_markers(cellconsensus_dir)
    markers = {cl: m for cl, m in markers.items() if cl in terms}
    payload = {
        "about": {
            "cell_ontology": {
                "version": CL_VERSION,
                "via": f"cellxgene-ontology-guide {ONTOLOGY_GUIDE_VERSION} (MIT, Chan Zuckerberg Initiative)",
                "licence": "CC BY 4.0 (Cell Ontology, obophenotype/cell-ontology)",
            },
            "markers": {
                "source": f"cellconsensus {CELLCONSENSUS_VERSION} consensus marker database (MIT, tansey-lab)",
                "upstream": "aggregated published marker resources (e.g. CellMarker 2.0, PanglaoDB)",
                "kept": f"top {TOP_MARKERS} genes per CL term, weights scaled to the term's best gene",
            },
        },
        "terms": terms,
        "markers": markers,
        "n_sources": n_sources,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(payload, fh, separators=(",", ":"), sort_keys=True)
    tmp.replace(out)
    return out


def main() -> None:
    """Command line entry point: build the resource from an unpacked cellconsensus folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cellconsensus", type=Path, required=True, help="unpacked cellconsensus package folder")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    path = build(args.cellconsensus, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
