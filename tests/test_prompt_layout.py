"""`--prompt-layout sft|rl|test`: the released code's three layouts, reproduced exactly."""

from __future__ import annotations

import pytest

from cello1.errors import InputError
from cello1.puzzle import (
    DEFAULT_PROMPT_LAYOUT,
    RL_INSTRUCTION,
    SYSTEM_MSG,
    mark_prompt_layout,
    parse_record,
    trained_prompt_layout,
    warn_on_layout_mismatch,
)


def test_the_three_layouts(official_records):
    rec = official_records[0]
    puzzle = parse_record(rec)
    # SFT: the system message, then the puzzle as the user turn
    assert puzzle.messages("sft") == [
        {"role": "system", "content": rec["system_msg"]},
        {"role": "user", "content": rec["user_msg"]},
    ]
    # RL (verl preprocessing): f"{question} {instruction}" as the only, user, turn
    (rl,) = puzzle.messages("rl")
    assert rl["role"] == "user" and rl["content"] == rec["user_msg"] + " " + RL_INSTRUCTION
    # the RL instruction text: the system message plus one sentence with a literal backslash-n
    assert 'You must output exactly "<think>...</think>\\n<answer>...</answer>." Include' in RL_INSTRUCTION
    assert (
        RL_INSTRUCTION.replace(' You must output exactly "<think>...</think>\\n<answer>...</answer>."', "")
        == SYSTEM_MSG
    )
    # test script: user message, newline, system message, as one user turn
    assert puzzle.messages("test") == [{"role": "user", "content": rec["user_msg"] + "\n" + rec["system_msg"]}]
    assert DEFAULT_PROMPT_LAYOUT == "sft" and puzzle.messages() == puzzle.messages("sft")
    with pytest.raises(InputError, match="prompt_layout must be one of sft, rl, test"):
        puzzle.messages("system")


def test_a_trained_model_records_its_layout_and_mismatches_warn(tmp_path):
    assert trained_prompt_layout(tmp_path) is None
    mark_prompt_layout(tmp_path, "rl")
    assert trained_prompt_layout(tmp_path) == "rl" and trained_prompt_layout(tmp_path / "m.gguf") == "rl"
    with pytest.warns(UserWarning, match="trained with prompt layout 'rl' but is used with 'sft'"):
        warn_on_layout_mismatch(tmp_path, "sft")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_layout_mismatch(tmp_path, "rl")  # same layout: silent
        warn_on_layout_mismatch("some/hub-id", "sft")  # nothing recorded: silent


def test_cli_flag_on_every_llm_facing_command():
    from typer.testing import CliRunner

    from cello1.cli import app

    for command in (["solve"], ["distill"], ["train", "sft"], ["train", "grpo"], ["export", "verl"]):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "--prompt-layout" in result.output, command
