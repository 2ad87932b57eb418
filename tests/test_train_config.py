"""Stage configs: paper defaults, YAML/TOML + overrides, TRL pass-through, early errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.training.config import GRPOStageConfig, SFTStageConfig, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_paper_defaults():
    sft = SFTStageConfig()
    assert (sft.lora_r, sft.lora_alpha, sft.lora_dropout, sft.lora_target_modules) == (256, 512, 0.05, "all-linear")
    assert (sft.learning_rate, sft.max_length, sft.num_train_epochs, sft.use_lora, sft.merge) == (
        5e-5,
        4096,
        1.0,
        True,
        True,
    )
    assert (sft.per_device_train_batch_size, sft.gradient_accumulation_steps) == (6, 16)
    grpo = GRPOStageConfig()
    assert (grpo.num_generations, grpo.learning_rate, grpo.beta) == (5, 1e-6, 0.001)
    assert (grpo.max_prompt_length, grpo.max_completion_length, grpo.entropy_coef) == (3072, 3000, 0.0)
    assert grpo.use_vllm == "auto" and grpo.reward_variant == "paper"


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nlora_r: 8\nmax_grad_norm: 0.5\n")
    cfg = load_config("sft", path, ["learning_rate=2e-5", "use_dora=true", "lora_layers=[1, 2]"])
    assert cfg.learning_rate == pytest.approx(2e-5) and isinstance(cfg.learning_rate, float)
    assert cfg.lora_r == 8 and cfg.use_dora is True and cfg.lora_layers == [1, 2]
    assert cfg.trl_args == {"max_grad_norm": 0.5}  # a TRL argument, passed through


def test_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('num_generations = 4\nprompt_layout = "test"\nlearning_rate = 3e-6\n')
    cfg = load_config("grpo", path)
    assert (cfg.num_generations, cfg.prompt_layout, cfg.learning_rate) == (4, "test", 3e-6)


def test_unknown_key_names_valid_keys(tmp_path):
    with pytest.raises(InputError, match="unknown sft setting 'lora_rank'.*lora_r"):
        load_config("sft", None, {"lora_rank": 8})
    with pytest.raises(InputError, match="not key=value"):
        load_config("sft", None, ["learning_rate"])
    with pytest.raises(InputError, match="not a number"):
        load_config("sft", None, ["learning_rate=fast"])


def test_repo_configs_load():
    sft = load_config("sft", REPO / "configs" / "sft.yaml")
    grpo = load_config("grpo", REPO / "configs" / "grpo.yaml")
    assert sft.lora_r == 256 and sft.gradient_checkpointing is True
    assert grpo.num_generations == 5 and grpo.beta == 0.001 and grpo.max_prompt_length == 3072
    for name, kind in [("deepspeed_zero3.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP"), ("multi_gpu.yaml", "MULTI_GPU")]:
        data = yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text())
        assert data["distributed_type"] == kind
    assert (
        yaml.safe_load((REPO / "configs" / "accelerate" / "deepspeed_zero3.yaml").read_text())["deepspeed_config"][
            "zero_stage"
        ]
        == 3
    )


def test_save_config_roundtrip(tmp_path):
    cfg = load_config("grpo", None, {"learning_rate": 2e-6, "trl_args": {"top_p": 0.9}})
    path = save_config(cfg, tmp_path)
    assert path.name == "cello1_grpo.yaml"
    assert load_config("grpo", path) == cfg


def test_generation_batch_must_divide(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text("")
    cfg = GRPOStageConfig(train_file=str(train), per_device_train_batch_size=3, gradient_accumulation_steps=1)
    with pytest.raises(InputError, match="not divisible by num_generations 5"):
        cfg.check()
    with pytest.raises(InputError, match=">= 2"):
        GRPOStageConfig(train_file=str(train), num_generations=1).check()


def test_cli_reports_impossible_settings_before_training(tmp_path):
    from train_helpers import puzzle_files

    train, _ = puzzle_files()
    result = CliRunner().invoke(
        app,
        [
            "train",
            "grpo",
            "--train",
            str(train),
            "-o",
            str(tmp_path / "run"),
            "--set",
            "per_device_train_batch_size=3",
            "--set",
            "gradient_accumulation_steps=1",
        ],
    )
    assert result.exit_code == 2
    assert "not divisible by num_generations" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # nothing written
    result = CliRunner().invoke(app, ["train", "sft", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no training puzzles" in result.output


def test_trl_args_on_cpu():
    from cello1.training.grpo import build_grpo_args
    from cello1.training.sft import build_sft_args

    sft = build_sft_args(SFTStageConfig(output_dir="/tmp/x", max_length=512))
    assert sft.bf16 is False and sft.use_cpu is True and sft.completion_only_loss is True and sft.max_length == 512
    grpo = build_grpo_args(
        GRPOStageConfig(output_dir="/tmp/x", per_device_train_batch_size=10, gradient_accumulation_steps=1)
    )
    assert grpo.num_generations == 5 and grpo.beta == 0.001 and grpo.max_completion_length == 3000
    assert grpo.use_vllm is False and grpo.reward_weights == [1.0, 0.0, 0.0, 0.0]
    assert grpo.generation_batch_size == 10


def test_module_entry_points_for_accelerate():
    """``accelerate launch -m cello1.cli train sft|grpo …`` parses the training options."""
    from typer.testing import CliRunner

    from cello1.cli import app

    for stage in ("sft", "grpo"):
        result = CliRunner().invoke(app, ["train", stage, "--help"])
        assert result.exit_code == 0
        assert "--config" in result.output
    assert (REPO / "src" / "cello1" / "cli" / "__main__.py").exists()  # accelerate launch -m cello1.cli
