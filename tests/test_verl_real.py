"""The exported verl run against the real verl (``make verl-env``: verl in a cached venv).

``run_verl_grpo.sh`` is executed as written, with a ``python3`` on PATH that runs
``tests/verl_probe.py`` in verl's venv instead of ``-m verl.trainer.main_ppo``: verl's own
``main_ppo.main`` composes and validates the config from the script's overrides (only the
launch of Ray and the trainer is skipped), verl's ``RewardLoopWorker`` loads the reward
through ``load_reward_manager``/``get_custom_reward_fn`` and scores rows that verl's
``RLHFDataset`` read from the exported Parquet.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cello1.io import write_puzzles
from cello1.training.verl import LEGACY_REWARD_KEY, REWARD_KEY, VerlRunSettings, export_verl, parse_version
from train_helpers import make_puzzles, tiny_model_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("verl_probe.py")
SHIM = """#!/usr/bin/env bash
# the run script's `python3 -m verl.trainer.main_ppo OVERRIDES…` -> the probe in verl's venv
[ "$1" = "-m" ] && [ "$2" = "verl.trainer.main_ppo" ] || { echo "unexpected python3 call: $*" >&2; exit 3; }
shift 2
exec "$CELLO1_VERL_PYTHON" "$CELLO1_VERL_PROBE" "$@"
"""


@pytest.fixture(scope="module")
def verl_python() -> Path:
    """verl's venv, built by `make verl-env` when missing or out of date (a few minutes, once)."""
    if subprocess.run(["make", "-s", "-q", "verl-env"], cwd=REPO).returncode != 0:
        subprocess.run(["make", "-s", "verl-env"], cwd=REPO, check=True)
    python = REPO / ".venv-verl" / "bin" / "python"
    assert python.exists()
    return python


@pytest.fixture(scope="module")
def verl_version(verl_python) -> str:
    out = subprocess.run(
        [str(verl_python), "-c", "import importlib.metadata as m; print(m.version('verl'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("verl-data")
    write_puzzles(folder / "train.jsonl", make_puzzles(4, seed=1, reasoning=False))
    write_puzzles(folder / "test.jsonl", make_puzzles(2, seed=2, reasoning=False))
    return folder


def run_exported_script(script: Path, verl_python: Path, responses: list[str], workdir: Path) -> dict:
    """Run ``run_verl_grpo.sh`` with the probe standing in for verl's trainer; the probe's report."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python3").write_text(SHIM)
    (bin_dir / "python3").chmod(0o755)
    report = workdir / "probe.json"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "src"),  # cello1 importable in verl's venv, as `pip install cello1` would make it
        "CELLO1_VERL_PYTHON": str(verl_python),
        "CELLO1_VERL_PROBE": str(PROBE),
        "CELLO1_VERL_PROBE_OUT": str(report),
        "CELLO1_VERL_RESPONSES": json.dumps(responses),
        "HF_DATASETS_CACHE": str(workdir / "hf-datasets"),
        "HOME": str(workdir),  # verl caches parquet copies under ~/.cache/verl
    }
    proc = subprocess.run(["bash", str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), f"the probe did not run (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(report.read_text())
    result["returncode"] = proc.returncode
    return result


def test_verl_composes_the_exported_command_and_scores_with_the_cello1_reward(
    verl_python, verl_version, data, tmp_path
):
    assert parse_version(verl_version) >= (0, 9, 0), verl_version  # the version that dropped the old keys
    exported = export_verl(
        data,
        tmp_path / "verl",
        run=VerlRunSettings(model=str(tiny_model_dir()), verl_version=verl_version),
    )
    assert exported.reward_key == REWARD_KEY
    gold = [p.answer_str for p in make_puzzles(4, seed=1, reasoning=False)]
    labels = gold[1].split(" | ")
    swapped = " | ".join([labels[1], labels[0], *labels[2:]])
    responses = [
        f"<think>markers</think>\n<answer>{gold[0]}</answer>",  # all right: 1
        f"<think>two swapped</think>\n<answer>{swapped}</answer>",  # 1/3 cells, not exact: 1/6
        f"no tags: {gold[2]}",  # bad format: -1
    ]
    result = run_exported_script(exported.script, verl_python, responses, tmp_path / "run")
    assert result["returncode"] == 0 and "error" not in result, result.get("traceback")
    assert result["composed"] is True and result["rollout.n"] == 5  # the paper's overrides reached verl
    assert result["reward.custom_reward_function"] == {
        "path": str(exported.reward_path.resolve()),
        "name": "compute_score",
    }
    assert [s["gold"] for s in result["scores"]] == gold[:3]  # rows as verl's dataset read them
    assert [s["score"] for s in result["scores"]] == pytest.approx([1.0, 1 / 6, -1.0])


def test_old_top_level_keys_are_ignored_by_this_verl(verl_python, verl_version, data, tmp_path):
    """Why the key matters: with the pre-0.7.1 keys, verl 0.9 composes a config without the
    custom reward and falls back to its built-in scorers, which know no 'cellpuzzles'.
    """
    exported = export_verl(
        data, tmp_path / "verl", run=VerlRunSettings(model=str(tiny_model_dir()), verl_version="0.6.1")
    )
    assert exported.reward_key == LEGACY_REWARD_KEY
    gold = make_puzzles(1, seed=1, reasoning=False)[0].answer_str
    result = run_exported_script(
        exported.script, verl_python, [f"<think>x</think>\n<answer>{gold}</answer>"], tmp_path / "run"
    )
    assert result["composed"] is True
    assert result["legacy custom_reward_function"]["path"] == str(exported.reward_path.resolve())
    assert result["reward.custom_reward_function"]["path"] is None
    assert result["returncode"] == 1
    assert "NotImplementedError" in result["error"] and "cellpuzzles" in result["error"]
