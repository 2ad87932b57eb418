"""``cello1 build``: the embedded default run and every bad-input case (one-line error,
exit code != 0, no traceback, no output folder left behind)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.data.synthetic import toy_atlas

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small CELLxGENE-schema .h5ad files, good and broken."""
    root = tmp_path_factory.mktemp("h5ad")
    good = toy_atlas(n_donors=3, cells_per_donor=60, n_types=6, n_genes=60, seed=1)
    good.write_h5ad(root / "good.h5ad")
    nan = good.copy()
    nan.X = nan.X.toarray()
    nan.X[5, 3] = np.nan
    nan.write_h5ad(root / "nan.h5ad")
    nuclei = good.copy()
    nuclei.obs["suspension_type"] = "nucleus"
    nuclei.write_h5ad(root / "nuclei.h5ad")
    (root / "text.h5ad").write_text("cell_type,donor_id\nB cell,d1\n")
    (root / "table.csv").write_text("a,b\n1,2\n")
    return root


def run(args: list[str]):
    return runner.invoke(app, ["build", *args])


def assert_clean_failure(result, out: Path, *phrases: str):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    stderr = result.stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in stderr, stderr
    assert not out.exists(), "no output folder on error"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "no temporary folder left"


def test_embedded_default_build(tmp_path):
    out = tmp_path / "puzzles"
    result = run(["-o", str(out), "--n-min", "3", "--n-max", "4", "--puzzles-per-n", "5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "donor_id" in result.stderr
    assert "total" in result.stdout and "split cell" in result.stdout
    card = (out / "README.md").read_text()
    assert "cello1 build --out" in card and "--n-min 3 --n-max 4 --puzzles-per-n 5" in card
    leak = json.loads((out / "leakage.json").read_text())
    assert leak["split"] == "cell" and leak["test_puzzles_with_train_cell"] == 0
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == leak["n_train"] == 2 * 4  # N = 3, 4; 5 - round(5 * 0.15) = 4 each
    assert {r["n"] for r in train} == {3, 4} and all(r["source"] == "pbmc68k_reduced" for r in train)


def test_h5ad_input_with_options(files, tmp_path):
    out = tmp_path / "p"
    args = [
        str(files / "good.h5ad"),
        "-o",
        str(out),
        "--n-min",
        "3",
        "--n-max",
        "5",
        "--puzzles-per-n",
        "4",
        "--split",
        "random",
    ]
    result = run(args + ["--no-progress"])
    assert result.exit_code == 0, result.output
    leak = json.loads((out / "leakage.json").read_text())
    assert leak["split"] == "random" and leak["n_train"] + leak["n_test"] == 3 * 2 * 3 * 4
    first = (out / "train.jsonl").read_text()
    # rerun into the same folder needs --overwrite; a --backed rebuild gives the same puzzles
    again = run(args)
    assert again.exit_code != 0 and "--overwrite" in again.stderr
    assert (out / "train.jsonl").read_text() == first, "a refused run leaves the folder alone"
    assert run(args + ["--overwrite", "--backed", "--no-progress"]).exit_code == 0
    assert (out / "train.jsonl").read_text() == first
    assert "--backed" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "make_args,phrases",
    [
        (lambda f: [str(f / "missing.h5ad")], ["missing.h5ad", "no such file"]),
        (lambda f: [str(f / "text.h5ad")], ["text.h5ad", "not a readable .h5ad"]),
        (lambda f: [str(f / "table.csv")], ["table.csv", "not a readable .h5ad"]),
        (
            lambda f: [str(f / "good.h5ad"), "--label-key", "celltype"],
            ["'celltype'", "available: cell_type, donor_id", "--label-key"],
        ),
        (
            lambda f: [str(f / "good.h5ad"), "--donor-key", "patient"],
            ["'patient'", "available: cell_type", "--donor-key"],
        ),
        (lambda f: [str(f / "good.h5ad"), "--gene-key", "symbol"], ["'symbol'", "feature_name", "--gene-key"]),
        (lambda f: [str(f / "good.h5ad"), "--n-min", "7", "--n-max", "9"], ["largest has 6", "--n-min"]),
        (lambda f: [str(f / "nan.h5ad"), "--n-min", "3"], ["non-finite"]),
        (lambda f: [str(f / "nuclei.h5ad"), "--n-min", "3"], ["empty selection", "suspension_type"]),
        (lambda f: [str(f / "good.h5ad"), "--query", "tissue == 'brain'"], ["empty selection", "query"]),
        (lambda f: [str(f / "good.h5ad"), "--query", "no_such_column > 1"], ["--query"]),
        (lambda f: [str(f / "good.h5ad"), "--n-min", "5", "--n-max", "4"], ["--n-max"]),
        (lambda f: [str(f / "good.h5ad"), "--split", "patient"], ["--split", "auto, donor, cell, random"]),
        (lambda f: [str(f / "good.h5ad"), "--test-fraction", "1.5"], ["--test-fraction"]),
        (lambda f: ["--label-key", "cell_type"], ["'cell_type'", "bulk_labels"]),
    ],
    ids=[
        "missing-file",
        "not-h5ad",
        "csv",
        "label-column",
        "donor-column",
        "gene-column",
        "too-few-types",
        "non-finite",
        "empty-suspension",
        "empty-query",
        "bad-query",
        "n-range",
        "split-name",
        "test-fraction",
        "embedded-label",
    ],
)
def test_bad_input(files, tmp_path, make_args, phrases):
    out = tmp_path / "out"
    result = run([*make_args(files), "-o", str(out), "--no-progress"])
    assert_clean_failure(result, out, *phrases)


def test_donor_split_needs_two_donors(files, tmp_path):
    out = tmp_path / "out"
    result = run(["-o", str(out), "--split", "donor", "--no-progress"])
    assert_clean_failure(result, out, "--split donor needs at least 2 donors")


def test_subprocess_error_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("cello1")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from cello1.cli import main; main()"]
    proc = subprocess.run(
        [*cmd, "build", str(tmp_path / "nope.h5ad"), "-o", str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not out.exists()


def test_help_lists_the_issue_options():
    result = runner.invoke(app, ["build", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0
    for option in (
        "--out",
        "--label-key",
        "--donor-key",
        "--gene-key",
        "--n-min",
        "--n-max",
        "--seed",
        "--split",
        "--backed",
        "--max-cells",
        "--top-k",
    ):
        assert option in result.output, option
