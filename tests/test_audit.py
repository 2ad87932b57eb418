"""`cello1 audit`: exact and near-duplicate leakage, repeats within test, breakdowns, the clean subset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.data.audit import audit
from cello1.errors import InputError
from cello1.io import read_puzzles, write_puzzles
from cello1.puzzle import Puzzle

GENES = [f"G{i}" for i in range(200)]


def cell(start: int, k: int = 20) -> list[str]:
    return GENES[start : start + k]


def puzzle(pid: str, cells: list[list[str]], tissue: str = "lung", disease: str | None = None) -> Puzzle:
    types = [f"type {i}" for i in range(len(cells))]
    return Puzzle(id=pid, context="c", cells=cells, candidates=types, answer=types, tissue=tissue, disease=disease)


@pytest.fixture
def split():
    train = [puzzle("tr1", [cell(0), cell(20)]), puzzle("tr2", [cell(40), cell(60)])]
    near = cell(100)[:18] + ["X1", "X2"]  # 18 of 20 shared with cell(100): Jaccard 18/22 = 0.82
    test = [
        puzzle("te_exact", [cell(20), cell(80)], tissue="lung", disease="normal"),  # cell(20) is in train
        puzzle("te_clean", [cell(120), cell(140)], tissue="blood"),
        puzzle("te_repeat", [cell(120), cell(160)], tissue="blood"),  # shares cell(120) with te_clean
        puzzle("te_near", [near, cell(180)], tissue="lung"),
    ]
    train.append(puzzle("tr3", [cell(100), cell(60)]))
    return train, test


def test_exact_leaks_repeats_and_breakdowns(split):
    train, test = split
    result = audit(train, test)
    assert (result.test_puzzles, result.leaked_puzzles) == (4, 1) and result.leaked_ids == ["te_exact"]
    assert result.leaked_share == pytest.approx(0.25) and result.leaked_cells == 1
    assert [p.id for p in result.clean] == ["te_clean", "te_repeat", "te_near"]
    assert (result.repeated_test_cells, result.puzzles_with_repeated_cells) == (1, 2)
    assert result.by["tissue"]["lung"] == {"test_puzzles": 2, "leaked_puzzles": 1, "leaked_share": 0.5}
    assert result.by["tissue"]["blood"]["leaked_puzzles"] == 0
    assert result.by["n"]["2"]["test_puzzles"] == 4 and result.by["disease"] == {
        "normal": {"test_puzzles": 1, "leaked_puzzles": 1, "leaked_share": 1.0}
    }


def test_near_duplicates_by_jaccard_threshold(split):
    train, test = split
    loose = audit(train, test, near_threshold=0.8, near_top_k=20)
    assert loose.leaked_ids == ["te_exact", "te_near"] and loose.near_duplicate["near_only_cells"] == 1
    assert loose.near_duplicate["leaked_puzzles"] == 2 and loose.leaked_puzzles == 1  # headline stays exact
    assert [p.id for p in loose.clean] == ["te_clean", "te_repeat"]
    strict = audit(train, test, near_threshold=0.9, near_top_k=20)
    assert strict.leaked_ids == ["te_exact"]
    with pytest.raises(InputError, match="near_threshold"):
        audit(train, test, near_threshold=1.5)


def test_builder_leakage_report_uses_the_audit(split):
    from cello1.data.split import leakage_report

    train, test = split
    assert leakage_report(train, test, "cell")["test_puzzles_with_train_gene_list"] == audit(train, test).leaked_puzzles


def test_cli_writes_the_folder_and_refuses_to_overwrite(split, tmp_path, official_records):
    train, test = split
    write_puzzles(tmp_path / "train.jsonl", train)
    write_puzzles(tmp_path / "test.jsonl", test)
    out = tmp_path / "audit"
    args = [
        "audit",
        str(tmp_path / "train.jsonl"),
        str(tmp_path / "test.jsonl"),
        "-o",
        str(out),
        "--near-duplicates",
        "0.8",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 of 4 test puzzles (25.0%)" in result.output and "2 leaked (50.0%)" in result.output
    data = json.loads((out / "audit.json").read_text())
    assert {"test_puzzles", "leaked_puzzles", "leaked_share"} <= set(data)
    assert data["leaked_puzzles"] == 1 and data["near_duplicate"]["leaked_puzzles"] == 2
    clean = read_puzzles(out / "test_clean.jsonl")
    assert [p.id for p in clean] == ["te_clean", "te_repeat"]
    card = (out / "README.md").read_text()
    assert "cello1 audit" in card and "--near-duplicates 0.8" in card and "| lung | 2 |" in card
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_clean_subset_keeps_official_records_byte_for_byte(official_records, tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in official_records))
    out = tmp_path / "a"
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "t.jsonl"), str(tmp_path / "t.jsonl"), "-o", str(out)])
    assert result.exit_code == 0 and "3 of 3 test puzzles (100.0%)" in result.output
    assert (out / "test_clean.jsonl").read_text() == ""
    other = CliRunner().invoke(app, ["audit", str(tmp_path / "t.jsonl"), str(tmp_path / "t.jsonl")])
    assert other.exit_code == 0 and not (tmp_path / "audit.json").exists()
