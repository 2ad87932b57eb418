"""GRPO: two steps with the batch reward on a tiny random model and on SmolLM2; logging,
held-out evaluation, checkpoint resume, pre-flight errors."""

from __future__ import annotations

import importlib.util
import json

import pytest

from cello1.errors import InputError
from cello1.training.callbacks import metric_reward_functions
from cello1.training.config import GRPOStageConfig
from train_helpers import make_puzzles, puzzle_files, smollm2_dir, tiny_model_dir


def tiny_config(tmp_path, **overrides) -> GRPOStageConfig:
    train, test = puzzle_files()
    values = {
        "model": str(tiny_model_dir()),
        "train_file": str(train),
        "output_dir": str(tmp_path / "grpo"),
        "max_steps": 2,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_prompt_length": 512,
        "max_completion_length": 8,
        "save_steps": 1,
        "eval_max_new_tokens": 8,
        "report_to": "none",
    }
    values.update(overrides)
    return GRPOStageConfig(**values)


def test_metric_rewards_match_eval_definitions():
    cell, batch, fmt = metric_reward_functions()
    assert [f.__name__ for f in (cell, batch, fmt)] == ["cell_accuracy", "batch_accuracy", "format_rate"]
    gold = ["B cell | T cell | NK cell"] * 3
    completions = [
        [{"role": "assistant", "content": "<think>x</think>\n<answer>B cell | T cell | NK cell</answer>"}],
        [{"role": "assistant", "content": "<think>x</think>\n<answer>T cell | B cell | NK cell</answer>"}],
        [{"role": "assistant", "content": "B cell | T cell | NK cell"}],  # right labels, invalid format
    ]
    assert cell(None, completions, answer=gold) == pytest.approx([1.0, 1 / 3, 0.0])
    assert batch(None, completions, answer=gold) == [1.0, 0.0, 0.0]
    assert fmt(None, completions, answer=gold) == [1.0, 1.0, 0.0]


def test_tiny_grpo_two_steps_logs_evaluates_resumes(tmp_path):
    from transformers import AutoModelForCausalLM

    from cello1.training.grpo import train_grpo

    _, test = puzzle_files()
    result = train_grpo(tiny_config(tmp_path, eval_file=str(test), eval_steps=1))
    out = result.output_dir
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_step = [e for e in steps if "reward" in e]
    assert [e["step"] for e in per_step] == [1, 2]
    for key in (
        "reward",
        "rewards/reward_paper/mean",
        "rewards/cell_accuracy/mean",
        "rewards/batch_accuracy/mean",
        "rewards/format_rate/mean",
        "kl",
    ):
        assert key in per_step[0], key
    assert all(-1.0 <= e["reward"] <= 1.0 for e in per_step)
    # periodic held-out evaluation: every step, same metric names as cello1 eval
    assert [h["step"] for h in result.heldout] == [1, 2]
    assert {"cell_accuracy", "batch_accuracy", "format_rate", "n_puzzles"} <= set(result.heldout[0])
    assert any("heldout/cell_accuracy" in e for e in steps)
    assert (out / "eval" / "step-1.jsonl").exists() and (out / "cello1_grpo.yaml").exists()
    assert AutoModelForCausalLM.from_pretrained(result.model_dir) is not None

    resumed = train_grpo(tiny_config(tmp_path, max_steps=3))
    state = json.loads((resumed.output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    losses = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"reward"' in x]
    assert losses == [1, 2, 3]  # step 3 only: it resumed instead of restarting


def test_preflight_errors(tmp_path):
    from cello1.training.grpo import train_grpo

    with pytest.raises(InputError, match="longer than max_prompt_length=32 tokens"):
        train_grpo(tiny_config(tmp_path, max_prompt_length=32))
    with pytest.raises(InputError, match="not divisible by num_generations 3"):
        train_grpo(tiny_config(tmp_path, num_generations=3))
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(InputError, match="use_vllm is on but vLLM is not installed"):
            train_grpo(tiny_config(tmp_path, use_vllm=True))
    assert not list((tmp_path / "grpo").glob("checkpoint-*"))


def test_unlabelled_puzzles_rejected():
    from cello1.training.data import grpo_records

    puzzles = make_puzzles(2)
    puzzles[1].answer = None
    with pytest.raises(InputError, match="no gold answer"):
        grpo_records(puzzles)


@pytest.mark.slow
def test_smollm2_grpo_two_steps(tmp_path):
    from cello1.training.grpo import train_grpo

    result = train_grpo(
        tiny_config(
            tmp_path,
            model=str(smollm2_dir()),
            per_device_train_batch_size=2,
            max_completion_length=4,
            use_lora=True,
            lora_r=4,
            lora_alpha=8,
            lora_layers=[29],
            save_steps=2,
        )
    )
    logged = [json.loads(x) for x in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "reward" in e] == [1, 2]
    assert (result.output_dir / "checkpoint-2").is_dir() and (result.model_dir / "config.json").exists()
