"""`cello1 eval`: ontology-aware error analysis, top confusions and the HTML report."""

from __future__ import annotations

import base64
import json
import re

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.grammar import render_completion
from cello1.scoring import evaluate

GOLD = ["CD8-positive, alpha-beta T cell", "B cell", "classical monocyte"]


def rec(i: int, labels: list[str] | None, tissue: str = "blood") -> dict:
    text = "" if labels is None else render_completion("r", labels)
    return {"id": f"p{i}", "answer": " | ".join(GOLD), "prediction": text, "tissue": tissue}


@pytest.fixture
def records() -> list[dict]:
    return [
        rec(0, GOLD),  # all right
        rec(1, ["T cell", "B cell", "classical monocyte"]),  # too coarse: an ancestor of the gold
        rec(
            2, ["CD8-positive, alpha-beta T cell", "B cell", "CD14-positive, CD16-negative classical monocyte"], "lung"
        ),  # too fine
        rec(3, ["B cell", "CD8-positive, alpha-beta T cell", "classical monocyte"], "lung"),  # unrelated swap
        rec(4, None),  # invalid: all wrong, no confusion recorded
    ]


def test_error_analysis_counts_relations_and_partial_credit(records):
    r = evaluate(records, bootstrap=0)
    e = r.errors
    assert (e.wrong_cells, e.ancestor, e.descendant, e.same_term) == (4, 1, 1, 0)
    assert e.related_share == pytest.approx(2 / 4)
    assert r.cell_accuracy == pytest.approx(8 / 15)  # the strict numbers are untouched
    assert e.partial_credit_accuracy == pytest.approx((8 + 0.5 * 2) / 15)
    top = {(c.gold, c.predicted): (c.count, c.relation) for c in e.confusions}
    assert top[("CD8-positive, alpha-beta T cell", "T cell")] == (1, "ancestor")
    assert top[("classical monocyte", "CD14-positive, CD16-negative classical monocyte")] == (1, "descendant")
    assert top[("B cell", "CD8-positive, alpha-beta T cell")] == (1, None)
    assert r["errors"]["confusions"][0]["count"] == 1 and "errors" in r.to_dict()
    assert evaluate(records, bootstrap=0, errors=False).errors is None


def test_cli_tables_json_markdown_and_html_report(records, tmp_path):
    a, b = tmp_path / "model_a.jsonl", tmp_path / "model_b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in records))
    b.write_text("".join(json.dumps({**r, "prediction": render_completion("r", GOLD)}) + "\n" for r in records))
    out = tmp_path / "report.html"
    args = ["eval", str(a), str(b), "--json", str(tmp_path / "m.json"), "--markdown", str(tmp_path / "m.md")]
    result = CliRunner().invoke(app, [*args, "--report", str(out), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "Error analysis" in result.output and "Most frequent confusions: model_a.jsonl" in result.output
    data = json.loads((tmp_path / "m.json").read_text())
    assert data[0]["errors"]["ancestor"] == 1 and data[1]["errors"]["wrong_cells"] == 0
    md = (tmp_path / "m.md").read_text()
    assert "### Error analysis" in md and "| CD8-positive, alpha-beta T cell | T cell | 1 | ancestor |" in md
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "model_a.jsonl" in page and "model_b.jsonl" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # accuracy by N and by tissue, inlined
    assert all(base64.b64decode(img).startswith(b"\x89PNG") for img in images)
    assert "cello1 eval" in page and "Most frequent confusions: model_b.jsonl" not in page  # no errors, no table
    bad = CliRunner().invoke(app, ["eval", str(a), "--report", str(tmp_path / "r.txt")])
    assert bad.exit_code == 2 and "use a .html file name" in bad.output
