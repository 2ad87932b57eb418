"""``cello1 annotate`` end to end: outputs, input untouched, one-line errors with exit 2."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.data import EMBEDDED_LABEL_KEY, pbmc68k_reduced

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("annotate_cli")
    data = pbmc68k_reduced()
    data.write_h5ad(folder / "pbmc.h5ad")
    types = sorted(data.obs[EMBEDDED_LABEL_KEY].astype(str).unique())
    (folder / "types.txt").write_text("\n".join(types) + "\n")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args: str):
    return runner.invoke(app, ["annotate", *map(str, args)])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_annotate_writes_h5ad_csv_plot_and_keeps_input(workdir):
    source = workdir / "pbmc.h5ad"
    digest = sha256(source)
    out, plot = workdir / "out.h5ad", workdir / "umap.png"
    result = run(source, "--groupby", "louvain", "--candidates", workdir / "types.txt", "-o", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert sha256(source) == digest  # input untouched
    annotated = ad.read_h5ad(out)
    labels = annotated.obs["cello1_cell_type"]
    assert isinstance(labels.dtype, pd.CategoricalDtype) and labels.notna().all()
    csv = pd.read_csv(workdir / "out_clusters.csv")  # default: next to the output
    assert list(csv.columns[:3]) == ["cluster", "label", "confidence"] and len(csv) == 11
    assert list(csv["label"]) == list(annotated.uns["cello1_cell_type"]["clusters"]["label"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # issue 15: types may repeat by default (no cluster left unassigned), and the candidate →
    # Cell Ontology mapping is printed
    assert "unassigned clusters:" not in result.output
    assert "CD4+/CD25 T Reg → regulatory T cell [CL:0000815] (alias;" in result.output
    assert leftovers(workdir) == []


def test_comma_list_custom_csv_and_mean_genes(workdir):
    out, csv = workdir / "few.h5ad", workdir / "calls.csv"
    result = run(
        workdir / "pbmc.h5ad", "-g", "louvain", "-c", "CD19+ B,CD34+,Dendritic", "-o", out,
        "--csv", csv, "--genes", "mean", "--top-k", "20", "--one-per-cluster",  # opt-in since issue 15
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(csv)
    assert (table["label"] == "unassigned").sum() == 8
    settings = ad.read_h5ad(out).uns["cello1_cell_type"]["settings"]
    assert settings["genes"] == "mean" and int(settings["top_k"]) == 20


def test_inplace_overwrites_only_when_asked(workdir):
    copy = workdir / "copy.h5ad"
    copy.write_bytes((workdir / "pbmc.h5ad").read_bytes())
    digest = sha256(copy)
    refused = run(copy, "-g", "louvain", "-c", workdir / "types.txt", "-o", copy)
    assert refused.exit_code == 2 and "is the input file" in refused.output and "--inplace" in refused.output
    assert sha256(copy) == digest
    done = run(copy, "-g", "louvain", "-c", workdir / "types.txt", "--inplace", "--allow-repeats")
    assert done.exit_code == 0, done.output
    assert "cello1_cell_type" in ad.read_h5ad(copy).obs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "clusters", "-c", "A,B"], "column 'clusters' not in obs (available:"),
        (["-g", "louvain", "-c", " , "], "no candidate cell types given"),
        (["-g", "louvain"], "no candidate cell types given"),
        (["-g", "louvain", "-c", "A,B", "--genes", "top"], "--genes must be one of"),
        (["-g", "louvain", "-c", "A,B", "--plot", "never.png", "--split-by", "nope"], "--split-by column 'nope'"),
        (["-g", "louvain", "-c", "A,B", "--solver", "nope"], "unknown solver 'nope'"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(workdir, args, message):
    out = workdir / "bad.h5ad"
    result = run(workdir / "pbmc.h5ad", *args, "-o", out)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists() and not (workdir / "bad_clusters.csv").exists()
    assert not (workdir / "never.png").exists() and leftovers(workdir) == []


def test_missing_file_and_missing_output(workdir):
    missing = run(workdir / "nope.h5ad", "-g", "louvain", "-c", "A,B", "-o", workdir / "x.h5ad")
    assert missing.exit_code == 2 and "nope.h5ad: no such file" in missing.output
    no_out = run(workdir / "pbmc.h5ad", "-g", "louvain", "-c", "A,B")
    assert no_out.exit_code == 2 and "pass -o" in no_out.output
    (workdir / "bogus.h5ad").write_text("not an h5ad file")
    bogus = run(workdir / "bogus.h5ad", "-g", "louvain", "-c", "A,B", "-o", workdir / "x.h5ad")
    assert bogus.exit_code == 2 and "cannot read as .h5ad" in bogus.output
    assert not (workdir / "x.h5ad").exists()


def test_plot_without_embedding_fails_before_writing(workdir):
    bare = ad.read_h5ad(workdir / "pbmc.h5ad")
    bare.obsm.clear()
    bare.write_h5ad(workdir / "bare.h5ad")
    out = workdir / "bare_out.h5ad"
    result = run(workdir / "bare.h5ad", "-g", "louvain", "-c", "CD34+,CD19+ B", "-o", out, "--plot", workdir / "p.png")
    assert result.exit_code == 2 and "no 2-D embedding" in result.output
    assert not out.exists()
