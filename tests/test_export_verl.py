"""verl export: Parquet schema, reward shim importable by file path, launch script."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.puzzle import SYSTEM_MSG
from cello1.training.verl import (
    LEGACY_REWARD_KEY,
    REWARD_KEY,
    VerlRunSettings,
    export_verl,
    reward_config_key,
    verl_overrides,
)
from train_helpers import make_puzzles


@pytest.fixture()
def split_files(tmp_path):
    data = tmp_path / "data"
    write_puzzles(data / "train.jsonl", make_puzzles(5, seed=1, reasoning=False))
    write_puzzles(data / "test.jsonl", make_puzzles(3, seed=2, reasoning=False))
    return data


def test_parquet_schema_and_reward_shim(split_files, tmp_path):
    result = export_verl([split_files / "train.jsonl", split_files / "test.jsonl"], tmp_path / "verl")
    assert result.counts == {"train": 5, "test": 3}
    rows = pq.read_table(result.files["train"]).to_pylist()
    assert set(rows[0]) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    first, puzzle = rows[0], make_puzzles(5, seed=1)[0]
    assert first["data_source"] == "cellpuzzles" and first["ability"] == "cell_type_annotation"
    assert first["prompt"] == [{"role": "system", "content": SYSTEM_MSG}, {"role": "user", "content": puzzle.user_msg}]
    assert first["reward_model"] == {"style": "rule", "ground_truth": puzzle.answer_str}
    assert first["extra_info"]["split"] == "train" and first["extra_info"]["index"] == 0
    assert first["extra_info"]["id"] == puzzle.id and first["extra_info"]["n"] == 3
    assert [r["extra_info"]["index"] for r in pq.read_table(result.files["test"]).to_pylist()] == [0, 1, 2]

    # verl imports custom_reward_function.path as a file and calls .name
    spec = importlib.util.spec_from_file_location("verl_custom_reward", result.reward_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gold = first["reward_model"]["ground_truth"]
    good = f"<think>markers</think>\n<answer>{gold}</answer>"
    assert module.compute_score("cellpuzzles", good, gold, first["extra_info"]) == 1.0
    assert module.compute_score("cellpuzzles", "no tags " + gold, gold) == -1.0
    labels = gold.split(" | ")
    swapped = " | ".join([labels[1], labels[0], *labels[2:]])
    assert module.compute_score("cellpuzzles", f"<think>x</think>\n<answer>{swapped}</answer>", gold) == pytest.approx(
        1 / 6
    )
    assert "import torch" not in result.reward_path.read_text()

    script = result.script.read_text()
    for override in (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.rollout.n=5",
        "actor_rollout_ref.actor.optim.lr=1e-06",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.kl_loss_coef=0.001",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        "actor_rollout_ref.actor.entropy_coeff=0",
        "data.max_prompt_length=3072",
        "data.max_response_length=3000",
        "data.train_batch_size=64",
        "trainer.n_gpus_per_node=8",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
        "trainer.total_epochs=20",
        f"reward.custom_reward_function.path={result.reward_path.resolve()}",  # verl >= 0.7.1 reads these
        "reward.custom_reward_function.name=compute_score",
        f"data.train_files={result.files['train'].resolve()}",
    ):
        assert override in script, override
    manifest = (tmp_path / "verl" / "reward_function.json").read_text()
    assert "cello1.scoring.verl" in manifest and "compute_score" in manifest


def test_cli_folder_input_and_user_prompt_layout(split_files, tmp_path):
    result = CliRunner().invoke(
        app, ["export", "verl", str(split_files), "-o", str(tmp_path / "v"), "--prompt-layout", "test"]
    )
    assert result.exit_code == 0, result.output
    assert "train: 5 rows" in result.output and "test: 3 rows" in result.output
    row = pq.read_table(tmp_path / "v" / "test.parquet").to_pylist()[0]
    assert [m["role"] for m in row["prompt"]] == ["user"] and row["prompt"][0]["content"].endswith(SYSTEM_MSG)


def test_single_unnamed_input_is_train_and_errors(tmp_path):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, make_puzzles(2, reasoning=False))
    assert set(export_verl(path, tmp_path / "o").files) == {"train"}
    unlabelled = tmp_path / "unlabelled.jsonl"
    puzzles = make_puzzles(1)
    puzzles[0].answer = None
    write_puzzles(unlabelled, puzzles)
    with pytest.raises(InputError, match="no gold answer"):
        export_verl(unlabelled, tmp_path / "o2")
    result = CliRunner().invoke(app, ["export", "verl", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o3")])
    assert result.exit_code == 2 and result.output.startswith("error:")


@pytest.mark.parametrize(
    ("version", "key"),
    [
        ("0.9.1", REWARD_KEY),
        ("0.7.1", REWARD_KEY),
        ("0.8.0rc1", REWARD_KEY),
        ("1.0", REWARD_KEY),
        (None, REWARD_KEY),  # no verl installed: the newest layout
        ("0.7.0", LEGACY_REWARD_KEY),
        ("0.6.1+cu124", LEGACY_REWARD_KEY),
    ],
)
def test_reward_key_follows_the_verl_version(version, key):
    assert reward_config_key(version) == key


def test_chosen_verl_version_writes_its_keys_and_bad_versions_fail(split_files, tmp_path):
    old = export_verl(split_files, tmp_path / "old", run=VerlRunSettings(verl_version="0.6.1"))
    assert old.reward_key == LEGACY_REWARD_KEY and old.verl_version == "0.6.1"
    lines = old.script.read_text().splitlines()
    assert any(line.strip().startswith(f"custom_reward_function.path={old.reward_path.resolve()}") for line in lines)
    assert not any("reward.custom_reward_function" in line for line in lines)
    manifest = json.loads((tmp_path / "old" / "reward_function.json").read_text())
    assert manifest["custom_reward_function.name"] == "compute_score" and manifest["verl_version"] == "0.6.1"

    new = verl_overrides(old.files, old.reward_path, VerlRunSettings(verl_version="0.9.1"))
    assert "reward.custom_reward_function.name=compute_score" in new
    assert "custom_reward_function.name=compute_score" not in new

    with pytest.raises(InputError, match="not a version"):
        export_verl(split_files, tmp_path / "bad", run=VerlRunSettings(verl_version="latest"))
    assert not (tmp_path / "bad").exists()  # checked before anything is written
    result = CliRunner().invoke(
        app, ["export", "verl", str(split_files), "-o", str(tmp_path / "cli"), "--verl-version", "0.6.1"]
    )
    assert result.exit_code == 0, result.output
    assert "reward: custom_reward_function.path=" in result.output and "verl 0.6.1" in result.output
    bad = CliRunner().invoke(
        app, ["export", "verl", str(split_files), "-o", str(tmp_path / "b"), "--verl-version", "x"]
    )
    assert bad.exit_code == 2 and "--verl-version" in bad.output and len(bad.output.strip().splitlines()) == 1
