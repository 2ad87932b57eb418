"""``cello1 build`` never writes a corrupt or misleading puzzle (issue 11): every odd input is
refused with one line or repaired deterministically and said so (warning + dataset card);
outputs are checked first, written whole, and a killed build leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import stat

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cello1.data.synthetic import toy_atlas
from cello1.grammar import render_completion
from cello1.io import check_puzzle, read_puzzles
from cello1.scoring import batch_reward
from reliability_helpers import assert_one_line_error, cli, files_under, spawn, wait_for

SMALL = ["--n-min", "3", "--n-max", "5", "--puzzles-per-n", "4", "--no-progress"]


def atlas():
    adata = toy_atlas(n_donors=3, cells_per_donor=60, n_types=6, n_genes=60, seed=1)
    adata.obs["suspension_type"] = "cell"
    return adata


def write(adata, folder, name):
    path = folder / f"{name}.h5ad"
    adata.write_h5ad(path)
    return path


def built(out):
    puzzles = read_puzzles(out / "train.jsonl") + read_puzzles(out / "test.jsonl")
    for p in puzzles:
        check_puzzle(p)  # the shared validator accepts every written puzzle
        # a perfect answer earns the full reward: the labels survive the answer format
        assert batch_reward(render_completion("x", p.answer), p.answer_str) == 1.0
    return puzzles


def run_ok(args, out):
    code, stdout, err = cli("build", *args, "-o", out, *SMALL)
    assert code == 0, err
    return err, (out / "README.md").read_text()


# ---- repaired and said so -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,expected",
    [(lambda s: s.replace("B cell", "B | cell"), "B / cell"), (lambda s: s.replace("B cell", "B\ncell"), "B cell")],
    ids=["pipe", "newline"],
)
def test_labels_that_break_the_answer_format_are_rewritten(tmp_path, bad, expected):
    adata = atlas()
    adata.obs["cell_type"] = [bad(v) for v in adata.obs["cell_type"].astype(str)]
    err, card = run_ok([write(adata, tmp_path, "in")], tmp_path / "out")
    assert "warning:" in err and "rewritten" in err and "rewritten" in card
    puzzles = built(tmp_path / "out")
    assert any(expected in p.candidates for p in puzzles)


def test_labels_differing_only_in_case_are_one_type(tmp_path):
    adata = atlas()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    labels[::3] = [v.lower() for v in labels[::3]]
    adata.obs["cell_type"] = labels
    err, card = run_ok([write(adata, tmp_path, "in")], tmp_path / "out")
    assert "differ only in case" in err and "merged as 'B cell'" in card
    puzzles = built(tmp_path / "out")
    assert not any("b cell" in p.candidates for p in puzzles)


def test_cells_without_a_donor_are_left_out_not_pooled(tmp_path):
    adata = atlas()
    donors = adata.obs["donor_id"].astype(object).to_numpy()
    donors[::4] = np.nan
    adata.obs["donor_id"] = donors
    missing = set(adata.obs_names[::4])
    err, card = run_ok([write(adata, tmp_path, "in")], tmp_path / "out")
    assert "no donor id" in err and "left out" in card
    puzzles = built(tmp_path / "out")
    assert all(p.donor is not None and not set(p.cell_ids) & missing for p in puzzles)


def test_repeated_gene_symbols_are_listed_once_per_cell(tmp_path):
    adata = atlas()
    symbols = adata.var["feature_name"].astype(str).to_numpy()
    symbols[1:8:2] = symbols[0:7:2]  # marker genes of the first type occur twice
    adata.var["feature_name"] = symbols
    err, card = run_ok([write(adata, tmp_path, "in")], tmp_path / "out")
    assert "occur more than once" in err and "occur more than once" in card
    for p in built(tmp_path / "out"):
        assert all(len(set(genes)) == len(genes) for genes in p.cells)


def test_missing_gene_symbols_fall_back_to_the_var_name_never_nan(tmp_path):
    adata = atlas()
    symbols = adata.var["feature_name"].astype(object).to_numpy()
    symbols[[0, 1, 8]] = np.nan
    adata.var["feature_name"] = symbols
    err, _ = run_ok([write(adata, tmp_path, "in")], tmp_path / "out")
    assert "have no name" in err
    genes = {g for p in built(tmp_path / "out") for cell in p.cells for g in cell}
    assert "nan" not in genes and "ENSG00000000000" in genes


def test_repeated_obs_names_do_not_fake_leakage(tmp_path):
    adata = atlas()
    adata.obs_names = [f"c{i % 40}" for i in range(adata.n_obs)]
    err, card = run_ok([write(adata, tmp_path, "in"), "--split", "donor"], tmp_path / "out")
    assert "share an obs name" in err
    leak = json.loads((tmp_path / "out" / "leakage.json").read_text())
    assert leak["split"] == "donor" and leak["test_puzzles_with_train_cell"] == 0
    ids = [c for p in built(tmp_path / "out") for c in p.cell_ids]
    assert all("#" in c for c in ids)


def test_no_donor_metadata_gives_a_context_sentence_not_an_empty_one(tmp_path):
    adata = atlas()
    adata.obs = adata.obs[["cell_type"]]
    path = write(adata, tmp_path, "in")
    run_ok([path], tmp_path / "plain")
    assert {p.context for p in built(tmp_path / "plain")} == {"No donor information is available for this cell."}
    run_ok([path, "--tissue", "lung", "--donor", "D7"], tmp_path / "given")
    puzzles = built(tmp_path / "given")
    assert {p.context for p in puzzles} == {"The cell originates from the lung."}
    assert {p.tissue for p in puzzles} == {"lung"} and {p.donor for p in puzzles} == {"D7"}
    assert "Context: The cell originates" in (tmp_path / "given" / "train.jsonl").read_text()


# ---- refused with one line ----------------------------------------------------------------------


def _nan_at(row, dense=False):
    adata = atlas()
    X = adata.X.toarray()
    X[row, 5] = np.nan
    adata.X = X if dense else sp.csr_matrix(X)
    labels = adata.obs["cell_type"].astype(object).to_numpy()
    labels[: row // 2] = "unknown"  # unlabelled cells before it: the row is not the row in the selection
    adata.obs["cell_type"] = labels
    return adata


@pytest.mark.parametrize(
    "make,args",
    [
        (lambda: _nan_at(97, dense=True), []),
        (lambda: _nan_at(97), ["--topk-engine", "numpy"]),
        (lambda: _nan_at(97), ["--topk-engine", "numba"]),
        (lambda: _nan_at(97), ["--backed", "--chunk-size", "16"]),
        (lambda: _nan_at(97), ["--backed", "--chunk-size", "16", "--topk-engine", "numpy"]),
    ],
    ids=["dense", "numpy", "numba", "backed", "backed-numpy"],
)
def test_non_finite_values_name_the_right_row_on_every_path(tmp_path, make, args):
    out = tmp_path / "out"
    result = cli("build", write(make(), tmp_path, "nan"), "-o", out, *args, *SMALL)
    assert_one_line_error(result, "nan:", "non-finite", "cell row 97", "'cell_00097'")
    assert not out.exists()


def _broken(kind):
    adata = atlas()
    if kind == "negative":
        adata.X = adata.X.toarray() - 0.5  # z-scored-like
    elif kind == "zero-cells":
        adata = adata[:0].copy()
    elif kind == "zero-genes":
        adata = adata[:, :0].copy()
    elif kind == "no-X":
        adata = ad.AnnData(obs=adata.obs, var=adata.var)
    elif kind == "all-zero":
        adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)
    elif kind == "no-labels":
        adata.obs["cell_type"] = "unknown"
    elif kind == "all-donors-missing":
        adata.obs["donor_id"] = np.nan
    return adata


@pytest.mark.parametrize(
    "kind,phrases",
    [
        ("negative", ["negative values", "cell row 0", "adata.raw.X"]),
        ("zero-cells", ["has no cells"]),
        ("zero-genes", ["has no genes"]),
        ("no-X", ["no expression matrix X"]),
        ("all-zero", ["no selected cell has a positive value", "X must hold"]),
        ("no-labels", ["empty selection", "--label-key"]),
        ("all-donors-missing", ["empty selection", "no donor id", "--donor-key"]),
    ],
)
def test_unusable_data_is_refused_naming_the_real_cause(tmp_path, kind, phrases):
    out = tmp_path / "out"
    line = assert_one_line_error(cli("build", write(_broken(kind), tmp_path, kind), "-o", out, *SMALL), *phrases)
    if kind == "all-zero":
        assert "--label-key" not in line  # not blamed on the label column
    assert not out.exists()


@pytest.mark.parametrize(
    "args,phrases",
    [
        (["--max-test", "-1"], ["--max-test", ">= 0"]),
        (["--max-cells", "-5"], ["--max-cells"]),
        (["--top-k", "0"], ["--top-k"]),
        (["--chunk-size", "0"], ["--chunk-size"]),
        (["--puzzles-per-n", "0"], ["--puzzles-per-n"]),
        (["--tissue", ""], ["--tissue"]),
        (["--topk-engine", "gpu"], ["--topk-engine"]),
        (["--n-min", "x"], ["--n-min"]),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, phrases):
    out = tmp_path / "out"
    assert_one_line_error(cli("build", "-o", out, *SMALL, *args), *phrases)
    assert not out.exists()


# ---- outputs -------------------------------------------------------------------------------------


def test_outputs_are_checked_before_the_build(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = write(atlas(), data, "in")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(cli("build", path, "-o", blocker, *SMALL), "not a folder")
    assert_one_line_error(cli("build", path, "-o", blocker / "out", *SMALL), "is a file, not a folder")
    assert_one_line_error(cli("build", path, "-o", "/proc/cello1-out", *SMALL), "cannot write in /proc")
    assert_one_line_error(cli("build", path, "-o", data, "--overwrite", *SMALL), "holds the input", "delete")
    assert_one_line_error(cli("build", path, str(path).replace("/in.h5ad", "/./in.h5ad"), "-o", tmp_path / "o", *SMALL),
                          "given twice")  # fmt: skip
    assert path.exists() and sorted(files_under(data)) == ["in.h5ad"]


def test_leftovers_of_killed_builds_are_removed_live_ones_kept(tmp_path):
    import socket

    from cello1.io import _host

    dead = __import__("subprocess").Popen(["true"])
    dead.wait()
    host = _host()
    stale = tmp_path / f".out.{dead.pid}-{host}.abc.tmp"
    stale_old = tmp_path / f".out.{dead.pid}-{host}.def.old"
    live = tmp_path / f".out.{os.getpid()}-{host}.ghi.tmp"
    elsewhere = tmp_path / f".out.{dead.pid}-otherhost.jkl.tmp"
    for folder in (stale, stale_old, live, elsewhere):
        folder.mkdir()
        (folder / "train.jsonl").write_text("half")
    run_ok([], tmp_path / "out")
    assert not stale.exists() and not stale_old.exists()
    assert live.exists() and elsewhere.exists()  # a running build's, another machine's
    assert socket.gethostname()


def test_kill_9_mid_write_leaves_no_output_and_the_next_build_cleans_up(tmp_path):
    out = tmp_path / "out"
    # slow the write down so the kill lands while the temporary folder is half full
    prelude = (
        "import time, cello1.data.card as card\n"
        "_write = card.write_parquet\n"
        "def slow(*a, **k):\n    _write(*a, **k); time.sleep(30)\n"
        "card.write_parquet = slow"
    )
    proc = spawn(["build", "-o", str(out), *SMALL], prelude=prelude)
    assert wait_for(lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), timeout=120)
    assert wait_for(lambda: any(any(p.iterdir()) for p in tmp_path.iterdir() if p.name.endswith(".tmp")))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists()  # nothing half-written under the real name
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    run_ok([], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    built(out)


def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        run_ok([], tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()} == {0o640}
