"""Benchmark ``cello1.annotate`` on the embedded pbmc68k_reduced.

Clusters: ``louvain`` (11); candidates: the 10 ``bulk_labels``; truth for a cluster: its
majority ``bulk_labels``. For every non-LLM solver, both gene descriptions
(``--genes markers|mean``) and with / without the one-type-per-cluster constraint:

* cluster agreement — share of clusters labelled with their majority label;
* cell agreement — share of cells whose new label equals their own bulk label;
* chance — the same quantities for a uniformly random assignment under the same
  constraint (analytic: 1 / max(#clusters, #types) with the constraint, 1 / #types
  without; the random solver measures it empirically).

The reference solver needs labelled training puzzles. The only labelled data here is
the same 700 cells, so we report two set-ups and say which is which:

* ``disjoint``: cells are split 50/50 at random (seed 0); reference profiles are fitted
  on builder train puzzles (``build_puzzles``) from half A; the clusters of half B are
  annotated and scored on half B. Markers/random are scored on half B too, for a fair
  side-by-side.
* ``same cells (leaky)``: profiles fitted on train puzzles built from all 700 cells,
  then the same cells are annotated — an upper bound, not a fair score.

Run: ``python benchmarks/bench_annotate.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import pandas as pd

from cello1.annotation import annotate
from cello1.annotation.writeback import cluster_table_from_uns
from cello1.data import EMBEDDED_LABEL_KEY, build_puzzles, pbmc68k_reduced

GROUPBY = "louvain"
RANDOM_SEEDS = range(20)


def majority_labels(adata) -> pd.Series:
    table = pd.crosstab(adata.obs[GROUPBY].astype(str), adata.obs[EMBEDDED_LABEL_KEY].astype(str))
    return table.idxmax(axis=1)


def agreement(result, majority: pd.Series) -> tuple[float, float]:
    table = cluster_table_from_uns(result)
    clusters = float((table["label"].to_numpy() == majority.loc[table["cluster"]].to_numpy()).mean())
    cells = float((result.obs["cello1_cell_type"].astype(str) == result.obs[EMBEDDED_LABEL_KEY].astype(str)).mean())
    return clusters, cells


def chance(n_clusters: int, n_types: int, unique: bool) -> float:
    return 1 / max(n_clusters, n_types) if unique else 1 / n_types


def evaluate(adata, candidates, solver, genes, unique, **options) -> dict:
    majority = majority_labels(adata)
    start = time.perf_counter()
    result = annotate(adata, GROUPBY, candidates, solver=solver, genes=genes, allow_repeats=not unique, **options)
    seconds = time.perf_counter() - start
    clusters, cells = agreement(result, majority)
    return {"clusters": clusters, "cells": cells, "seconds": seconds}


def random_row(adata, candidates, genes, unique) -> dict:
    runs = [evaluate(adata, candidates, "random", genes, unique, seed=s) for s in RANDOM_SEEDS]
    return {
        "clusters": float(np.mean([r["clusters"] for r in runs])),
        "clusters_sd": float(np.std([r["clusters"] for r in runs])),
        "cells": float(np.mean([r["cells"] for r in runs])),
        "seconds": float(np.mean([r["seconds"] for r in runs])),
    }


def oracle_row(adata, candidates, unique: bool) -> dict:
    """Best achievable agreement: the true majority labels, under the same constraint
    (cluster and cell columns each maximised on their own)."""
    from scipy.optimize import linear_sum_assignment

    counts = pd.crosstab(adata.obs[GROUPBY].astype(str), adata.obs[EMBEDDED_LABEL_KEY].astype(str))
    counts = counts.reindex(columns=candidates, fill_value=0)
    is_major = (counts.to_numpy() == counts.to_numpy().max(axis=1, keepdims=True)).astype(float)
    if unique:
        r, c = linear_sum_assignment(is_major, maximize=True)
        clusters = is_major[r, c].sum() / len(counts)
        r, c = linear_sum_assignment(counts.to_numpy(), maximize=True)
        cells = counts.to_numpy()[r, c].sum() / adata.n_obs
    else:
        clusters, cells = 1.0, counts.to_numpy().max(axis=1).sum() / adata.n_obs
    return {"clusters": float(clusters), "cells": float(cells), "seconds": 0.0}


def reference_train(adata, seed: int = 0):
    """Builder train puzzles from ``adata`` (small N: only 10 types in the data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no donor column": one group
        result = build_puzzles(adata, label_key=EMBEDDED_LABEL_KEY, n_min=3, n_max=8, puzzles_per_n=60, seed=seed)
    return result.train


def run(setting: str, adata, candidates, reference_puzzles) -> list[dict]:
    n_clusters = adata.obs[GROUPBY].nunique()
    rows = []
    for genes in ("markers", "mean"):
        for unique in (True, False):
            base = {"setting": setting, "genes": genes, "one type per cluster": "yes" if unique else "no (repeats)"}
            ch = chance(n_clusters, len(candidates), unique)
            if genes == "markers":
                rows.append(
                    {
                        **base,
                        "genes": "–",
                        "solver": "oracle (true majority)",
                        **oracle_row(adata, candidates, unique),
                        "chance": ch,
                    }
                )
            rows.append(
                {**base, "solver": "random (20 seeds)", **random_row(adata, candidates, genes, unique), "chance": ch}
            )
            rows.append(
                {**base, "solver": "markers", **evaluate(adata, candidates, "markers", genes, unique), "chance": ch}
            )
            if reference_puzzles is not None:
                r = evaluate(adata, candidates, "reference", genes, unique, train=reference_puzzles)
                rows.append({**base, "solver": "reference", **r, "chance": ch})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    data = pbmc68k_reduced()
    candidates = sorted(data.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    rng = np.random.default_rng(0)
    in_a = rng.random(data.n_obs) < 0.5
    half_a, half_b = data[in_a].copy(), data[~in_a].copy()

    annotate(data, GROUPBY, candidates, solver="random")  # warm-up: numba compiles the Wilcoxon test once
    train_a = reference_train(half_a)
    train_all = reference_train(data)
    rows = []
    rows += run(f"all {data.n_obs} cells", data, candidates, None)
    rows += run(f"disjoint: half B ({half_b.n_obs} cells), reference fit on half A", half_b, candidates, train_a)
    leaky = []
    for genes in ("markers", "mean"):
        for unique in (True, False):
            r = evaluate(data, candidates, "reference", genes, unique, train=train_all)
            leaky.append({
                "setting": "same cells (leaky)", "genes": genes,
                "one type per cluster": "yes" if unique else "no (repeats)", "solver": "reference",
                **r, "chance": chance(data.obs[GROUPBY].nunique(), len(candidates), unique),
            })  # fmt: skip
    rows += leaky
    table = pd.DataFrame(rows)
    cols = ["setting", "solver", "genes", "one type per cluster", "clusters", "cells", "chance", "seconds"]
    table = table[cols + (["clusters_sd"] if "clusters_sd" in table else [])]
    pd.set_option("display.width", 200)
    print(f"machine: {platform.machine()}, {platform.python_version()}; reference train puzzles: "
          f"half A {len(train_a)}, all {len(train_all)}")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(markdown(table))


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (no tabulate dependency); random rows show mean ± sd."""
    head = [
        "setting",
        "solver",
        "genes",
        "one type per cluster",
        "cluster agreement",
        "cell agreement",
        "chance",
        "s/run",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        sd = r.get("clusters_sd")
        clusters = f"{r['clusters']:.3f}" + (f" ± {sd:.3f}" if sd == sd and sd is not None else "")
        cells = [r["setting"], r["solver"], r["genes"], r["one type per cluster"], clusters,
                 f"{r['cells']:.3f}", f"{r['chance']:.3f}", f"{r['seconds']:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
