"""The shared contracts: the answer grammar, the label vocabulary, typed results, the
solver contract and the CLI's error handling."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import CelloError, InputError, RecordFormatError
from cello1.grammar import (
    answer_block,
    loose_labels,
    parse_gold,
    render_completion,
    split_completion,
    think_text,
)
from cello1.prediction import Prediction
from cello1.puzzle import Puzzle, parse_record
from cello1.solvers.base import Ability, Completion, Solver
from cello1.vocabulary import label_key, normalise_label, repair_labels, similarity

# ---- grammar ----------------------------------------------------------------------------


def test_completion_round_trip_and_loose_reading():
    text = render_completion("because", ["A", "B"])
    assert split_completion(text) == ("because", ["A", "B"])
    assert split_completion("A | B") == (None, ["A", "B"])
    assert think_text("<think> why </think>\n<answer>A | B</answer>") == "why"
    assert think_text("<think>unfinished <answer>A") == "unfinished"
    assert think_text("no tags") == ""
    assert answer_block("x <answer>1. A\n2) B") == "1. A\n2) B"
    assert loose_labels("<answer>Cell 1: A\nCell 2: B | C</answer>") == ["A", "B", "C"]
    assert parse_gold(["A ", " B"]) == ["A", "B"]


def test_parse_record_checks_the_gold_against_the_cells_and_candidates(official_records):
    rec = dict(official_records[0])
    n = parse_record(rec).n
    labels = rec["assistant_msg"].split(" | ")
    # no spaces around the separator still parses (the old parser kept this as one label)
    assert parse_record({**rec, "assistant_msg": "|".join(labels)}).answer == labels
    with pytest.raises(RecordFormatError, match=f"labels for {n} cells"):
        parse_record({**rec, "assistant_msg": " | ".join(labels[:-1])})
    with pytest.raises(RecordFormatError, match="not among the puzzle's candidates"):
        parse_record({**rec, "assistant_msg": " | ".join(["Not a type", *labels[1:]])})


# ---- vocabulary -------------------------------------------------------------------------


def test_vocabulary_keys_similarity_and_repair():
    assert label_key("  b  CELL ") == label_key("B cell")
    assert normalise_label("NK cells") == normalise_label("natural killer cell")
    assert similarity("T cell", "t cells") == 1.0
    assert 0 <= similarity("T cell", "B cell") < 1
    assert similarity("x", "y", term_of=lambda label: "CL:1") == 1.0  # same ontology term
    labels, sims = repair_labels(["monocyte", "T cell", "T cell"], ["B cell", "T cell", "monocyte"], 3)
    assert labels[0] == "monocyte" and sorted(labels[1:]) == ["B cell", "T cell"] and 1.0 in sims
    labels, sims = repair_labels(["A", "A", "A"], ["A", "B"], 3)
    assert sorted(label or "" for label in labels) == ["", "A", "B"] and any(math.isnan(s) for s in sims)
    labels, _ = repair_labels(["A", "A"], ["A", "B"], 2, allow_repeats=True)
    assert labels == ["A", "A"]
    labels, _ = repair_labels(["unassigned", "B"], ["A", "B", "C"], 2, keep_unassigned=True)
    assert labels[1] == "B"


# ---- typed results ----------------------------------------------------------------------


def test_prediction_record_round_trip_keeps_unknown_keys():
    record = {"id": 7, "prediction": None, "assignment": None, "sample": "1", "custom": {"x": 1}}
    pred = Prediction.from_record(record)
    assert pred.key == ("7", 1) and pred.prediction == "" and pred.extra == {"custom": {"x": 1}}
    out = pred.to_record()
    assert out["custom"] == {"x": 1} and "repair_method" not in out
    pred.set_repair(["A"], "similarity")
    assert pred["repair_method"] == "similarity" and pred.to_record()["repaired_assignment"] == ["A"]
    assert Prediction.from_record(pred.to_record()).repaired
    with pytest.raises(RecordFormatError):
        Prediction.from_record({"prediction": "x"})


def test_prediction_of_a_puzzle_parses_strictly():
    puzzle = Puzzle(id="p", context="c", cells=[["G1"], ["G2"]], candidates=["A", "B"], answer=["A", "B"])
    ok = Prediction.of(puzzle, render_completion("r", ["B", "A"]), solver="s")
    assert ok.assignment == ["B", "A"] and ok.answer == "A | B" and ok.n == 2
    failed = Prediction.of(puzzle, "", error="boom")
    assert failed.failed and failed.assignment is None


def test_evaluate_returns_a_typed_result_that_reads_like_json():
    from cello1.scoring import evaluate

    gold = "A | B"
    recs = [{"id": "1", "answer": gold, "prediction": render_completion("r", ["A", "B"]), "tissue": "lung"}]
    result = evaluate(recs, bootstrap=0)
    assert result.cell_accuracy == 1.0 and result["cell_accuracy"] == 1.0
    assert result.by["n"]["2"].n_puzzles == 1 and result["by"]["tissue"]["lung"]["batch_accuracy"] == 1.0
    assert result.ci is None and "ci" not in result and "file" not in result
    assert result.to_dict()["by"]["n"]["2"]["format_rate"] == 1.0


# ---- the solver contract ----------------------------------------------------------------


def test_a_solver_must_implement_what_it_declares():
    with pytest.raises(TypeError, match="solve_one or solve_batch"):

        class Nothing(Solver):
            name = "nothing"

    with pytest.raises(TypeError, match="declares score_matrix"):

        class Liar(Solver):
            name = "liar"
            abilities = frozenset({Ability.SCORE_MATRIX})

            def solve_one(self, puzzle, sample=0):
                return Completion(text="")

    class One(Solver):
        name = "one"
        n = 2

        def solve_one(self, puzzle, sample=0):
            return Completion(text=f"{puzzle.id}:{sample}")

    puzzle = Puzzle(id="p", context="c", cells=[["G"]], candidates=["A"])
    assert [[c.text for c in cs] for cs in One().solve_batch([puzzle])] == [["p:0", "p:1"]]
    assert not One.supports(Ability.STREAMING)
    with pytest.raises(NotImplementedError):
        One().score_matrix(puzzle)


# ---- errors and the CLI -----------------------------------------------------------------


def test_library_errors_name_parameters_and_the_cli_names_flags():
    err = InputError("{n_min} must be at least 2 (got {value})", params=["n_min"])
    assert str(err) == "n_min must be at least 2 (got {value})"  # only declared fields are filled
    assert err.render({"n_min": "--n-min"}).startswith("--n-min must")
    assert isinstance(err, CelloError) and isinstance(err, ValueError)
    from cello1.data import BuildConfig

    with pytest.raises(InputError, match="^n_min must be at least 2"):
        BuildConfig(n_min=1).validate()
    result = CliRunner().invoke(app, ["build", "-o", "unused", "--n-min", "1"])
    assert result.exit_code == 2 and result.output.strip() == "error: --n-min must be at least 2 (got 1)"


def test_a_bug_is_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path):
    import cello1.solvers.run as run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(run, "solve", broken)
    args = ["solve", "x.jsonl", "-o", str(tmp_path / "p.jsonl")]
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert "internal error (ZeroDivisionError: oops)" in lines[0] and "--debug" in lines[0]
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(debug.exception, ZeroDivisionError)


def test_usage_errors_are_one_line(capsys):
    from cello1.cli import main

    with pytest.raises(SystemExit) as exc:
        import sys

        sys.argv = ["cello1", "solve", "--no-such-option"]
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--no-such-option" in err[0]
