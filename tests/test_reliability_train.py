"""``cello1 train sft|grpo`` (issue 11): the puzzle files and the run folder are read and
checked before any model is loaded, so bad input is one line within a second and no run
folder is created."""

from __future__ import annotations

import pytest

from cello1.io import write_puzzles
from reliability_helpers import assert_one_line_error, bad_puzzle_files, cli
from train_helpers import make_puzzles


@pytest.fixture()
def good(tmp_path):
    path = tmp_path / "train.jsonl"
    write_puzzles(path, make_puzzles(4, seed=1))
    return path


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_every_broken_puzzle_file_fails_before_the_model_loads(official_records, tmp_path, good, stage):
    for case, path, phrases in bad_puzzle_files(tmp_path / "bad", official_records[1]):
        out = tmp_path / f"run_{case}"
        # a model that does not exist: reaching it would be a different error
        assert_one_line_error(cli("train", stage, "--train", path, "-o", out, "-m", "/no/such/model"), *phrases)
        assert_one_line_error(cli("train", stage, "--train", good, "--eval", path, "-o", out, "-m", "/nope"), *phrases)
        assert not out.exists(), case


@pytest.mark.parametrize(
    "args,phrases",
    [
        (["--max-steps", "0"], ["--max-steps"]),
        (["--prompt-layout", "chat"], ["--prompt-layout", "sft"]),
        (["--set", "nonsense"], ["key=value"]),
    ],
)
def test_bad_settings_are_one_line(good, tmp_path, args, phrases):
    out = tmp_path / "run"
    assert_one_line_error(cli("train", "sft", "--train", good, "-o", out, "-m", "/nope", *args), *phrases)
    assert not out.exists()


def test_the_run_folder_is_checked_first(good, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    for out, phrase in [(blocker, "not a folder"), (blocker / "run", "is a file, not a folder"),
                        ("/proc/cello1-run", "cannot write in /proc")]:  # fmt: skip
        assert_one_line_error(cli("train", "sft", "--train", good, "-o", out, "-m", "/nope"), phrase, "--output-dir")
    assert blocker.read_text() == "keep"
    assert_one_line_error(
        cli("train", "grpo", "--train", good, "-o", tmp_path / "g", "--num-generations", "1"), "--num-generations"
    )
