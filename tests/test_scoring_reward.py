"""Every clause of docs/format.md §5 pinned with a hand-written example."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cello1.scoring import (
    batch_reward,
    extract_answer,
    is_valid_format,
    make_reward,
    parse_prediction,
    trl_reward,
)
from cello1.scoring.verl import compute_score

GOLD = "B cell | T cell | NK cell"


def wrap(answer: str, think: str = "reasoning") -> str:
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


# ---- extraction (tolerant) -------------------------------------------------------------


def test_extract_text_after_answer_tag_with_trailing_close_removed():
    assert extract_answer(wrap("A | B")) == "A | B"


def test_extract_first_answer_line_only():
    text = "<answer>first | one</answer>\n<answer>second | two</answer>"
    assert extract_answer(text) == "first | one"


def test_extract_answer_spanning_lines_keeps_first_line():
    # strict-valid, but the answer continues on the next line: only line 1 counts
    text = "<think>r</think>\n<answer>A | B\n| C</answer>"
    assert is_valid_format(text)
    assert extract_answer(text) == "A | B"
    assert parse_prediction(text) == ["A", "B"]


def test_extract_without_close_tag_keeps_rest_of_line():
    assert extract_answer("<think>r</think>\n<answer> A | B ") == "A | B"


def test_extract_close_tag_not_trailing_is_kept():
    assert extract_answer("<answer>A | B</answer> done") == "A | B</answer> done"


def test_extract_fallback_first_line_with_pipe_stripped():
    assert extract_answer("no tags\n  X | Y  \nZ | W") == "X | Y"


def test_extract_fallback_when_answer_line_is_empty():
    # the released code falls back to the first '|' line when the tag line is empty
    text = "<think>r</think>\n<answer>\nA | B\n</answer>"
    assert extract_answer(text) == "A | B"
    assert is_valid_format(text)


def test_extract_fallback_can_pick_a_pipe_line_in_the_reasoning():
    text = "<think>maybe a | b\n</think>\n<answer>\nA | B\n</answer>"
    assert extract_answer(text) == "<think>maybe a | b"  # the whole line, stripped


def test_extract_empty_when_nothing():
    assert extract_answer("just text") == ""
    assert extract_answer("") == ""


def test_extract_lines_are_splitlines_lines():
    assert extract_answer("<answer>A | B\u2028C | D") == "A | B"
    assert extract_answer("<answer>A | B\r\nC") == "A | B"


# ---- strict check ----------------------------------------------------------------------


def test_strict_accepts_canonical():
    assert is_valid_format(wrap("A | B"))


@pytest.mark.parametrize(
    "text",
    [
        "<think>r</think><answer>A | B</answer>",  # no newline between
        "<think>r</think>\n\n<answer>A | B</answer>",  # two newlines
        " <think>r</think>\n<answer>A | B</answer>",  # text before
        "<think>r</think>\n<answer>A | B</answer> ",  # text after
        "<think>r</think>\n<answer>A | B</answer>\r\n",  # CRLF ending
        "<think>r</think>\r\n<answer>A | B</answer>",  # CRLF between
        "<think>r <think></think>\n<answer>A | B</answer>",  # two <think>
        "<think>r</think></think>\n<answer>A | B</answer>",  # two </think>
        "<think>r <answer></think>\n<answer>A | B</answer>",  # two <answer>
        "<think>r </answer></think>\n<answer>A | B</answer>",  # two </answer>
        "<answer>A | B</answer>",  # no think
        "<think>r</think>\n<answer>A</answer>",  # no '|' in answer
        "<think>r</think>\n<answer>A | B",  # unclosed
        "",
    ],
)
def test_strict_rejects(text):
    assert not is_valid_format(text)
    assert parse_prediction(text) is None
    assert batch_reward(text, "A | B") == -1


def test_strict_allows_one_final_newline_like_python_dollar():
    assert is_valid_format(wrap("A | B") + "\n")
    assert not is_valid_format(wrap("A | B") + "\n\n")


def test_strict_think_may_span_lines_and_be_empty():
    assert is_valid_format("<think></think>\n<answer>A | B</answer>")
    assert is_valid_format("<think>line1\nline2\n</think>\n<answer>A | B</answer>")


def test_single_cell_answer_never_valid():
    # N=1: the answer holds no '|', so the strict check fails and the reward is -1
    assert not is_valid_format(wrap("B cell"))
    assert batch_reward(wrap("B cell"), "B cell") == -1


# ---- reward ----------------------------------------------------------------------------


def test_reward_perfect_is_one():
    assert batch_reward(wrap(GOLD), GOLD) == 1.0


def test_reward_partial_is_half_cell_accuracy():
    assert batch_reward(wrap("B cell | NK cell | T cell"), GOLD) == pytest.approx((1 / 3 + 0) / 2)


def test_reward_all_wrong_is_zero():
    assert batch_reward(wrap("T cell | NK cell | B cell"), GOLD) == 0.0


def test_reward_case_insensitive_and_stripped():
    assert batch_reward(wrap("  b CELL |t cell|   nk cell  "), GOLD) == 1.0
    assert batch_reward(wrap("B cell | T cell | NK cell"), " b cell|T CELL |nk cell ") == 1.0


def test_reward_wrong_count_is_minus_one():
    assert batch_reward(wrap("B cell | T cell"), GOLD) == -1
    assert batch_reward(wrap("B cell | T cell | NK cell | DC"), GOLD) == -1


def test_reward_empties_dropped_before_counting():
    assert batch_reward(wrap("B cell || T cell | NK cell |"), GOLD) == 1.0


def test_reward_repeat_is_minus_one():
    assert batch_reward(wrap("B cell | B cell | NK cell"), GOLD) == -1


def test_reward_repeat_judged_case_insensitively():
    # our documented choice: two casings of one label are a repeat
    assert batch_reward(wrap("B cell | b cell | NK cell"), GOLD) == -1


def test_reward_gold_as_list_and_as_completion():
    assert batch_reward(wrap(GOLD), ["B cell", "T cell", "NK cell"]) == 1.0
    assert batch_reward(wrap(GOLD), wrap(GOLD, think="teacher")) == 1.0


def test_reward_empty_gold_is_minus_one():
    assert batch_reward(wrap("A | B"), "") == -1


def test_reward_non_string_completion_is_minus_one():
    assert batch_reward(None, GOLD) == -1  # type: ignore[arg-type]


def test_variants():
    half = wrap("B cell | NK cell | T cell")
    assert batch_reward(half, GOLD, variant="exact_match") == 0.0
    assert batch_reward(wrap(GOLD), GOLD, variant="exact_match") == 1.0
    assert batch_reward(wrap("B cell | T cell"), GOLD, variant="exact_match") == -1
    assert batch_reward(half, GOLD, variant="cell_accuracy") == pytest.approx(1 / 3)
    assert batch_reward(half, GOLD, variant="format") == 1.0
    assert batch_reward("no format", GOLD, variant="format") == 0.0
    with pytest.raises(ValueError, match="unknown reward variant"):
        batch_reward(half, GOLD, variant="nope")


# ---- adapters --------------------------------------------------------------------------


def test_verl_compute_score_matches_batch_reward():
    half = wrap("B cell | NK cell | T cell")
    assert compute_score("cellpuzzles", half, GOLD) == batch_reward(half, GOLD)
    assert compute_score("anything", wrap(GOLD), GOLD, extra_info={"index": 3}) == 1.0
    assert compute_score("x", wrap(GOLD), {"ground_truth": GOLD}) == 1.0
    assert compute_score("x", half, GOLD, {"reward_variant": "exact_match"}) == 0.0


def test_trl_reward_plain_and_conversational():
    good, bad = wrap(GOLD), "no answer"
    conv = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    prompts = [[{"role": "user", "content": "p"}]] * 2
    assert trl_reward(prompts, [good, bad], answer=[GOLD, GOLD]) == [1.0, -1.0]
    assert trl_reward(prompts, conv, answer=[GOLD, GOLD], trainer_state=None) == [1.0, -1.0]
    assert trl_reward.__name__ == "reward_paper"


def test_trl_reward_takes_last_assistant_message():
    conv = [
        {"role": "assistant", "content": "draft"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": wrap(GOLD)},
    ]
    assert trl_reward(["p"], [conv], answer=[GOLD]) == [1.0]


def test_trl_reward_needs_answer_column():
    with pytest.raises(ValueError, match="'answer' column"):
        trl_reward(["p"], [wrap(GOLD)], other=["x"])
    with pytest.raises(ValueError, match="completions"):
        trl_reward(["p"], [wrap(GOLD)], answer=[GOLD, GOLD])


def test_make_reward_names_and_format_variant_needs_no_gold():
    fmt = make_reward("format")
    assert fmt.__name__ == "reward_format"
    assert fmt(["p", "p"], [wrap(GOLD), "x"]) == [1.0, 0.0]
    assert make_reward("exact_match").__name__ == "reward_exact_match"


def test_import_is_light():
    code = (
        "import sys, cello1.scoring, cello1.scoring.verl; "
        "cello1.scoring.batch_reward('<think></think>\\n<answer>a | b</answer>', 'a | b'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
