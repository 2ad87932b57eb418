"""Configs shipped inside the package: `--config paper|cpu|gpu`, sized to the machine and to
the distilled traces they train on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.cli.train_cmd import build_config
from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.training import recipe
from cello1.training.config import NAMED_CONFIGS, STAGES, config_file, load_config, named_config_path
from train_helpers import make_puzzles, tiny_model_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def train_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    write_puzzles(path, make_puzzles(2))
    return path


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_every_packaged_config_loads_and_passes_the_checks(name, stage, train_file):
    path = named_config_path(name, stage)
    assert path.is_file() and path.parent.parts[-2:] == ("resources", "configs")  # package data, not the repo
    config = load_config(stage, name, [f"train_file={train_file}", "eval_file="])
    assert config.trl_args == {}  # only our own keys: loads without consulting TRL
    config.check()  # e.g. the GRPO generation batch divides into whole groups


def test_paper_config_is_the_repository_config_and_keeps_the_recipe():
    for stage in STAGES:
        assert (REPO / "configs" / f"{stage}.yaml").resolve() == named_config_path("paper", stage).resolve()
    sft, grpo = load_config("sft", "paper"), load_config("grpo", "paper")
    assert (sft.model, sft.lora_r, sft.max_length) == (recipe.BASE_MODEL, recipe.SFT_LORA_R, recipe.SFT_MAX_LENGTH)
    assert (grpo.num_generations, grpo.max_completion_length) == (recipe.GRPO_ROLLOUTS, recipe.GRPO_MAX_RESPONSE_LENGTH)
    assert load_config("sft", REPO / "configs" / "sft.yaml") == sft  # the repository path still works


def test_cpu_config_is_sized_for_a_cpu():
    sft, grpo = load_config("sft", "cpu"), load_config("grpo", "cpu")
    assert sft.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for config in (sft, grpo):
        assert config.use_lora and config.lora_r <= 32
        assert config.bf16 is None and config.use_cpu is None  # auto: float32 on the CPU
        assert config.eval_max_puzzles <= 16 and config.eval_max_new_tokens <= 1024
        assert not config.gradient_checkpointing
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps <= 8  # paper: 96
    assert 1024 <= sft.max_length <= 2048  # paper: 4096
    completions_per_step = grpo.per_device_train_batch_size * grpo.gradient_accumulation_steps
    assert completions_per_step <= 16 and completions_per_step % grpo.num_generations == 0  # paper: 320
    assert grpo.max_completion_length <= 1024 and grpo.max_prompt_length <= 2048  # paper: 3000 / 3072
    assert 0 < grpo.max_steps <= 100 and grpo.use_vllm is False


def test_gpu_config_fits_one_gpu():
    sft, grpo = load_config("sft", "gpu"), load_config("grpo", "gpu")
    assert sft.use_lora and grpo.use_lora and grpo.gradient_checkpointing  # a 7B model on one card
    assert grpo.max_prompt_length == recipe.GRPO_MAX_PROMPT_LENGTH and grpo.num_generations == recipe.GRPO_ROLLOUTS


def test_cli_resolves_names_and_paths_and_rejects_unknown_names(tmp_path, train_file):
    config = build_config("sft", "cpu", {"train_file": str(train_file)}, ["lora_r=8"])
    assert config.model == "HuggingFaceTB/SmolLM2-135M-Instruct" and config.lora_r == 8
    own = tmp_path / "mine.yaml"
    own.write_text("lora_r: 4\n")
    assert config_file(own, "sft") == own and load_config("sft", str(own)).lora_r == 4
    with pytest.raises(InputError, match="not a packaged config"):
        load_config("grpo", "laptop")
    result = CliRunner().invoke(app, ["train", "sft", "--config", "laptop", "--train", str(train_file)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --config 'laptop': no such file, and not a packaged config (paper, cpu, gpu); "
        "give one of those names or the path of a .yaml/.toml file"
    ]
    missing = CliRunner().invoke(app, ["train", "sft", "--config", str(tmp_path / "gone.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_cli_lists_the_packaged_configs():
    result = CliRunner().invoke(app, ["train", "configs"])
    assert result.exit_code == 0, result.output
    for name in NAMED_CONFIGS:
        assert f"{name}: " in result.output and str(named_config_path(name, "grpo")) in result.output


@pytest.mark.slow
def test_cpu_budgets_fit_markers_traces_on_embedded_puzzles():
    """The budgets in cpu-*.yaml hold the prompts and traces they are meant for: N 3-4 puzzles
    from the embedded data (50 genes per cell), traces from the markers teacher, SmolLM2 tokens.
    """
    from transformers import AutoTokenizer

    from cello1.data import EMBEDDED_LABEL_KEY, build_puzzles, pbmc68k_reduced
    from cello1.training.distill import distill
    from cello1.training.modeling import prompt_token_lengths

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no 'donor_id' column")
        built = build_puzzles(pbmc68k_reduced(), label_key=EMBEDDED_LABEL_KEY, n_min=3, n_max=4, puzzles_per_n=12)
    kept = distill(built.train[:24], "markers", progress=False).kept
    assert len(kept) >= 12
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())  # SmolLM2's tokenizer, converted once per session
    completions = [len(tokenizer(p.assistant_msg, add_special_tokens=False)["input_ids"]) for p in kept]
    prompts = prompt_token_lengths(tokenizer, kept, "sft")
    sft, grpo = load_config("sft", "cpu"), load_config("grpo", "cpu")
    assert 200 < sum(completions) / len(completions) < 450  # docs/training.md: ~330 on average
    assert max(completions) < grpo.max_completion_length and max(completions) < sft.eval_max_new_tokens
    assert max(prompts) <= grpo.max_prompt_length
    assert max(p + c for p, c in zip(prompts, completions, strict=True)) <= sft.max_length
