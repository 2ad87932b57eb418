"""The official record format, byte for byte."""

from __future__ import annotations

import pytest

from cello1.errors import RecordFormatError
from cello1.grammar import render_completion
from cello1.grammar import split_labels as split_answer
from cello1.puzzle import SYSTEM_MSG, Puzzle, parse_record


def test_render_parse_roundtrip_official(official_records):
    assert len(official_records) == 3
    for rec in official_records:
        assert rec["system_msg"] == SYSTEM_MSG
        puzzle = parse_record(rec)
        assert puzzle.to_record() == rec  # render(parse(r)) == r, byte for byte
        assert parse_record(puzzle.to_record()) == puzzle  # parse(render(p)) == p
        assert puzzle.n == len(puzzle.answer) == len(puzzle.candidates)
        assert sorted(puzzle.candidates) == puzzle.candidates
        assert all(len(genes) == 50 for genes in puzzle.cells)


def test_model_card_example_parses(model_card_record):
    puzzle = parse_record(model_card_record)
    assert puzzle.n == 3
    assert puzzle.answer == ["smooth muscle cell", "non-classical monocyte", "epithelial cell of lung"]
    assert puzzle.cells[0][:2] == ["MT2A", "ACTB"] and len(puzzle.cells[0]) == 27
    assert puzzle.context.endswith("There is no cancer present.")
    assert puzzle.to_record() == model_card_record


def test_parse_render_roundtrip_with_provenance():
    p = Puzzle(
        id="x1",
        context="The cell is from a male.",
        cells=[["CD3E", "CD2"], ["MS4A1"]],
        candidates=["B cell", "T cell"],
        answer=["T cell", "B cell"],
        source="a.h5ad",
        donor="d1",
        tissue="blood",
        disease="normal",
        cell_ids=["c1", "c2"],
    )
    rec = p.to_record()
    assert rec["user_msg"] == (
        "Context: The cell is from a male. \n\nCell 1: CD3E, CD2\nCell 2: MS4A1\n\n"
        "Match the cells above to one of the following cell types:\nB cell\nT cell"
    )
    assert rec["assistant_msg"] == "T cell | B cell"
    assert rec["n"] == 2
    assert parse_record(rec) == p


def test_reasoning_record_roundtrip():
    p = Puzzle(id="r", context="c", cells=[["A"], ["B"]], candidates=["x", "y"], answer=["y", "x"], reasoning="because")
    rec = p.to_record()
    assert rec["assistant_msg"] == "<think>because</think>\n<answer>y | x</answer>"
    assert parse_record(rec) == p


def test_rl_layout_user_turn_is_accepted(official_records):
    rec = dict(official_records[0])
    rec["user_msg"] = rec["user_msg"] + "\n" + SYSTEM_MSG
    assert parse_record(rec).cells == parse_record(official_records[0]).cells


def test_messages_modes(official_records):
    p = parse_record(official_records[0])
    sys_mode = p.messages("sft")
    assert [m["role"] for m in sys_mode] == ["system", "user"]
    user_mode = p.messages("test")
    assert user_mode == [{"role": "user", "content": p.user_msg + "\n" + SYSTEM_MSG}]
    with pytest.raises(ValueError):
        p.messages("both")


def test_id_derived_when_absent(official_records):
    rec = {k: v for k, v in official_records[0].items() if k != "id"}
    a, b = parse_record(rec), parse_record(dict(rec))
    assert a.id == b.id and a.id.startswith("p_")


@pytest.mark.parametrize(
    "user_msg",
    ["", "hello", "Context: x \n\nCell 2: A\n\nMatch the cells above to one of the following cell types:\nT"],
)
def test_bad_user_msg_raises(user_msg):
    with pytest.raises(RecordFormatError):
        parse_record({"user_msg": user_msg})


def test_helpers():
    assert render_completion("r", ["a", "b"]) == "<think>r</think>\n<answer>a | b</answer>"
    assert split_answer(" a |b|| c ") == ["a", "b", "c"]
