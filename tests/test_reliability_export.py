"""``cello1 export verl`` (issue 11): every input read and checked before anything is written,
the folder ``cello1 build`` writes is accepted, an error or a kill leaves no partial export."""

from __future__ import annotations

import os
import signal
import stat

import pyarrow.parquet as pq
import pytest

from cello1.io import write_puzzles
from cello1.puzzle import parse_record
from reliability_helpers import assert_one_line_error, bad_puzzle_files, cli, files_under, spawn, wait_for

EXPORTED = {"train.parquet", "test.parquet", "reward.py", "reward_function.json", "run_verl_grpo.sh"}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "build"
    code, _, err = cli("build", "-o", out, "--n-min", "3", "--n-max", "4", "--puzzles-per-n", "3", "--no-progress")
    assert code == 0, err
    return out


def test_every_broken_puzzle_file_is_refused_before_any_folder_exists(official_records, tmp_path):
    for case, path, phrases in bad_puzzle_files(tmp_path / "bad", official_records[1]):
        out = tmp_path / f"verl_{case}"
        assert_one_line_error(cli("export", "verl", path, "-o", out), *phrases)
        assert not out.exists(), case
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_folder_build_writes_is_accepted(build_dir, tmp_path):
    code, out, err = cli("export", "verl", build_dir, "-o", tmp_path / "verl")
    assert code == 0, err
    assert "train:" in out and "test:" in out
    assert {p.name for p in (tmp_path / "verl").iterdir()} == EXPORTED
    rows = pq.read_table(tmp_path / "verl" / "train.parquet").num_rows
    assert rows == len((build_dir / "train.jsonl").read_text().splitlines())


def test_an_error_in_a_later_input_leaves_no_folder(official_records, tmp_path):
    good = tmp_path / "train.jsonl"
    write_puzzles(good, [parse_record(r) for r in official_records])
    unlabelled = tmp_path / "test.jsonl"
    write_puzzles(unlabelled, [parse_record({k: v for k, v in official_records[0].items() if k != "assistant_msg"})])
    out = tmp_path / "verl"
    assert_one_line_error(cli("export", "verl", good, unlabelled, "-o", out), "no gold answer")
    assert not out.exists()
    empty = tmp_path / "val.jsonl"
    empty.write_text("")
    assert_one_line_error(cli("export", "verl", good, empty, "-o", out), "val.jsonl", "holds no puzzles")
    assert not out.exists()


def test_outputs_that_would_destroy_something_are_refused(build_dir, tmp_path):
    before = files_under(build_dir)
    assert_one_line_error(cli("export", "verl", build_dir, "-o", build_dir), "holds the input", "train.parquet")
    assert_one_line_error(cli("export", "verl", build_dir / "train.jsonl", "-o", build_dir), "holds the input")
    assert files_under(build_dir) == before
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    assert_one_line_error(cli("export", "verl", build_dir, "-o", blocker), "existing file")
    assert blocker.read_text() == "keep me"
    assert_one_line_error(cli("export", "verl", build_dir, "-o", blocker / "sub"), "is a file, not a folder")
    assert_one_line_error(
        cli("export", "verl", build_dir, "-o", tmp_path / "v", "--prompt-layout", "chat"), "--prompt-layout"
    )
    assert_one_line_error(
        cli("export", "verl", build_dir / "train.jsonl", build_dir / "train.parquet", "-o", tmp_path / "v"),
        "two inputs map to the split 'train'",
    )
    assert not (tmp_path / "v").exists()


def test_a_second_export_replaces_the_first(build_dir, tmp_path):
    out = tmp_path / "verl"
    assert cli("export", "verl", build_dir / "train.jsonl", "-o", out)[0] == 0
    assert cli("export", "verl", build_dir, "-o", out)[0] == 0
    assert {p.name for p in out.iterdir()} == EXPORTED


def test_kill_9_mid_export_leaves_no_partial_folder(build_dir, tmp_path):
    out = tmp_path / "verl"
    prelude = (
        "import time, cello1.training.verl as verl\n"
        "_write = verl._write_table\n"
        "def slow(*a, **k):\n    _write(*a, **k); time.sleep(30)\n"
        "verl._write_table = slow"
    )
    proc = spawn(["export", "verl", str(build_dir), "-o", str(out)], prelude=prelude)
    assert wait_for(lambda: any(p.name.endswith(".tmp") and any(p.iterdir()) for p in tmp_path.iterdir()), 120)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists()
    assert cli("export", "verl", build_dir, "-o", out)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["verl"]  # the killed run's folder is gone too


def test_modes_follow_the_umask(build_dir, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli("export", "verl", build_dir, "-o", tmp_path / "verl")[0] == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "verl").iterdir()}
    assert modes.pop("run_verl_grpo.sh") == 0o755
    assert set(modes.values()) == {0o644}
    assert stat.S_IMODE((tmp_path / "verl").stat().st_mode) == 0o755
