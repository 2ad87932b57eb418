"""``cello1 eval`` never reports a plausible number from odd input (issue 11): broken files,
odd field types and duplicate ids are one-line errors naming file and line; every output is
checked before scoring and none is written on an error."""

from __future__ import annotations

import json

import pytest

from cello1.scoring import evaluate
from reliability_helpers import assert_one_line_error, cli

GOLD = "B cell | T cell | NK cell"
GOOD = "<think>r</think>\n<answer>B cell | T cell | NK cell</answer>"


def rec(i, **changes):
    return {"id": f"p{i}", "answer": GOLD, "prediction": GOOD, "sample": 0, "n": 3, **changes}


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


CASES = [
    ("empty", "", ["empty.jsonl", "no prediction records"]),
    ("blank", "\n\n  \n", ["blank.jsonl", "no prediction records"]),
    ("array", json.dumps([rec(0), rec(1)]) + "\n", ["array.jsonl:1:", "JSON array"]),
    ("number-line", lines(rec(0)) + "3\n", ["number-line.jsonl:2:", "found a number"]),
    ("null-line", lines(rec(0)) + "null\n", ["null-line.jsonl:2:", "found null"]),
    ("not-json", lines(rec(0)) + "{oops\n", ["not-json.jsonl:2:", "not valid JSON"]),
    ("cut-last-line", lines(rec(0)) + json.dumps(rec(1))[:20], ["cut-last-line.jsonl:2:", "cut off"]),
    ("integer-answer", lines(rec(0), rec(1, answer=7)), ["integer-answer.jsonl:2:", "gold answer", "not int"]),
    ("list-of-numbers", lines(rec(0, answer=[1, 2])), ["list-of-numbers.jsonl:1:", "gold answer"]),
    ("dict-answer", lines(rec(0, answer={"a": 1})), ["dict-answer.jsonl:1:", "not dict"]),
    ("no-gold", lines({"id": "x", "prediction": GOOD}), ["no-gold.jsonl:1:", "no gold answer"]),
    ("no-prediction", lines({"id": "x", "answer": GOLD}), ["no-prediction.jsonl:1:", "no 'prediction'"]),
    ("prediction-number", lines(rec(0, prediction=5)), ["prediction-number.jsonl:1:", "'prediction' must be"]),
    ("prediction-list", lines(rec(0, prediction=["B cell"])), ["prediction-list.jsonl:1:", "'prediction'"]),
    ("sample-text", lines(rec(0, sample="0")), ["sample-text.jsonl:1:", "'sample' must be an integer"]),
    ("duplicate-id", lines(rec(0), rec(1), rec(0)), ["duplicate-id.jsonl:3:", "second prediction", "'p0'", ":1"]),
]


@pytest.mark.parametrize("case,content,phrases", CASES, ids=[c[0] for c in CASES])
def test_broken_prediction_files_are_one_line(tmp_path, case, content, phrases):
    path = tmp_path / f"{case}.jsonl"
    path.write_text(content, encoding="utf-8")
    report = tmp_path / "report.json"
    assert_one_line_error(cli("eval", path, "--json", report, "-q"), *phrases)
    assert not report.exists()


def test_non_utf8_and_unknown_files(tmp_path):
    bad = tmp_path / "bytes.jsonl"
    bad.write_bytes(json.dumps(rec(0)).encode() + b"\n\xff\xfe\n")
    assert_one_line_error(cli("eval", bad, "-q"), "bytes.jsonl:2:", "not UTF-8")
    odd = tmp_path / "pred.csv"
    odd.write_text("id,prediction\n")
    assert_one_line_error(cli("eval", odd, "-q"), "pred.csv", "unknown file type")
    assert_one_line_error(cli("eval", tmp_path / "missing.jsonl", "-q"), "missing.jsonl", "no such file")


def test_the_same_sample_twice_is_refused_other_samples_are_fine(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(lines(rec(0), rec(0, sample=1), rec(1)))
    code, _, err = cli("eval", path, "-q", "--bootstrap", "0")
    assert code == 0, err
    shards = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    shards[0].write_text(lines(rec(0)))
    shards[1].write_text(lines(rec(0)))
    with pytest.raises(ValueError, match="b.jsonl:1: a second prediction"):
        evaluate(shards)  # pooled shards that overlap would count a puzzle twice


def test_outputs_are_checked_before_scoring(tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(lines(rec(0), rec(1)))
    before = pred.read_bytes()
    folder = tmp_path / "reports"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["--json", folder], ["--json", "is a folder"]),
        (["--json", pred], ["--json", "is also an input"]),
        (["--markdown", pred], ["--markdown", "is also an input"]),
        (["--plot", tmp_path / "plot.jpg"], ["--plot", ".png, .pdf or .svg"]),
        (["--plot", pred.with_suffix(".png"), "--json", pred.with_suffix(".png")], ["name the same file"]),
        (["--json", tmp_path / "a.json", "--markdown", tmp_path / "a.json"], ["name the same file"]),
        (["--json", blocker / "r.json"], ["is a file, not a folder"]),
        (["--json", "/proc/cello1.json"], ["cannot write in /proc"]),
        (["--bootstrap", "-1"], ["--bootstrap"]),
    ]
    for args, phrases in cases:
        assert_one_line_error(cli("eval", pred, "-q", *args), *phrases)
    assert pred.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "pred.jsonl", "reports"]
    assert list(folder.iterdir()) == []


def test_a_file_being_written_by_solve_is_not_scored_half(tmp_path):
    from cello1.io import write_puzzles
    from cello1.puzzle import Puzzle
    from cello1.solvers.run import solve

    puzzles = [Puzzle(id=f"p{i}", context="c", cells=[["CD19"], ["CD3E"]], candidates=["B cell", "T cell"],
                      answer=["B cell", "T cell"]) for i in range(3)]  # fmt: skip
    write_puzzles(tmp_path / "puzzles.jsonl", puzzles)
    out = tmp_path / "pred.jsonl"
    solve(tmp_path / "puzzles.jsonl", "markers", out, progress=False)
    out.write_text(out.read_text()[:-40])  # as a kill mid-write leaves it
    assert_one_line_error(cli("eval", out, "-q"), "pred.jsonl:3:", "cut off", "cello1 solve")
