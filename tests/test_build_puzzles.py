"""Building puzzles: the embedded data, small CELLxGENE-schema atlases, splits, output."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest

from cello1.data import (
    EMBEDDED_LABEL_KEY,
    BuildConfig,
    build_puzzles,
    context_sentence,
    pbmc68k_reduced,
    top_genes,
    write_build,
)
from cello1.data.synthetic import toy_atlas
from cello1.io import read_puzzles
from cello1.puzzle import Puzzle, parse_record


def quiet_build(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_puzzles(*args, **kwargs)


@pytest.fixture(scope="session")
def embedded():
    return pbmc68k_reduced()


@pytest.fixture(scope="session")
def embedded_result(embedded):
    with pytest.warns(UserWarning, match="donor_id"):
        return build_puzzles(embedded, label_key=EMBEDDED_LABEL_KEY, n_min=3, n_max=4, seed=0)


@pytest.fixture(scope="session")
def atlas():
    return toy_atlas(n_donors=4, cells_per_donor=120, n_types=10, seed=0)


@pytest.fixture(scope="session")
def atlas_result(atlas):
    return quiet_build(atlas, n_min=3, n_max=6, puzzles_per_n=8, seed=0)


def records(puzzles):
    return [p.to_record() for p in puzzles]


def all_cells(puzzles):
    return {(p.source, c) for p in puzzles for c in p.cell_ids}


def all_gene_lists(puzzles):
    return {tuple(g) for p in puzzles for g in p.cells}


def check_puzzle_invariants(p: Puzzle, n_min: int, n_max: int):
    assert isinstance(p, Puzzle)
    assert n_min <= p.n <= n_max
    assert len(set(p.answer)) == p.n, "each cell a different type"
    assert p.candidates == sorted(p.answer)
    assert len(p.cell_ids) == len(set(p.cell_ids)) == p.n
    assert all(1 <= len(genes) <= 50 for genes in p.cells)
    assert parse_record(p.to_record()).to_record() == p.to_record()


# ---- the embedded data -----------------------------------------------------------------


def test_embedded_data(embedded):
    import scipy.sparse as sp

    assert embedded.shape == (700, 765)
    assert sp.isspmatrix_csr(embedded.X) and embedded.X.dtype == np.float32
    assert embedded.X.data.min() > 0, "log-normalised .raw, not the scaled .X"
    assert {"bulk_labels", "louvain", "tissue", "disease"} <= set(embedded.obs.columns)
    assert "donor_id" not in embedded.obs.columns
    assert {"X_pca", "X_umap"} <= set(embedded.obsm)
    assert embedded.obs[EMBEDDED_LABEL_KEY].nunique() == 10
    assert "CD3E" in embedded.var_names


def test_embedded_build(embedded, embedded_result):
    result = embedded_result
    assert result.split == "cell"
    assert len(result.train) > 0 and len(result.test) > 0
    assert {p.n for p in result.train} == {3, 4}
    for p in result.train + result.test:
        check_puzzle_invariants(p, 3, 4)
        assert (p.source, p.donor, p.tissue, p.disease) == ("pbmc68k_reduced", None, "blood", "normal")
        assert p.context == "The cell originates from the blood. The patient is healthy with no diagnosed disease."
    assert result.leakage["test_puzzles_with_train_cell"] == 0
    assert result.leakage["test_puzzles_with_train_gene_list"] == 0
    # gene lists are the cells' own top genes
    p = result.test[0]
    rows = [embedded.obs_names.get_loc(c) for c in p.cell_ids]
    assert p.cells == top_genes(embedded.X[rows], embedded.var_names, k=50)
    assert p.answer == embedded.obs[EMBEDDED_LABEL_KEY].iloc[rows].astype(str).tolist()


def test_no_input_uses_embedded_data():
    result = quiet_build(None, n_min=9, n_max=10, puzzles_per_n=3)
    assert result.config.label_key == EMBEDDED_LABEL_KEY
    assert {p.source for p in result.train} == {"pbmc68k_reduced"}
    assert {p.n for p in result.train} == {9, 10}


def test_default_n_range_is_the_official_8_to_15():
    atlas16 = toy_atlas(n_donors=2, cells_per_donor=160, n_types=16, n_genes=200, seed=3)
    result = quiet_build(atlas16, puzzles_per_n=2, split="random")
    ns = {p.n for p in result.train + result.test}
    assert ns == set(range(8, 16))
    assert BuildConfig().n_min == 8 and BuildConfig().n_max == 15 and BuildConfig().puzzles_per_n == 40
    # 2 donors x 2 batches x 8 values of N x 2 puzzles
    assert len(result.train) + len(result.test) == 2 * 2 * 8 * 2


# ---- CELLxGENE-schema atlases ----------------------------------------------------------


def test_atlas_puzzles_and_provenance(atlas, atlas_result):
    obs = atlas.obs
    for p in atlas_result.train + atlas_result.test:
        check_puzzle_invariants(p, 3, 6)
        rows = obs.loc[p.cell_ids]
        assert rows["donor_id"].nunique() == 1 and rows["batch"].nunique() == 1, "one donor and batch per puzzle"
        assert (rows["suspension_type"] == "cell").all()
        assert p.answer == rows["cell_type"].astype(str).tolist()
        assert p.donor == rows["donor_id"].iloc[0]
        assert p.tissue == rows["tissue"].iloc[0] and p.disease == rows["disease"].iloc[0]
        assert p.context == context_sentence(rows.iloc[0].to_dict())
        assert not any("_ENSG" in g for genes in p.cells for g in genes)


def test_donor_split_is_leakage_free(atlas_result):
    result = atlas_result
    assert result.split == "donor"
    train_donors = {p.donor for p in result.train}
    test_donors = {p.donor for p in result.test}
    assert test_donors and not (train_donors & test_donors)
    assert not (all_cells(result.train) & all_cells(result.test))
    assert result.leakage["test_puzzles_with_train_cell"] == 0
    assert result.leakage["test_donors_in_train"] == 0


def test_cell_split_is_leakage_free(atlas):
    result = quiet_build(atlas, split="cell", n_min=3, n_max=5, puzzles_per_n=10)
    assert result.split == "cell"
    assert result.train and result.test
    assert not (all_cells(result.train) & all_cells(result.test))
    assert not (all_gene_lists(result.train) & all_gene_lists(result.test))
    assert result.leakage["test_puzzles_with_train_gene_list_share"] == 0.0


def test_random_split_reproduces_the_original_leak(atlas):
    result = quiet_build(atlas, split="random", n_min=3, n_max=5, puzzles_per_n=10, test_fraction=0.25)
    total = 8 * 3 * 10  # 4 donors x 2 batches, N = 3..5
    assert len(result.train) + len(result.test) == total
    assert len(result.test) == round(0.25 * total)
    # stratified by N: every N gets its share
    assert Counter(p.n for p in result.test) == {3: 20, 4: 20, 5: 20}
    assert result.leakage["test_puzzles_with_train_cell"] > 0
    assert result.leakage["test_puzzles_with_train_cell_share"] > 0.5


def test_test_cap_is_stratified(atlas):
    result = quiet_build(atlas, split="random", n_min=3, n_max=5, puzzles_per_n=10, max_test=9)
    assert len(result.test) == 9
    assert Counter(p.n for p in result.test) == {3: 3, 4: 3, 5: 3}


def test_deterministic_for_a_seed(atlas, atlas_result):
    again = quiet_build(atlas, n_min=3, n_max=6, puzzles_per_n=8, seed=0)
    assert records(again.train) == records(atlas_result.train)
    assert records(again.test) == records(atlas_result.test)
    other = quiet_build(atlas, n_min=3, n_max=6, puzzles_per_n=8, seed=1)
    assert records(other.train) != records(atlas_result.train)


def test_dense_and_sparse_give_the_same_puzzles(atlas):
    dense = toy_atlas(n_donors=4, cells_per_donor=120, n_types=10, seed=0, dense=True)
    assert isinstance(dense.X, np.ndarray)
    a = quiet_build(atlas, n_min=3, n_max=4, puzzles_per_n=4)
    b = quiet_build(dense, n_min=3, n_max=4, puzzles_per_n=4)
    assert records(a.train) == records(b.train) and records(a.test) == records(b.test)


def test_suspension_filter_and_max_cells(atlas):
    nuclei = set(atlas.obs_names[atlas.obs["suspension_type"] == "nucleus"])
    with_nuclei = quiet_build(atlas, suspension_type=None, n_min=3, n_max=4, puzzles_per_n=20, split="random")
    assert {c for _, c in all_cells(with_nuclei.train)} & nuclei
    capped = quiet_build(atlas, max_cells=150, n_min=3, n_max=4, puzzles_per_n=20)
    assert capped.sources["adata0"]["selected"] == 150
    assert len(all_cells(capped.train + capped.test)) <= 150


def test_ensembl_suffix_kept_on_request(atlas):
    result = quiet_build(atlas, strip_ensembl=False, n_min=3, n_max=3, puzzles_per_n=5)
    assert any("_ENSG" in g for p in result.train for genes in p.cells for g in genes)


def test_several_inputs_and_batch_key_off(atlas):
    second = toy_atlas(n_donors=2, cells_per_donor=100, n_types=6, seed=5)
    second.uns["title"] = "second"
    result = quiet_build([atlas, second], batch_key=None, n_min=3, n_max=4, puzzles_per_n=5, split="random")
    counts = Counter(p.source for p in result.train + result.test)
    assert set(counts) == {"adata0", "second"}
    assert counts["second"] == 2 * 2 * 5  # 2 donors (no batch groups), N = 3, 4


def test_backed_build_from_h5ad_matches_in_memory(atlas, tmp_path):
    path = tmp_path / "atlas.h5ad"
    atlas.write_h5ad(path)
    memory = quiet_build(str(path), n_min=3, n_max=4, puzzles_per_n=4)
    backed = quiet_build(path, n_min=3, n_max=4, puzzles_per_n=4, backed=True, chunk_size=50)
    assert records(backed.train) == records(memory.train)
    assert {p.source for p in backed.train} == {"atlas"}


def test_unknown_option_is_rejected(atlas):
    with pytest.raises(TypeError, match="n_mni"):
        build_puzzles(atlas, n_mni=3)


# ---- the output folder -----------------------------------------------------------------


def test_write_build_round_trip(atlas_result, tmp_path):
    out = write_build(atlas_result, tmp_path / "puzzles", command="cello1 build x.h5ad -o puzzles")
    names = {p.name for p in out.iterdir()}
    assert names == {
        "train.jsonl",
        "test.jsonl",
        "train.parquet",
        "test.parquet",
        "leakage.json",
        "build_config.json",
        "README.md",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left"
    for split, puzzles in (("train", atlas_result.train), ("test", atlas_result.test)):
        assert records(read_puzzles(out / f"{split}.jsonl")) == records(puzzles)
        assert records(read_puzzles(out / f"{split}.parquet")) == records(puzzles)
    assert json.loads((out / "leakage.json").read_text()) == atlas_result.leakage
    card = (out / "README.md").read_text()
    assert "cello1 build x.h5ad -o puzzles" in card
    assert "### By N" in card and "### By tissue" in card and "### By disease" in card and "### By donor" in card
    assert "| donor_0 |" in card or "| donor_1 |" in card


def test_output_loads_with_datasets(atlas_result, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = write_build(atlas_result, tmp_path / "puzzles")
    cache = str(tmp_path / "cache")
    for kind, ext in (("json", "jsonl"), ("parquet", "parquet")):
        ds = datasets.load_dataset(
            kind, data_files={s: str(out / f"{s}.{ext}") for s in ("train", "test")}, cache_dir=cache
        )
        assert ds["train"].num_rows == len(atlas_result.train) and ds["test"].num_rows == len(atlas_result.test)
        row = ds["test"][0]
        assert row["user_msg"] == atlas_result.test[0].user_msg and row["cell_ids"] == atlas_result.test[0].cell_ids
    folder = datasets.load_dataset(str(out), cache_dir=cache)  # the card's YAML header picks the JSONL files
    assert folder["train"].num_rows == len(atlas_result.train)


def test_write_build_refuses_non_empty_folder_unless_overwrite(atlas_result, tmp_path):
    from cello1.errors import InputError

    out = tmp_path / "puzzles"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="overwrite"):
        write_build(atlas_result, out)
    write_build(atlas_result, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "train.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["puzzles"]


def test_partition_keeps_identical_gene_lists_together():
    from cello1.data.sampling import rng_for
    from cello1.data.split import partition_cells

    labels = ["A"] * 6 + ["B"] * 6
    keys = ["x", "x", "x", "y", "z", "w", "p", "q", "r", "s", "t", "x"]  # "x" also once in B
    groups = [np.arange(12)]
    for seed in range(20):
        is_test = partition_cells(groups, labels, keys, 0.5, rng_for(seed, "t"))
        test_keys = {keys[i] for i in np.flatnonzero(is_test)}
        train_keys = {keys[i] for i in np.flatnonzero(~is_test)}
        assert not (test_keys & train_keys)
        for label in "AB":  # every type keeps a train cell
            assert any(not is_test[i] for i in range(12) if labels[i] == label)
