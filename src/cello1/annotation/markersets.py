"""Marker genes per candidate: the knowledge base, your own marker file, or both.

Every candidate is mapped once, and *how* is recorded (never silently):

* the knowledge base's mapping (:func:`cello1.knowledge.map_label`): ``exact``,
  ``synonym``, ``alias``, ``normalised``, ``fuzzy`` (a near miss; warned about) or
  ``unmapped``;
* when that is fuzzy or unmapped: a type cello1 curates itself (``cello1 panel``, e.g.
  tissue-resident memory T cells, see :mod:`cello1.annotation.ontology`), a short name
  (``cello1 alias``: "Microglia", "NKs", "OPC" …), an everyday tumour word
  (``tumour word`` → malignant cell), or a combined name such as
  ``"Microglia/Macrophage"`` whose parts all map (``combined``: the union of their markers);
* ``markers file``: genes from ``markers=FILE`` (CSV/TSV, JSON or GMT: type → genes),
  merged with the knowledge base (``markers_mode="merge"``, yours first) or replacing it
  (``"replace"``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cello1.annotation.ontology import EXTRA_TYPES, NAME_ALIASES, TUMOUR_WORDS, coarse_label
from cello1.errors import InputError
from cello1.genes import normalise_gene
from cello1.vocabulary import label_key

MARKER_MODES = ("merge", "replace")
FILE_FORMATS = ("csv", "tsv", "txt", "json", "gmt")
# mappings that are exact enough to use without a warning
CONFIDENT = ("exact", "synonym", "alias", "normalised", "cello1 alias", "cello1 panel", "tumour word", "combined")
TYPE_COLUMNS = ("cell_type", "celltype", "cell type", "type", "label", "name", "cell_type_name")
GENE_COLUMNS = ("gene", "genes", "marker", "markers", "symbol", "gene_symbol", "gene_name")
WEIGHT_COLUMNS = ("weight", "score", "weights")


@dataclass
class CandidateMarkers:
    """A candidate, the Cell Ontology term it maps to (and how), and its marker genes.

    Attributes
    ----------
    candidate
        The name as the user gave it (labels always keep it).
    term_id, term_name
        The Cell Ontology term (``None`` when unmapped or a cello1 panel type).
    how
        ``exact``, ``synonym``, ``alias``, ``normalised``, ``fuzzy``, ``unmapped``,
        ``cello1 alias``, ``cello1 panel``, ``tumour word`` or ``combined``.
    score
        Name similarity of a fuzzy match (1.0 otherwise).
    markers_from
        Whose markers are used: the term itself, its nearest ancestor with markers, a panel, "none".
    coarse
        The broad type (``T cell`` for CD8 T cells), or ``None``.
    markers
        ``(gene symbol, weight in (0, 1])``, best first.
    source
        ``knowledge base``, ``markers file``, ``markers file + knowledge base``, a panel or ``none``.
    n_in_data
        How many of the markers are genes of the data (filled in by the evidence step).
    """

    candidate: str
    term_id: str | None
    term_name: str | None
    how: str
    score: float = 1.0
    markers_from: str | None = None
    coarse: str | None = None
    markers: list[tuple[str, float]] = field(default_factory=list)
    source: str = "none"
    n_in_data: int = 0

    @property
    def mapping_text(self) -> str:
        """One line: ``'name' → term (how)``."""
        term = self.term_name or "no Cell Ontology term"
        how = f"{self.how} {self.score:.2f}" if self.how == "fuzzy" else self.how
        return f"{self.candidate!r} → {term} ({how}); markers: {self.source}, {len(self.markers)} genes"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (markers as ``gene:weight`` strings)."""
        out = asdict(self)
        out["markers"] = [f"{g}:{w:.3g}" for g, w in self.markers]
        return out


def candidate_markers(
    candidates: list[str], user: dict[str, list[tuple[str, float]]] | None = None, mode: str = "merge"
) -> list[CandidateMarkers]:
    """Map every candidate and collect its markers (``user``: type → genes from a markers file)."""
    if mode not in MARKER_MODES:
        raise InputError(
            f"{{markers_mode}} must be one of {', '.join(MARKER_MODES)}, not {mode!r}", params=["markers_mode"]
        )
    if mode == "replace" and not user:
        raise InputError("{markers_mode}='replace' needs {markers} (a marker file)", params=["markers_mode", "markers"])
    mine = match_user_markers(candidates, user or {})
    out = []
    for name in candidates:
        entry = map_candidate(name)
        own = mine.get(name)
        if mode == "replace":
            entry.markers, entry.source = (list(own), "markers file") if own else ([], "none")
            entry.markers_from = "markers file" if own else "none"
        elif own:
            known = {normalise_gene(g) for g, _ in own}
            extra = [(g, w) for g, w in entry.markers if normalise_gene(g) not in known]
            entry.markers = list(own) + extra
            entry.source = "markers file + knowledge base" if extra else "markers file"
            entry.markers_from = "markers file" + (f" + {entry.markers_from}" if extra else "")
        out.append(entry)
    return out


def map_candidate(name: str) -> CandidateMarkers:
    """The knowledge base's mapping of one name, with cello1's fallbacks when it is fuzzy or unmapped."""
    from cello1.knowledge import map_label, markers_for

    m = map_label(name)
    if m.how not in ("fuzzy", "unmapped"):
        return _from_mapping(name, m, m.how, markers_for(name))
    fallback = _fallback(name)
    if fallback is not None:
        return fallback
    return _from_mapping(name, m, m.how, markers_for(name) if m.mapped else [])


def _from_mapping(name: str, m, how: str, markers: list[tuple[str, float]]) -> CandidateMarkers:
    return CandidateMarkers(
        candidate=name,
        term_id=m.term_id,
        term_name=m.term_name,
        how=how,
        score=float(m.score),
        markers_from=m.marker_term_name or "none",
        coarse=coarse_label(m.term_id),
        markers=list(markers),
        source="knowledge base" if markers else "none",
    )


def _fallback(name: str) -> CandidateMarkers | None:
    from cello1.knowledge import map_label, markers_for

    key = label_key(name)
    if key in EXTRA_TYPES:
        extra = EXTRA_TYPES[key]
        return CandidateMarkers(name, None, extra.name, "cello1 panel", 1.0, extra.source, extra.coarse,
                                list(extra.markers), "cello1 panel")  # fmt: skip
    if key in NAME_ALIASES:
        target = NAME_ALIASES[key]
        return _from_mapping(name, map_label(target), "cello1 alias", markers_for(target))
    if key in TUMOUR_WORDS:
        m = map_label("malignant cell")
        return _from_mapping(name, m, "tumour word", markers_for("malignant cell"))
    parts = [p.strip() for p in name.replace("+/", "\x00").split("/")]
    parts = [p.replace("\x00", "+/") for p in parts if p]
    if len(parts) < 2:
        return None
    entries = [map_candidate(p) for p in parts]
    if any(e.how in ("fuzzy", "unmapped") or not e.markers for e in entries):
        return None
    coarse = {e.coarse for e in entries}
    return CandidateMarkers(
        candidate=name,
        term_id=None,
        term_name=" + ".join(str(e.term_name) for e in entries),
        how="combined",
        markers_from=" + ".join(str(e.markers_from) for e in entries),
        coarse=coarse.pop() if len(coarse) == 1 else None,
        markers=_union([e.markers for e in entries]),
        source="knowledge base",
    )


def _union(lists: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Interleave marker lists (best first), each gene once with its highest weight."""
    best: dict[str, float] = {}
    order: list[str] = []
    for rank in range(max(map(len, lists), default=0)):
        for markers in lists:
            if rank < len(markers):
                gene, weight = markers[rank]
                if gene not in best:
                    order.append(gene)
                best[gene] = max(best.get(gene, 0.0), weight)
    return [(g, best[g]) for g in order]


def match_user_markers(
    candidates: list[str], user: dict[str, list[tuple[str, float]]]
) -> dict[str, list[tuple[str, float]]]:
    """Candidate → the user's markers for it: same name (case/space-insensitive), else the same CL term."""
    if not user:
        return {}
    by_key = {label_key(t): genes for t, genes in user.items()}
    out = {}
    for name in candidates:
        if label_key(name) in by_key:
            out[name] = by_key[label_key(name)]
    missing = [c for c in candidates if c not in out]
    if missing:
        from cello1.knowledge import map_label

        by_term = {}
        for t, genes in user.items():
            m = map_label(t)
            if m.how not in ("fuzzy", "unmapped"):
                by_term.setdefault(m.term_id, genes)
        for name in missing:
            m = map_label(name)
            if m.how not in ("fuzzy", "unmapped") and m.term_id in by_term:
                out[name] = by_term[m.term_id]
    return out


def unused_user_types(candidates: list[str], user: dict[str, list[tuple[str, float]]]) -> list[str]:
    """Types in the markers file that match no candidate."""
    matched = match_user_markers(list(user), {c: [("x", 1.0)] for c in candidates})
    return [t for t in user if t not in matched]


# ---- reading marker files ------------------------------------------------------------------


def read_markers(path: str | os.PathLike) -> dict[str, list[tuple[str, float]]]:
    """Type → ``(gene, weight)`` from a CSV/TSV (long: type, gene[, weight]; or wide: one
    column per type), JSON (``{type: [genes]}``, ``{type: {gene: weight}}``) or GMT file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"markers file {path} not found; check {{markers}}", params=["markers"])
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FILE_FORMATS:
        raise InputError(
            f"markers file {path.name}: unknown format {suffix!r}; use one of {', '.join(FILE_FORMATS)} "
            "(type → genes); see {markers}",
            params=["markers"],
        )
    text = path.read_text(encoding="utf-8-sig")
    try:
        if suffix == "json":
            table = _read_json(text)
        elif suffix == "gmt":
            table = _read_gmt(text)
        else:
            table = _read_table(text, "\t" if suffix == "tsv" else None)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"markers file {path.name}: {exc}; see {{markers}}", params=["markers"]) from None
    table = {t.strip(): _clean_genes(genes) for t, genes in table.items() if str(t).strip()}
    empty = [t for t, genes in table.items() if not genes]
    if not table or empty:
        what = f"type {empty[0]!r} has no genes" if empty else "no types found"
        raise InputError(f"markers file {path.name}: {what}; see {{markers}}", params=["markers"])
    return table


def _clean_genes(genes: list[tuple[str, float]]) -> list[tuple[str, float]]:
    seen: dict[str, tuple[str, float]] = {}
    for gene, weight in genes:
        gene = str(gene).strip()
        if not gene or normalise_gene(gene) in seen:
            continue
        weight = float(weight)
        if not weight > 0:
            raise ValueError(f"gene {gene!r} has weight {weight}; weights must be positive")
        seen[normalise_gene(gene)] = (gene, weight)
    top = max((w for _, w in seen.values()), default=1.0)
    return [(g, w / top) for g, w in seen.values()]  # scaled to the type's best gene, as in the knowledge base


def _read_json(text: str) -> dict[str, list[tuple[str, float]]]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("JSON must be an object: {type: [genes]} or {type: {gene: weight}}")
    out = {}
    for name, genes in data.items():
        if isinstance(genes, dict):
            out[name] = [(g, float(w)) for g, w in genes.items()]
        elif isinstance(genes, list):
            out[name] = [(g[0], float(g[1])) if isinstance(g, (list, tuple)) else (g, 1.0) for g in genes]
        else:
            raise ValueError(f"type {name!r}: expected a list of genes or a gene → weight object")
    return out


def _read_gmt(text: str) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.rstrip("\n").split("\t")]
        if len(fields) < 3 or not fields[0]:
            continue
        out.setdefault(fields[0], []).extend((g, 1.0) for g in fields[2:] if g)
    return out


def _read_table(text: str, delimiter: str | None) -> dict[str, list[tuple[str, float]]]:
    if delimiter is None:
        first = text.splitlines()[0] if text.strip() else ""
        delimiter = "\t" if "\t" in first else ";" if first.count(";") > first.count(",") else ","
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError("needs a header row and at least one gene")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    type_col = next((lower.index(c) for c in TYPE_COLUMNS if c in lower), None)
    gene_col = next((lower.index(c) for c in GENE_COLUMNS if c in lower), None)
    out: dict[str, list[tuple[str, float]]] = {}
    if type_col is not None and gene_col is not None:  # long format
        weight_col = next((lower.index(c) for c in WEIGHT_COLUMNS if c in lower), None)
        for row in rows[1:]:
            row = row + [""] * (len(header) - len(row))
            weight = float(row[weight_col]) if weight_col is not None and row[weight_col].strip() else 1.0
            out.setdefault(row[type_col].strip(), []).append((row[gene_col], weight))
        return out
    for j, name in enumerate(header):  # wide format: a column per type
        out[name] = [(row[j], 1.0) for row in rows[1:] if j < len(row) and row[j].strip()]
    return out


__all__ = [
    "MARKER_MODES",
    "CandidateMarkers",
    "candidate_markers",
    "map_candidate",
    "match_user_markers",
    "read_markers",
    "unused_user_types",
]
