"""``cello1 annotate`` (issue 11): every output checked before the run (a folder, the input,
two outputs on one file), unusable h5ad files refused with one line, nothing written on error,
a kill never leaves a half-written .h5ad."""

from __future__ import annotations

import hashlib
import signal

import anndata as ad
import numpy as np
import pytest

from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced
from reliability_helpers import assert_one_line_error, cli, spawn, wait_for


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotate_rel")
    data = pbmc68k_reduced()
    data.write_h5ad(folder / "pbmc.h5ad")
    types = sorted(data.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    (folder / "types.txt").write_text("\n".join(types) + "\n")
    data[:0].copy().write_h5ad(folder / "no_cells.h5ad")
    ad.AnnData(obs=data.obs, var=data.var).write_h5ad(folder / "no_x.h5ad")
    (folder / "text.h5ad").write_text("not hdf5")
    return folder


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder):
    return {p.name: digest(p) for p in folder.iterdir() if p.is_file()} | {p.name: "dir" for p in folder.iterdir()
                                                                           if p.is_dir()}  # fmt: skip


def test_outputs_are_checked_before_anything_is_written(workdir, tmp_path):
    data = workdir / "pbmc.h5ad"
    base = ["annotate", data, "-g", "louvain", "-c", workdir / "types.txt"]
    before = snapshot(workdir)
    (tmp_path / "folder").mkdir()
    cases = [
        (["-o", tmp_path / "o.h5ad", "--csv", tmp_path / "folder"], ["--csv", "is a folder"]),
        (["-o", tmp_path / "o.h5ad", "--csv", data], ["--csv", "is also an input"]),
        (["-o", tmp_path / "o.h5ad", "--plot", data], ["--plot", "unknown figure format", ".png, .pdf or .svg"]),
        (["-o", tmp_path / "o.h5ad", "--plot", tmp_path / "umap.xyz"], ["--plot", "unknown figure format"]),
        (["-o", tmp_path / "o.h5ad", "--report", tmp_path / "r.txt"], ["--report", ".html"]),
        (["-o", tmp_path / "o.h5ad", "--report", tmp_path / "r.html", "--csv", tmp_path / "r.html"], ["same file"]),
        (["-o", tmp_path / "o.h5ad", "--csv", tmp_path / "o.h5ad"], ["name the same file"]),
        (["-o", tmp_path / "folder"], ["--out", "is a folder"]),
        (["-o", data], ["is the input file", "--inplace"]),
        ([], ["no output path"]),
        (["-o", tmp_path / "o.h5ad", "--csv", "/proc/x.csv"], ["cannot write in /proc"]),
    ]
    for args, phrases in cases:
        assert_one_line_error(cli(*base, *args), *phrases)
    assert snapshot(workdir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


@pytest.mark.parametrize(
    "name,phrases",
    [
        ("no_cells.h5ad", ["has no cells"]),
        ("no_x.h5ad", ["no expression matrix X", "--layer"]),
        ("text.h5ad", ["cannot read as .h5ad"]),
        ("missing.h5ad", ["no such file"]),
    ],
)
def test_unusable_h5ad_files_are_one_line(workdir, tmp_path, name, phrases):
    out = tmp_path / "o.h5ad"
    assert_one_line_error(cli("annotate", workdir / name, "-g", "louvain", "-o", out, "-c", "A,B"), name, *phrases)
    assert not out.exists()


def test_bad_options_write_nothing(workdir, tmp_path):
    data = workdir / "pbmc.h5ad"
    out = tmp_path / "o.h5ad"
    for args, phrases in [
        (["-g", "no_such_column", "-c", "A,B"], ["no_such_column"]),
        (["-g", "louvain", "-c", "A,B", "--genes", "median"], ["median"]),
        (["-g", "louvain", "-c", "A,B", "--solver", "nope"], ["nope"]),
        (["-g", "louvain"], ["no candidate cell types"]),
        (["-g", "louvain", "-c", "A,B", "--top-k", "x"], ["--top-k"]),
    ]:
        assert_one_line_error(cli("annotate", data, "-o", out, *args), *phrases)
        assert not out.exists()


def test_kill_9_while_saving_never_leaves_half_an_h5ad(workdir, tmp_path):
    out = tmp_path / "o.h5ad"
    out.write_bytes(b"an older result the user keeps")
    prelude = (
        "import time, anndata\n"
        "_write = anndata.AnnData.write_h5ad\n"
        "def slow(self, *a, **k):\n    _write(self, *a, **k); time.sleep(30)\n"
        "anndata.AnnData.write_h5ad = slow"
    )
    args = ["annotate", str(workdir / "pbmc.h5ad"), "-g", "louvain", "-c", str(workdir / "types.txt"), "-o", str(out)]
    proc = spawn(args, prelude=prelude)
    assert wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size for p in tmp_path.iterdir()), 120)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert out.read_bytes() == b"an older result the user keeps"  # the old file, whole
    code, _, err = cli(*args)
    assert code == 0, err
    annotated = ad.read_h5ad(out)
    assert np.asarray(annotated.obs["cello1_cell_type"].notna()).all()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the leftover was removed
