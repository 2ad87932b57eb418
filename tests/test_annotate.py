"""cello1.annotate on the embedded pbmc68k_reduced: clusters in ``louvain``, candidates =
the set of ``bulk_labels``; agreement with each cluster's majority label vs chance."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cello1
from cello1.annotation import UNASSIGNED, annotate, annotate_clusters, parse_candidates
from cello1.annotation.core import margin_confidence
from cello1.annotation.puzzles import ClusterPuzzle, llm_view
from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced
from cello1.errors import InputError

GROUPBY = "louvain"


@pytest.fixture(scope="session")
def pbmc() -> ad.AnnData:
    return pbmc68k_reduced()


@pytest.fixture(scope="session")
def candidates(pbmc) -> list[str]:
    return sorted(pbmc.obs[EMBEDDED_LABEL_KEY].astype(str).unique())


@pytest.fixture(scope="session")
def majority(pbmc) -> pd.Series:
    """Majority bulk_labels per louvain cluster (index: cluster id as str)."""
    table = pd.crosstab(pbmc.obs[GROUPBY].astype(str), pbmc.obs[EMBEDDED_LABEL_KEY].astype(str))
    return table.idxmax(axis=1)


@pytest.fixture(scope="session")
def annotated(pbmc, candidates):
    # the default changed (issue 15): types may repeat; the one-type-per-cluster rule is opt-in
    return annotate(pbmc, groupby=GROUPBY, candidates=candidates, allow_repeats=False)  # markers, pooled


def cluster_agreement(result, majority: pd.Series) -> float:
    table = result.table
    return float((table["label"].to_numpy() == majority.loc[table["cluster"]].to_numpy()).mean())


def random_agreements(n_clusters: int, candidates: list[str], majority: np.ndarray, trials: int = 4000) -> np.ndarray:
    """Agreement of uniformly random one-to-one assignments (leftover clusters unassigned)."""
    rng = np.random.default_rng(0)
    pool = np.array(list(candidates) + [UNASSIGNED] * max(n_clusters - len(candidates), 0), dtype=object)
    return np.array([(rng.permutation(pool)[:n_clusters] == majority).mean() for _ in range(trials)])


# ---- the main claim ---------------------------------------------------------------------


def test_labels_agree_with_majority_far_above_chance(annotated, candidates, majority):
    table = annotated.table
    observed = cluster_agreement(annotated, majority)
    chance = random_agreements(len(table), candidates, majority.loc[table["cluster"]].to_numpy())
    # 11 clusters, 10 types: a random one-to-one assignment matches 1/11 of clusters on average
    assert chance.mean() == pytest.approx(1 / 11, abs=0.01)
    assert observed >= 3 * chance.mean()
    assert (chance >= observed).mean() < 0.01  # permutation p-value
    # per cell too: share of cells whose new label is their own bulk label
    cell_agree = (
        annotated.adata.obs["cello1_cell_type"].astype(str) == annotated.adata.obs[EMBEDDED_LABEL_KEY].astype(str)
    ).mean()
    assert cell_agree >= 3 / 11


def test_allow_repeats_is_argmax_and_beats_chance(pbmc, candidates, majority):
    result = annotate(pbmc, groupby=GROUPBY, candidates=candidates, allow_repeats=True)
    uns = result.adata.uns["cello1_cell_type"]
    best = np.asarray(uns["candidates"])[np.argmax(uns["scores"], axis=1)]
    assert list(uns["clusters"]["label"]) == list(best)
    assert UNASSIGNED not in set(uns["clusters"]["label"])
    assert len(set(best)) < len(best)  # over-clustered data: some types repeat
    assert cluster_agreement(result, majority) >= 5 / 10  # chance with repeats: 1/10


def test_one_type_per_cluster_and_unassigned_listed(annotated, candidates):
    table = annotated.table
    # one type per cluster; a type forced onto a cluster whose cells do not express its markers
    # is now called "unknown" (issue 15) instead of being handed out anyway
    used = table.loc[~table["label"].isin([UNASSIGNED, "unknown"]), "label"]
    assert used.is_unique and set(used) <= set(candidates)
    forced = table.loc[table["label"] == "unknown", "top_candidate"]
    assert set(used) | set(forced) == set(candidates)  # 11 clusters > 10 types: every type went somewhere
    assert list(annotated.adata.uns["cello1_cell_type"]["unassigned"]) == list(
        table.loc[table["label"] == UNASSIGNED, "cluster"]
    )
    assert len(annotated.adata.uns["cello1_cell_type"]["unassigned"]) == 1


def test_more_clusters_than_candidates(pbmc):
    few = ["CD14+ Monocyte", "CD19+ B", "CD34+", "CD56+ NK", "Dendritic"]
    result = annotate(pbmc, groupby=GROUPBY, candidates=few, allow_repeats=False)
    table = result.table
    assigned = table[table["label"] != UNASSIGNED]
    assert sorted(assigned["label"]) == sorted(few)  # each type exactly once
    assert (table["label"] == UNASSIGNED).sum() == 11 - len(few)
    assert np.isnan(table.loc[table["label"] == UNASSIGNED, "confidence"].astype(float)).all()
    labels = result.adata.obs["cello1_cell_type"]
    assert isinstance(labels.dtype, pd.CategoricalDtype) and UNASSIGNED in labels.cat.categories
    # the unambiguous clusters get their type: B cells (4) and CD34+ progenitors (10)
    by_cluster = dict(zip(table["cluster"], table["label"], strict=True))
    assert by_cluster["4"] == "CD19+ B" and by_cluster["10"] == "CD34+"


def test_fewer_clusters_than_candidates(pbmc, candidates, majority):
    subset = pbmc[pbmc.obs[GROUPBY].isin(["1", "2", "4", "10"])].copy()
    result = annotate(subset, groupby=GROUPBY, candidates=candidates)
    table = result.table
    assert len(table) == 4 and UNASSIGNED not in set(table["label"])
    assert table["label"].is_unique
    agree = (table["label"].to_numpy() == majority.loc[table["cluster"]].to_numpy()).sum()
    assert agree >= 3  # chance: 4 × 1/10 = 0.4 clusters
    assert set(result.adata.obs["cello1_cell_type"].cat.categories) == set(table["label"])


# ---- outputs ----------------------------------------------------------------------------


def test_returns_copy_and_leaves_input_alone(pbmc, candidates, annotated):
    before_obs = list(pbmc.obs.columns)
    before_uns = set(pbmc.uns.keys())
    assert annotated.adata is not pbmc
    assert "cello1_cell_type" not in pbmc.obs and "cello1" not in pbmc.uns
    assert list(pbmc.obs.columns) == before_obs and set(pbmc.uns.keys()) == before_uns
    assert "rank_genes_groups" not in pbmc.uns  # the marker ranking ran on a private object


def test_inplace_writes_into_the_object(pbmc, candidates):
    mine = pbmc.copy()
    returned = annotate(mine, groupby=GROUPBY, candidates=candidates, inplace=True, key_added="my_types")
    assert returned.adata is mine
    assert "my_types" in mine.obs and "my_types_confidence" in mine.obs
    assert mine.uns["my_types"]["settings"]["key_added"] == "my_types"  # uns is namespaced by key_added


def test_uns_round_trips_through_h5ad(annotated, tmp_path):
    path = tmp_path / "annotated.h5ad"
    annotated.adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    a, b = annotated.adata.uns["cello1_cell_type"], back.uns["cello1_cell_type"]
    for key in ("label", "cluster", "reasoning", "top_genes"):
        assert list(a["clusters"][key]) == list(b["clusters"][key])
    np.testing.assert_allclose(a["clusters"]["confidence"], b["clusters"]["confidence"], equal_nan=True)
    np.testing.assert_allclose(a["scores"], b["scores"], equal_nan=True)
    assert b["settings"]["solver"]["solver"] == "markers"
    assert b["settings"]["groupby"] == GROUPBY and bool(b["settings"]["allow_repeats"]) is False
    assert list(back.obs["cello1_cell_type"]) == list(annotated.adata.obs["cello1_cell_type"])
    assert any("Evidence:" in r for r in b["clusters"]["reasoning"])


def test_scores_and_confidence_are_consistent(annotated):
    # the confidence is now calibrated from the marker evidence (issue 15), not the margin of a
    # standardised score matrix: check it is the documented function of the stored evidence
    from cello1.annotation.evidence import confidence_of

    uns = annotated.adata.uns["cello1_cell_type"]
    scores, labels = np.asarray(uns["scores"]), list(uns["clusters"]["label"])
    assert scores.shape == (len(labels), len(uns["candidates"]))
    conf = np.asarray(uns["clusters"]["confidence"], dtype=float)
    z, vote = np.asarray(uns["evidence"]["z"]), np.asarray(uns["evidence"]["vote"])
    top = list(uns["clusters"]["top_candidate"])
    for i, (label, c) in enumerate(zip(labels, conf, strict=True)):
        if label == UNASSIGNED:
            assert np.isnan(c)
            continue
        assert 0.0 < c < 1.0
        j = list(uns["candidates"]).index(label if label != "unknown" else top[i])
        assert scores[i, j] == pytest.approx(uns["evidence"]["P"][i, j])
        assert c <= confidence_of(100.0, z[i, j], vote[i, j])  # at most the value with a huge margin


def test_split_by_builds_one_puzzle_per_sample(pbmc, candidates):
    data = pbmc.copy()
    data.obs["donor"] = np.where(np.arange(data.n_obs) % 2 == 0, "d1", "d2")
    answers, settings, _ = annotate_clusters(
        data, GROUPBY, candidates, split_by="donor", genes="mean", top_k=20, allow_repeats=False
    )
    assert [a.puzzle.split for a in answers] == ["d1", "d2"] and settings["n_puzzles"] == 2
    for answer in answers:
        assert "blood" in answer.puzzle.context  # donor context from obs (tissue column)
        assert all(len(genes) <= 20 for genes in answer.puzzle.cells)
        used = [c.label for c in answer.calls if c.label not in (UNASSIGNED, "unknown")]
        assert len(used) == len(set(used))
    result = annotate(data, groupby=GROUPBY, candidates=candidates, split_by="donor")
    assert set(result.adata.uns["cello1_cell_type"]["clusters"]["split"]) == {"d1", "d2"}
    assert result.adata.obs["cello1_cell_type"].notna().all()


def test_mean_genes_are_the_cluster_means(pbmc, candidates):
    answers, _, _ = annotate_clusters(pbmc, GROUPBY, candidates, genes="mean", top_k=5)
    puzzle = answers[0].puzzle
    cells = (pbmc.obs[GROUPBY].astype(str) == puzzle.clusters[0]).to_numpy()
    means = np.asarray(pbmc.X[cells].mean(axis=0)).ravel()
    expected = list(pbmc.var_names[np.argsort(-means, kind="stable")[:5]])
    assert puzzle.cells[0] == expected


def test_flat_api_annotate_is_the_function(pbmc, candidates):
    import cello1.annotation

    assert callable(cello1.annotate) and cello1.annotate is cello1.annotation.annotate
    result = cello1.annotate(pbmc, groupby=GROUPBY, candidates=candidates[:3], solver="random")
    assert result.adata.obs["cello1_cell_type"].notna().all()


# ---- bad input --------------------------------------------------------------------------


def test_missing_groupby_lists_available_columns(pbmc, candidates):
    with pytest.raises(InputError, match=r"'clusters' not in obs \(available: .*louvain"):
        annotate(pbmc, groupby="clusters", candidates=candidates)


@pytest.mark.parametrize("empty", [None, "", " , ", []])
def test_empty_candidates(pbmc, empty):
    with pytest.raises(InputError, match="no candidate cell types"):
        annotate(pbmc, groupby=GROUPBY, candidates=empty)


def test_layer_and_raw_choice(pbmc, candidates):
    data = pbmc.copy()
    data.layers["lognorm"] = data.X.copy()
    answers, settings, _ = annotate_clusters(data, GROUPBY, candidates, layer="lognorm", genes="mean", top_k=5)
    assert settings["expression"] == "layers/lognorm"
    _, settings, _ = annotate_clusters(data, GROUPBY, candidates, genes="mean", top_k=5)
    assert settings["expression"] == "X"  # no .raw here
    with pytest.raises(InputError, match="has no .raw"):
        annotate_clusters(data, GROUPBY, candidates, use_raw=True)


def test_unknown_options_are_clear(pbmc, candidates):
    with pytest.raises(InputError, match="genes"):
        annotate(pbmc, groupby=GROUPBY, candidates=candidates, genes="top")
    with pytest.raises(InputError, match="layer 'counts' not found"):
        annotate(pbmc, groupby=GROUPBY, candidates=candidates, layer="counts")
    with pytest.raises(ValueError, match="unknown solver"):
        annotate(pbmc, groupby=GROUPBY, candidates=candidates, solver="nope")


# ---- small units ------------------------------------------------------------------------


def test_parse_candidates(tmp_path):
    path = tmp_path / "types.txt"
    path.write_text("# my types\nB cell\n\nCD4-positive, alpha-beta T cell  # with a comma\nB cell\n")
    assert parse_candidates(path) == ["B cell", "CD4-positive, alpha-beta T cell"]
    assert parse_candidates(str(path)) == ["B cell", "CD4-positive, alpha-beta T cell"]
    assert parse_candidates("B cell, T cell,B cell") == ["B cell", "T cell"]
    assert parse_candidates("CD4-positive, alpha-beta T cell; B cell") == ["CD4-positive, alpha-beta T cell", "B cell"]
    assert parse_candidates("CD4+/CD25 T Reg") == ["CD4+/CD25 T Reg"]  # a slash is not a path
    with pytest.raises(InputError, match="candidates file missing.txt not found"):
        parse_candidates("missing.txt")


def test_tissue_proposes_candidates(pbmc):
    answers, _, cands = annotate_clusters(
        pbmc, GROUPBY, tissue="blood", genes="mean", solver="markers", allow_repeats=False
    )
    assert len(cands) > 11 and "B cell" in cands
    assert answers[0].puzzle.tissue == "blood"
    labels = [c.label for c in answers[0].calls]
    assert UNASSIGNED not in labels and len(set(labels)) == len(labels)  # fewer clusters than types


def test_margin_confidence():
    scores = np.array([[3.0, 1.0], [2.0, 1.0], [0.0, 0.0]])
    conf = margin_confidence(scores, [0, 1, None])
    assert conf[0] > 0.5 > conf[1] and np.isnan(conf[2])


def test_llm_view_offers_unassigned_only_when_needed():
    base = ClusterPuzzle(
        id="x", context="c", cells=[["A"], ["B"], ["C"]], candidates=["T1", "T2"], clusters=list("abc")
    )
    view = llm_view(base, allow_repeats=False)
    assert view.candidates == ["T1", "T2", UNASSIGNED]
    assert view.user_msg.endswith(view.note) and "3 cells but only 2" in view.note
    assert base.user_msg == cello1.Puzzle(id="x", context="c", cells=base.cells, candidates=base.candidates).user_msg
    square = ClusterPuzzle(id="y", context="c", cells=[["A"], ["B"]], candidates=["T1", "T2"], clusters=list("ab"))
    assert llm_view(square, allow_repeats=False).note == ""


def test_tissue_fills_context_when_obs_has_none(pbmc, candidates):
    data = pbmc.copy()
    del data.obs["tissue"]
    answers, _, _ = annotate_clusters(data, GROUPBY, candidates, tissue="lung", genes="mean", top_k=5)
    assert "lung" in answers[0].puzzle.context
    answers, _, _ = annotate_clusters(data, GROUPBY, candidates, genes="mean", top_k=5)
    assert "lung" not in answers[0].puzzle.context
