"""Fit the confidence model of ``cello1.annotation.evidence`` and measure it honestly.

Rows: every cluster of every clustering (official + extra) of the four benchmark datasets
(``annotate_data.py``), plus leave-one-type-out runs (the dropped type's clusters are wrong
whatever they get, which teaches the model what a missing candidate looks like). Features of
the top candidate: ``log1p(margin in SE)``, ``log1p(z)``, the vote share. Target: the top
candidate is (one of) the cluster's majority known label(s). Logistic regression on
standardised features, every run weighted equally.

Prints leave-one-dataset-out AUROC / Brier / ECE per dataset and the coefficients fitted on
everything (the ones shipped as ``evidence.CALIBRATION``).

Run: ``python benchmarks/calibrate_annotate.py`` (~2 min; needs the wheels, see annotate_data.py).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from annotate_data import DATASETS
from bench_annotate import auroc, majorities

warnings.simplefilter("ignore")
SETS = ["pbmc68k_reduced", "wu2020_T+decoys", "oligodendroglioma", "spectra_1k"]
FEATURES = ["log1p_margin_se", "log1p_z", "vote"]


def features(result) -> pd.DataFrame:
    """Per cluster: the top candidate and its confidence features."""
    ev = result.evidence
    rows = []
    for k, name in enumerate(ev.groups):
        P = np.where(np.isfinite(ev.P[k]), ev.P[k], -np.inf)
        order = np.argsort(-P, kind="stable")
        best, runner = int(order[0]), int(order[1]) if len(order) > 1 else None
        margin = ev.margin_se(k, best, runner) if runner is not None else 10.0
        z = ev.z[k, best] if np.isfinite(ev.z[k, best]) else 0.0
        rows.append({"cluster": name, "top": ev.candidates[best],
                     "log1p_margin_se": np.log1p(np.clip(margin, 0, 100)), "log1p_z": np.log1p(max(z, 0.0)),
                     "vote": ev.vote[k, best]})  # fmt: skip
    return pd.DataFrame(rows)


def collect() -> pd.DataFrame:
    from cello1 import annotate

    frames = []
    for name in SETS:
        ds = DATASETS[name]()
        for groupby in [ds.groupby, *ds.extra]:
            clusters = ds.adata.obs[groupby].astype(str)
            major = majorities(clusters, ds.truth)
            present = sorted(set(ds.truth.dropna()) & set(ds.candidates))
            runs = [("", ds.candidates)] + [(t, [c for c in ds.candidates if c != t]) for t in present]
            for dropped, cands in runs:
                f = features(annotate(ds.adata, groupby, cands))
                f = f[f["cluster"].isin(major)]
                f["right"] = [top in major[c] for c, top in zip(f["cluster"], f["top"], strict=True)]
                f["dataset"], f["clustering"], f["official"], f["dropped"] = (
                    name,
                    groupby,
                    groupby == ds.groupby,
                    dropped,
                )
                frames.append(f)
        print(f"collected {name}", flush=True)
    return pd.concat(frames, ignore_index=True)


def fit(df: pd.DataFrame) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    X = df[FEATURES].to_numpy(dtype=float)
    mu, sd = X.mean(0), X.std(0) + 1e-9
    weight = 1.0 / df.groupby(["dataset", "clustering", "dropped"])["cluster"].transform("count")
    model = LogisticRegression(C=1.0, max_iter=1000).fit((X - mu) / sd, df["right"].astype(int), sample_weight=weight)
    coef = model.coef_[0] / sd
    return {"intercept": float(model.intercept_[0] - (model.coef_[0] * mu / sd).sum()),
            **{f: float(c) for f, c in zip(FEATURES, coef, strict=True)}}  # fmt: skip


def predict(df: pd.DataFrame, cal: dict[str, float]) -> np.ndarray:
    x = cal["intercept"] + sum(cal[f] * df[f].to_numpy(dtype=float) for f in FEATURES)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def ece(p, y, bins: int = 5) -> float:
    p, y = np.asarray(p), np.asarray(y, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def main() -> None:
    df = collect()
    df["p_lodo"] = np.nan
    for name in SETS:
        test = df["dataset"] == name
        df.loc[test, "p_lodo"] = predict(df[test], fit(df[~test]))
    rows = []
    for name in [*SETS, "all"]:
        d = df if name == "all" else df[df["dataset"] == name]
        subsets = {
            "official clusterings": d["official"] & (d["dropped"] == ""),
            "all clusterings": d["dropped"] == "",
            "official + one type removed": d["official"],
        }
        for subset, mask in subsets.items():
            s = d[mask]
            rows.append({"dataset": name, "rows": subset, "n": len(s), "top right": s["right"].mean(),
                         "AUROC (LODO)": auroc(s["p_lodo"], s["right"]),
                         "Brier": float(np.mean((s["p_lodo"] - s["right"]) ** 2)), "ECE": ece(s["p_lodo"], s["right"]),
                         "mean confidence": s["p_lodo"].mean()})  # fmt: skip
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    print("fitted on everything (evidence.CALIBRATION):", json.dumps({k: round(v, 4) for k, v in fit(df).items()}))


if __name__ == "__main__":
    main()
