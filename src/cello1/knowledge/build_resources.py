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
* Gene profiles — the consensus marker database shipped by ``cellconsensus`` 1.2.0 (MIT,
  tansey-lab), which aggregates published marker resources (CellMarker 2.0, PanglaoDB
  and others) into one weighted gene list per Cell Ontology term, and one per cancer type
  (NCIT-keyed).

What is kept (file ~1 MB):

* ``profiles[CL id]`` — the top :data:`TOP_GENES` genes of the term's consensus score with
  *linear* weights ``s(g) / max s`` (sqrt or log weights score much worse), best first;
  the first :data:`~cello1.knowledge.base.TOP_MARKERS` of them are the term's classic
  marker list. "Malignant cell" (CL:0001064) gets the mean over the specific cancer types.
* ``cancer`` — ``{"profiles": {key: profile}, "names": {key: display name}, "n_sources":
  {key: int}}``: the per-cancer-type profiles, so a solver can use the cancer that the
  donor's disease names.
* Gene symbols are stored as cello1 compares them (:func:`cello1.genes.normalise_gene`,
  upper case). Each profile is compact: ``{"genes": "G1 G2 …", "w": [1000, 955, …]}``
  (space-joined symbols, weights in thousandths, zero weights dropped), which loads ~7x
  faster than ``[[gene, weight], …]`` lists.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cello1.genes import normalise_gene

CL_VERSION = "v2026-03-26"
CELLCONSENSUS_VERSION = "1.2.0"
ONTOLOGY_GUIDE_VERSION = "1.11.1"
TOP_GENES = 1000  # on a plateau: 200 to 5,000 genes score alike on the official dev puzzles
WEIGHT_SCALE = 1000  # weights stored in thousandths
MALIGNANT_CELL = "CL:0001064"
ROOT = "CL:0000000"
CANCER_ROOT = "cancer"  # cellconsensus' pan-cancer aggregate; an aggregate, so not averaged in

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


def compact_profile(scores: Mapping[str, float], k: int = TOP_GENES) -> dict[str, Any]:
    """The top ``k`` genes by score as ``{"genes": "G1 G2 …", "w": [thousandths …]}``.

    Weights are linear, ``s / max s``; genes are normalised symbols (first spelling wins)
    and genes whose weight rounds to 0 are dropped.
    """
    ranked = sorted(((g, s) for g, s in scores.items() if s > 0), key=lambda kv: (-kv[1], kv[0]))
    genes: list[str] = []
    weights: list[int] = []
    seen: set[str] = set()
    top = ranked[0][1] if ranked else 1.0
    for gene, score in ranked:
        symbol = normalise_gene(gene)
        weight = round(score / top * WEIGHT_SCALE)
        if weight <= 0 or symbol in seen:
            continue
        seen.add(symbol)
        genes.append(symbol)
        weights.append(weight)
        if len(genes) == k:
            break
    return {"genes": " ".join(genes), "w": weights}


def mean_linear(profiles: list[Mapping[str, float]]) -> dict[str, float]:
    """Mean over ``profiles`` of their linear weights ``s / max s``."""
    mean: dict[str, float] = {}
    for scores in profiles:
        top = max(scores.values())
        for gene, score in scores.items():
            mean[gene] = mean.get(gene, 0.0) + score / top / len(profiles)
    return mean


def load_profiles(cellconsensus_dir: Path, k: int = TOP_GENES) -> dict[str, Any]:
    """Per-term and per-cancer-type profiles and source counts from the cellconsensus caches."""
    data_dir = Path(cellconsensus_dir) / "data"
    with (data_dir / "consensus_cache_full.pkl").open("rb") as fh:
        full = pickle.load(fh)  # a file of the pinned, inspected cellconsensus wheel
    with (data_dir / "consensus_cache_cancer.pkl").open("rb") as fh:
        cancer = pickle.load(fh)
    profiles = {cl: compact_profile(w, k) for cl, w in full["consensus"].items() if cl != ROOT and w}
    profiles = {cl: p for cl, p in profiles.items() if p["w"]}
    n_sources = {cl: int(n) for cl, n in full["n_sources"].items() if cl in profiles}
    types = {key: w for key, w in cancer["consensus"].items() if w}
    profiles[MALIGNANT_CELL] = compact_profile(mean_linear([w for key, w in types.items() if key != CANCER_ROOT]), k)
    n_sources[MALIGNANT_CELL] = int(cancer["n_sources"].get(CANCER_ROOT, sum(cancer["n_sources"].values())))
    cancer_section = {
        "profiles": {key: compact_profile(w, k) for key, w in sorted(types.items())},
        "names": {key: cancer["ct_info"].get(key, {}).get("name", key.replace("_", " ")) for key in sorted(types)},
        "n_sources": {key: int(cancer["n_sources"].get(key, 0)) for key in sorted(types)},
    }
    return {"profiles": profiles, "n_sources": n_sources, "cancer": cancer_section}


def build(cellconsensus_dir: Path, out: Path = OUT, k: int = TOP_GENES) -> Path:
    """Write the gzipped knowledge-base resource (ontology terms + profiles) to ``out``; returns ``out``."""
    terms = load_cell_ontology()
    loaded = load_profiles(cellconsensus_dir, k)
    profiles = {cl: p for cl, p in loaded["profiles"].items() if cl in terms}
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
                "kept": f"top {k} genes per CL term by consensus score, linear weights s/max s in thousandths",
                "malignant": "CL:0001064 = mean of the linear weights over cellconsensus' specific cancer types",
            },
            "cancer": {
                "source": f"cellconsensus {CELLCONSENSUS_VERSION} cancer consensus (NCIT-keyed; MIT, tansey-lab)",
                "kept": f"top {k} genes per cancer type, linear weights in thousandths",
            },
            "layout": "profiles: {genes: space-joined upper-case symbols, w: weights in thousandths}, best first",
        },
        "terms": terms,
        "profiles": profiles,
        "n_sources": {cl: n for cl, n in loaded["n_sources"].items() if cl in profiles},
        "cancer": loaded["cancer"],
    }
    out = Path(out)
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
    parser.add_argument("--top", type=int, default=TOP_GENES, help="genes kept per profile")
    args = parser.parse_args()
    path = build(args.cellconsensus, args.out, args.top)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
