"""The annotation report: one self-contained HTML file a biologist can read and share.

Sections: the warnings; the exact command; the embedding coloured by label with the
cluster ids drawn on it; the clusters × candidates evidence heatmap; a scanpy dotplot of
each assigned type's top markers across the clusters; a table per cluster (label, broad
type, confidence, top evidence genes, runner-up, warnings); the candidate → Cell Ontology
mapping with how each name was matched; the settings. Figures are embedded as PNG data
URIs, so the file needs nothing else (no network, no folder of images).
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cello1.annotation.figures import dotplot_figure, embedding_figure, figure_data_uri, heatmap_figure
from cello1.annotation.writeback import embedding_basis
from cello1.io import atomic_path

NO_CALL = ("unknown", "unassigned")
DOTPLOT_GENES = 4  # markers per assigned type in the dotplot
LOW_CONFIDENCE = 0.5

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #1b1b1b; line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.summary { color: #555; } pre { background: #f5f5f5; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
.warnings { background: #fff4e5; border-left: 5px solid #f0a020; padding: .5rem 1rem; }
.warnings li { margin: .25rem 0; } .ok { background: #eef8ee; border-left: 5px solid #4caf50; padding: .5rem 1rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .3rem .4rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.no-call td { background: #f2f2f2; color: #666; } tr.low td.conf { color: #b00020; font-weight: bold; }
tr.flag td { background: #fff4e5; } img { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
.note { color: #666; font-style: italic; }
"""
# after loading, record how many figures decoded (checked by the headless-browser test)
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok.length));
  document.body.setAttribute('data-clusters', String(document.querySelectorAll('#clusters tbody tr').length));
});
"""


def write_report(result, path: str | os.PathLike) -> Path:
    """Render the report of ``result`` (an :class:`~cello1.annotation.result.AnnotationResult`) to ``path``."""
    path = Path(path)
    page = render_report(result)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render_report(result) -> str:
    """The report as one HTML string."""
    settings = result.settings
    table = result.table
    parts = [
        f"<h1>cello1 annotation: <code>{_e(result.key_added)}</code></h1>",
        f"<p class='summary'>{_summary(result)}</p>",
        _warnings_section(result),
        "<h2>Command</h2>",
        f"<pre id='command'>{_e(settings.get('command', ''))}</pre>",
        "<h2>Embedding by label</h2>",
        _figure_or_note("umap", lambda: _embedding(result), "no 2-D embedding in obsm (e.g. X_umap) to draw"),
        "<h2>Marker evidence: clusters × candidates</h2>",
        "<p>Colour: how far a candidate's markers sit above random genes in the cluster's own cells (z, in SD); "
        "boxed: the cluster's label. Clusters without a box are unknown or unassigned.</p>",
        _figure_or_note("heatmap", lambda: _heatmap(result), "no marker evidence to show"),
        "<h2>Top markers of each assigned type</h2>",
        "<p>scanpy dotplot: colour = mean expression (scaled per gene), size = share of cells expressing it.</p>",
        _figure_or_note("dotplot", lambda: _dotplot(result), "no assigned type has marker genes in the data"),
        "<h2>Clusters</h2>",
        _clusters_table(table),
        "<h2>Candidates → Cell Ontology</h2>",
        _mapping_table(result.mapping),
        _notes_section(result.notes),
        "<h2>Settings</h2>",
        f"<details><summary>all settings</summary><pre>{_e(_settings_text(settings))}</pre></details>",
    ]
    title = f"cello1 annotation — {result.key_added}"
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _summary(result) -> str:
    table = result.table
    labels = table["label"].astype(str)
    n_cells = int(table["n_cells"].sum())
    solver = result.settings.get("solver", {})
    solver_name = solver.get("solver", "?") if isinstance(solver, dict) else str(solver)
    counts = {x: int((labels == x).sum()) for x in NO_CALL}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017 - readable on 3.11
    return _e(
        f"{len(table)} clusters ({n_cells} cells) of obs['{result.settings.get('groupby')}'], "
        f"{labels[~labels.isin(NO_CALL)].nunique()} types used, {counts['unknown']} unknown, "
        f"{counts['unassigned']} unassigned; solver {solver_name}; {result.settings.get('assignment', '')}; "
        f"cello1 {result.settings.get('cello1_version', '')}; {when}"
    )


def _warnings_section(result) -> str:
    if not result.warnings:
        return "<div class='ok' id='warnings'>No warnings.</div>"
    items = "".join(f"<li>{_e(w)}</li>" for w in result.warnings)
    return f"<h2>Warnings</h2><div class='warnings'><ul id='warnings'>{items}</ul></div>"


def _figure_or_note(name: str, build, missing: str) -> str:
    fig = build()
    if fig is None:
        return f"<p class='note' id='{name}-missing'>{_e(missing)}</p>"
    return f"<img id='{name}' alt='{name}' src='{figure_data_uri(fig)}'>"


def _embedding(result):
    basis = embedding_basis(result.adata)
    if basis is None:
        return None
    return embedding_figure(result.adata, result.key_added, basis, groupby=result.settings.get("groupby"))


def _heatmap(result):
    ev = result.evidence
    if ev is None or not len(ev.groups):
        return None
    z = ev.frame("z")
    names = _names(result.table)
    labels = dict(zip(names, result.table["label"], strict=True))
    return heatmap_figure(z, [labels.get(g) for g in z.index], title="marker evidence (z)")


def _names(table: pd.DataFrame) -> list[str]:
    return [c if s == "all" else f"{s}/{c}" for s, c in zip(table["split"], table["cluster"], strict=True)]


def _dotplot(result):
    ev, expr = result.evidence, result.expression
    if ev is None or expr is None:
        return None
    used = [x for x in dict.fromkeys(result.table["label"]) if x in ev.candidates]
    markers = {t: [g for g, _, _ in ev.marker_pct[ev.candidates.index(t)][:DOTPLOT_GENES]] for t in used}
    groups = np.array(ev.groups + [None], dtype=object)[np.where(ev.codes >= 0, ev.codes, -1)]
    order = pd.Categorical(groups, categories=ev.groups)
    return dotplot_figure(expr.X, expr.genes, pd.Series(order), markers)


def _clusters_table(table: pd.DataFrame) -> str:
    head = ("cluster", "cells", "label", "broad type", "confidence", "top evidence genes (percentile)", "runner-up",
            "warnings")  # fmt: skip
    rows = []
    for name, r in zip(_names(table), table.itertuples(), strict=True):
        conf = float(r.confidence)
        css = ["no-call"] if r.label in NO_CALL else []
        if np.isfinite(conf) and conf < LOW_CONFIDENCE:
            css.append("low")
        if r.warnings and r.label not in NO_CALL:
            css.append("flag")
        label = r.label if r.label not in NO_CALL else f"{r.label} (best: {r.top_candidate or '–'})"
        cells = [name, r.n_cells, label, r.coarse_label, "–" if not np.isfinite(conf) else f"{conf:.2f}",
                 r.evidence_genes or "–", r.runner_up or "–", r.warnings or ""]  # fmt: skip
        tds = "".join(f"<td class='conf'>{_e(c)}</td>" if i == 4 else f"<td>{_e(c)}</td>" for i, c in enumerate(cells))
        rows.append(f"<tr class='{' '.join(css)}' data-cluster='{_e(name)}'>{tds}</tr>")
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table id='clusters'><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _mapping_table(mapping: pd.DataFrame) -> str:
    head = ("candidate", "Cell Ontology term", "how matched", "markers from", "markers in data", "top markers")
    rows = []
    for r in mapping.itertuples():
        flag = r.how in ("fuzzy", "unmapped") or r.n_in_data == 0
        how = f"{r.how} ({r.score:.2f})" if r.how == "fuzzy" else r.how
        term = f"{r.term_name} ({r.term_id})" if r.term_id else (r.term_name or "–")
        cells = [r.candidate, term, how, f"{r.markers_from} [{r.source}]", f"{r.n_in_data} / {r.n_markers}",
                 r.top_markers or "–"]  # fmt: skip
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        rows.append(f"<tr class='{'flag' if flag else ''}' data-how='{_e(r.how)}'>{tds}</tr>")
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table id='mapping'><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _notes_section(notes: list[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul id='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"


def _settings_text(settings: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in settings.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_settings_text(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


__all__ = ["render_report", "write_report"]
