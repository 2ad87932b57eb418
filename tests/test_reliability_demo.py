"""``cello1 demo`` (issue 11): like ``build``, it never writes into someone else's non-empty
folder, and a failed or killed demo leaves the output folder as it was."""

from __future__ import annotations

import signal

from reliability_helpers import assert_one_line_error, cli, files_under, spawn, wait_for

QUICK = ["--n-min", "4", "--n-max", "5", "-q"]


def test_a_foreign_non_empty_folder_is_refused_and_untouched(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    assert_one_line_error(cli("demo", "-o", tmp_path, *QUICK), "not an earlier demo's output", "--overwrite")
    assert files_under(tmp_path) == {"thesis.tex"}


def test_an_earlier_demo_is_replaced_but_not_if_something_was_added(tmp_path):
    out = tmp_path / "demo"
    assert cli("demo", "-o", out, *QUICK)[0] == 0
    first = files_under(out)
    assert "summary.json" in first and not [n for n in first if n.startswith(".")]
    assert cli("demo", "-o", out, *QUICK)[0] == 0  # replaced, not resumed into
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(cli("demo", "-o", out, *QUICK), "not an earlier demo's output")
    assert (out / "notes.txt").read_text() == "mine"
    assert cli("demo", "-o", out, "--overwrite", *QUICK)[0] == 0
    assert files_under(out) == first


def test_bad_settings_and_outputs_are_one_line_and_write_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args, phrases in [
        (["-o", blocker], ["not a folder"]),
        (["-o", tmp_path / "d", "--n-min", "1"], ["--n-min"]),
        (["-o", tmp_path / "d", "--n-min", "12", "--n-max", "15"], ["largest has 10"]),
        (["-o", "/proc/cello1-demo"], ["cannot write in /proc"]),
    ]:
        assert_one_line_error(cli("demo", *args, "-q"), *phrases)
    assert files_under(tmp_path) == {"file"}


def test_kill_9_mid_demo_leaves_the_earlier_output_whole(tmp_path):
    out = tmp_path / "demo"
    assert cli("demo", "-o", out, *QUICK)[0] == 0
    before = {name: (out / name).read_bytes() for name in files_under(out)}
    prelude = (
        "import time, cello1.scoring as scoring\n"
        "_evaluate = scoring.evaluate\n"
        "def slow(*a, **k):\n    time.sleep(30); return _evaluate(*a, **k)\n"
        "scoring.evaluate = slow"
    )
    proc = spawn(["demo", "-o", str(out), "--seed", "1", *QUICK], prelude=prelude)
    assert wait_for(lambda: any(p.name.endswith(".tmp") and any(p.iterdir()) for p in tmp_path.iterdir()), 120)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before
    assert cli("demo", "-o", out, "--seed", "1", *QUICK)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
