"""The embedded default data set: scanpy's bundled ``pbmc68k_reduced`` (no download).

700 peripheral blood mononuclear cells (10x Genomics "Fresh 68k PBMCs", Zheng et al.
2017) with 765 genes, labelled in ``obs["bulk_labels"]`` (10 types). scanpy ships the
log-normalised counts in ``.raw`` and a scaled matrix (with negative values) in ``.X``;
puzzles need expression, so :func:`pbmc68k_reduced` puts the ``.raw`` matrix in ``.X``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

EMBEDDED_LABEL_KEY = "bulk_labels"
EMBEDDED_SOURCE = "pbmc68k_reduced"

# Metadata added on purpose (the bundled object has none): the cells are PBMCs from a
# healthy donor, so the CELLxGENE-schema fields below are facts about the data set,
# not guesses. Sex, age and ethnicity are not published per cell and are left out.
EMBEDDED_METADATA = {"tissue": "blood", "disease": "normal", "suspension_type": "cell"}


def pbmc68k_reduced() -> AnnData:
    """Scanpy's ``pbmc68k_reduced`` as a ready-to-build AnnData.

    * ``.X``: the log-normalised expression from ``.raw`` (CSR, float32, 700 × 765);
    * ``var_names``: gene symbols;
    * ``obs``: the original columns (``bulk_labels``, ``louvain``, …) plus
      ``tissue="blood"``, ``disease="normal"``, ``suspension_type="cell"``
      (:data:`EMBEDDED_METADATA`); there is a single donor and no ``donor_id`` column;
    * ``obsm``: the bundled embeddings (``X_pca``, ``X_umap``);
    * ``uns["title"] = "pbmc68k_reduced"`` (used as the puzzles' ``source``).
    """
    import anndata as ad
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundled = sc.datasets.pbmc68k_reduced()
    raw = bundled.raw
    obs = bundled.obs.copy()
    for column, value in EMBEDDED_METADATA.items():
        obs[column] = pd.Categorical([value] * obs.shape[0])
    adata = ad.AnnData(
        X=sp.csr_matrix(raw.X, dtype="float32"),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(raw.var_names.astype(str), name=None)),
        obsm={key: value.copy() for key, value in bundled.obsm.items()},
    )
    adata.uns["title"] = EMBEDDED_SOURCE
    return adata
