"""Small synthetic CELLxGENE-schema data, for tests, examples and benchmarks.

:func:`toy_atlas` makes an AnnData that looks like a CELLxGENE download (obs
``cell_type``, ``donor_id``, ``sex``, ``development_stage``, ``self_reported_ethnicity``,
``tissue``, ``disease``, ``suspension_type``, ``batch``; var ``feature_name``) with
marker genes per type, so puzzles built from it are solvable.
:func:`random_csr` makes a large random sparse matrix for throughput benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

TOY_TYPES = (
    "B cell",
    "CD4-positive, alpha-beta T cell",
    "CD8-positive, alpha-beta T cell",
    "classical monocyte",
    "natural killer cell",
    "plasmacytoid dendritic cell",
    "platelet",
    "erythrocyte",
    "mast cell",
    "neutrophil",
)


def toy_atlas(
    n_donors: int = 4,
    cells_per_donor: int = 120,
    n_types: int = 10,
    n_genes: int = 300,
    markers_per_type: int = 8,
    dense: bool = False,
    nuclei_share: float = 0.1,
    seed: int = 0,
) -> AnnData:
    """A CELLxGENE-schema AnnData with ``n_donors`` donors and ``n_types`` types.

    ``X`` holds log1p counts (float32; CSR unless ``dense``). Every 7th gene symbol
    carries an Ensembl suffix (``GENE7_ENSG00000000007``) as in the official data.
    About ``nuclei_share`` of the cells have ``suspension_type == "nucleus"``.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    types = [TOY_TYPES[i] if i < len(TOY_TYPES) else f"cell type {i}" for i in range(n_types)]
    n_cells = n_donors * cells_per_donor
    labels = np.asarray([types[i % n_types] for i in range(n_cells)], dtype=object)
    rng.shuffle(labels)
    donor_idx = np.repeat(np.arange(n_donors), cells_per_donor)
    counts = rng.poisson(0.15, size=(n_cells, n_genes)).astype(np.float32)
    type_idx = np.asarray([types.index(t) for t in labels])
    for t in range(n_types):
        genes = (np.arange(markers_per_type) + t * markers_per_type) % n_genes
        rows = np.flatnonzero(type_idx == t)
        counts[np.ix_(rows, genes)] += rng.poisson(6.0, size=(rows.size, genes.size))
    X = np.log1p(counts).astype(np.float32)
    donors = [f"donor_{d}" for d in range(n_donors)]
    per_donor = {
        "sex": ["female" if d % 2 == 0 else "male" for d in range(n_donors)],
        "development_stage": [f"{30 + 7 * d}-year-old human stage" for d in range(n_donors)],
        "self_reported_ethnicity": ["European" if d % 3 else "unknown" for d in range(n_donors)],
        "tissue": ["lung" if d % 2 == 0 else "blood" for d in range(n_donors)],
        "disease": ["normal" if d % 2 == 0 else "chronic obstructive pulmonary disease" for d in range(n_donors)],
        "smoking_status": ["non-smoker" if d % 2 == 0 else "smoker" for d in range(n_donors)],
    }
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(labels),
            "donor_id": pd.Categorical([donors[d] for d in donor_idx]),
            **{k: pd.Categorical([v[d] for d in donor_idx]) for k, v in per_donor.items()},
            "suspension_type": pd.Categorical(np.where(rng.random(n_cells) < nuclei_share, "nucleus", "cell")),
            "batch": pd.Categorical([f"batch_{i % 2}" for i in range(n_cells)]),
        },
        index=pd.Index([f"cell_{i:05d}" for i in range(n_cells)]),
    )
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    symbols = [f"GENE{i}_{ids[i]}" if i % 7 == 0 else f"GENE{i}" for i in range(n_genes)]
    var = pd.DataFrame({"feature_name": pd.Categorical(symbols)}, index=pd.Index(ids))
    return ad.AnnData(X=X if dense else sp.csr_matrix(X), obs=obs, var=var)


def random_csr(
    n_cells: int,
    n_genes: int,
    nnz_per_cell: int = 1000,
    seed: int = 0,
    dtype: str = "float32",
) -> sp.csr_matrix:
    """A random CSR matrix with about ``nnz_per_cell`` positive log-normal values per row
    (distinct sorted columns per row), built row block by row block.
    """
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_cells, 10_000):
        rows = min(10_000, n_cells - start)
        cols = np.sort(rng.integers(0, n_genes, size=(rows, nnz_per_cell), dtype=np.int32), axis=1)
        data = rng.lognormal(0.0, 1.0, size=(rows, nnz_per_cell)).astype(dtype)
        block = sp.csr_matrix((data.ravel(), cols.ravel(), np.arange(rows + 1) * nnz_per_cell), shape=(rows, n_genes))
        block.sum_duplicates()
        blocks.append(block)
    return sp.vstack(blocks, format="csr")
