"""Top-K genes per cell: the vectorised chunked version against a naive per-cell one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cello1.data import strip_ensembl_suffix, top_gene_indices, top_genes
from cello1.data.topgenes import gene_symbols, topk_chunk


def naive_top(X, k: int) -> list[list[int]]:
    """Per cell: densify, full stable sort by value descending (ties: lower index), keep > 0."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    out = []
    for row in X:
        order = np.argsort(-row.astype(np.float64), kind="stable")
        out.append([int(j) for j in order[:k] if row[j] > 0])
    return out


def as_lists(idx: np.ndarray) -> list[list[int]]:
    return [[int(j) for j in row if j >= 0] for row in idx]


def random_matrix(rng, n=300, g=120, density=0.3, dtype=np.float32, ties=False, negative=False):
    X = sp.random(n, g, density=density, format="csr", random_state=rng, dtype=np.float64)
    if ties:  # log1p of small integer counts: many exact ties, as in real data
        X.data = np.log1p(np.ceil(X.data * 3))
    if negative:  # e.g. a scaled matrix: negative values must never be listed
        X.data -= 0.5
    X.data = X.data.astype(dtype)
    return X


@pytest.mark.parametrize(
    "dtype,ties,negative",
    [
        (np.float32, False, False),
        (np.float32, True, False),
        (np.float64, False, False),
        (np.float64, True, True),
        (np.int64, True, False),
    ],
)
@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_matches_naive(dtype, ties, negative, k, engine):
    rng = np.random.default_rng(k)
    X = random_matrix(rng, dtype=dtype, ties=ties, negative=negative)
    if dtype == np.int64:  # raw integer counts
        X.data = np.ceil(rng.random(X.data.size) * 4).astype(np.int64)
    expected = naive_top(X, k)
    assert as_lists(top_gene_indices(X, k=k, chunk_size=37, engine=engine)) == expected
    # chunked reading (dense blocks, as from a backed file) gives the same lists
    assert as_lists(top_gene_indices(X.toarray(), k=k, chunk_size=37, engine=engine)) == expected


def test_chunk_size_dense_and_sparse_agree():
    rng = np.random.default_rng(0)
    X = random_matrix(rng, n=200, g=80, ties=True)
    ref = top_gene_indices(X, k=10, chunk_size=1000)
    for chunk in (1, 7, 64):
        assert np.array_equal(top_gene_indices(X, k=10, chunk_size=chunk), ref)
    assert np.array_equal(top_gene_indices(X.toarray(), k=10, chunk_size=13), ref)
    assert np.array_equal(top_gene_indices(sp.csc_matrix(X), k=10, chunk_size=13), ref)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_ties_broken_by_gene_index_and_zeros_never_listed(engine):
    X = sp.csr_matrix(np.array([[0, 2, 1, 2, 0, 2], [0, 0, 0, 0, 0, 0], [-1, 0, 3, 0, 0, 0]], dtype=np.float32))
    idx = topk_chunk(X, 4, engine)
    assert idx.tolist() == [[1, 3, 5, 2], [-1, -1, -1, -1], [2, -1, -1, -1]]
    names = top_genes(X, ["A", "B", "C", "D", "E", "F"], k=4, engine=engine)
    assert names == [["B", "D", "F", "C"], [], ["C"]]


def test_rows_subset_reads_only_those_cells():
    rng = np.random.default_rng(1)
    X = random_matrix(rng, n=100, g=50)
    rows = np.array([0, 3, 50, 51, 99])
    full = top_gene_indices(X, k=6, chunk_size=8)
    assert np.array_equal(top_gene_indices(X, k=6, chunk_size=8, rows=rows), full[rows])


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_are_reported(engine, bad, dtype):
    from cello1.errors import InputError

    X = sp.csr_matrix(np.array([[1.0, 2.0], [3.0, 1.0], [bad, 1.0]], dtype=dtype))
    with pytest.raises(InputError, match="non-finite.*row 2"):
        top_gene_indices(X, k=2, engine=engine)
    with pytest.raises(InputError, match="non-finite.*row 2"):
        top_gene_indices(X.toarray(), k=2, engine=engine, chunk_size=2)


def test_engines_agree_on_wide_rows_with_many_ties():
    rng = np.random.default_rng(4)
    X = sp.random(60, 3000, density=0.5, format="csr", random_state=rng, dtype=np.float32)
    X.data = np.round(X.data * 4).astype(np.float32)  # 0..4: huge tie groups, some zeros stored
    ref = top_gene_indices(X, k=50, engine="numpy")
    assert np.array_equal(top_gene_indices(X, k=50, engine="numba"), ref)
    assert as_lists(ref) == naive_top(X, 50)


def test_unknown_engine():
    with pytest.raises(ValueError, match="engine"):
        top_gene_indices(sp.csr_matrix((1, 1), dtype=np.float32), k=1, engine="gpu")


def test_gene_name_count_must_match():
    from cello1.errors import InputError

    with pytest.raises(InputError, match="gene names"):
        top_genes(sp.csr_matrix((2, 3), dtype=np.float32), ["A", "B"], k=2)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("CSF2RA_ENSG00000198223", "CSF2RA"),
        ("MT-CO1_ENSG00000198804.2", "MT-CO1"),
        ("Cd4_ENSMUSG00000023274", "Cd4"),
        ("HLA-DRB1", "HLA-DRB1"),
        ("ENSG00000198223", "ENSG00000198223"),
        ("RP11_123", "RP11_123"),
    ],
)
def test_strip_ensembl_suffix(name, expected):
    assert strip_ensembl_suffix(name) == expected


def test_gene_symbols_option_keeps_suffix():
    assert gene_symbols(["A_ENSG00000000001"], strip_ensembl=False).tolist() == ["A_ENSG00000000001"]
    assert gene_symbols(["A_ENSG00000000001"]).tolist() == ["A"]


def test_backed_h5ad_matches_in_memory(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(2)
    X = random_matrix(rng, n=150, g=40, ties=True)
    ad.AnnData(X=X).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    try:
        got = top_gene_indices(backed.X, k=7, chunk_size=16, rows=np.arange(0, 150, 3))
    finally:
        backed.file.close()
    assert np.array_equal(got, top_gene_indices(X, k=7)[::3])
