"""``cello1 demo``: build from the embedded data, solve with three solvers, compare."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cello1.cli import app
from cello1.demo import RUNS


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo_out"
    result = CliRunner().invoke(app, ["demo", "-o", str(out), "--n-min", "4", "--n-max", "6", "-q"])
    assert result.exit_code == 0, result.output
    # the table and the label mapping are printed
    for text in ("random", "markers", "reference", "CD14+ Monocyte", "CD14-positive monocyte", "CL:0001054"):
        assert text in result.output

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {name for name, _, _ in RUNS}
    for name, _, _ in RUNS:
        records = (out / f"pred_{name}.jsonl").read_text().splitlines()
        assert len(records) == summary["data"]["test_puzzles"] > 0
    res = summary["results"]
    assert res["markers"]["cell_accuracy"] > res["random"]["cell_accuracy"] + 0.3
    assert res["reference"]["cell_accuracy"] > res["random"]["cell_accuracy"] + 0.3
    assert res["markers"]["uniqueness"] == 1.0 and res["markers_none"]["assignment"] == "none"
    assert "ci" in res["markers"]
    mapping = summary["label_mapping"]
    assert len(mapping) == 10 and all(m["term_id"] and m["n_markers"] for m in mapping.values())
    assert summary["data"]["leakage"]["test_puzzles_with_train_cell"] == 0
    md = (out / "summary.md").read_text()
    assert "| markers | hungarian |" in md and "CL:0000815" in md

    # a second run replaces the predictions instead of resuming into them
    again = CliRunner().invoke(app, ["demo", "-o", str(out), "--n-min", "4", "--n-max", "6", "-q"])
    assert again.exit_code == 0
    assert len((out / "pred_markers.jsonl").read_text().splitlines()) == summary["data"]["test_puzzles"]


def test_demo_bad_option_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["demo", "-o", str(tmp_path), "--n-min", "12", "--n-max", "15", "-q"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
