"""SFT: two LoRA steps on a tiny random model and on SmolLM2; checkpoints; merged model."""

from __future__ import annotations

import json

import pytest

from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.training.config import SFTStageConfig
from cello1.training.data import sft_records
from train_helpers import make_puzzles, puzzle_files, smollm2_dir, tiny_model_dir


def tiny_config(tmp_path, **overrides) -> SFTStageConfig:
    train, test = puzzle_files()
    values = {
        "model": str(tiny_model_dir()),
        "train_file": str(train),
        "output_dir": str(tmp_path / "sft"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "lora_r": 4,
        "lora_alpha": 8,
        "max_length": 512,
        "save_steps": 1,
        "eval_max_new_tokens": 8,
        "report_to": "none",
    }
    values.update(overrides)
    return SFTStageConfig(**values)


def test_sft_records_are_prompt_completion():
    puzzle = make_puzzles(1)[0]
    (rec,) = sft_records([puzzle], "test")
    assert [m["role"] for m in rec["prompt"]] == ["user"]
    assert rec["completion"] == [{"role": "assistant", "content": puzzle.assistant_msg}]
    assert rec["completion"][0]["content"].startswith("<think>") and rec["completion"][0]["content"].endswith(
        "</answer>"
    )
    with pytest.raises(InputError, match="no reasoning trace.*cello1 distill"):
        sft_records(make_puzzles(2, reasoning=False))


def test_reads_official_reasoning_split(tmp_path):
    from cello1.training.data import load_puzzles

    puzzle = make_puzzles(1)[0]
    official = {k: v for k, v in puzzle.to_record(provenance=False).items() if k != "id"}  # 3 strings only
    assert official["assistant_msg"].startswith("<think>")
    path = tmp_path / "reasoning.json"
    path.write_text(json.dumps([official]))
    (rec,) = sft_records(load_puzzles(path))
    assert rec["completion"][0]["content"] == official["assistant_msg"]
    assert rec["prompt"][1]["content"] == official["user_msg"] and rec["prompt"][0]["content"] == official["system_msg"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One 2-step SFT run shared by the tests below (the slow part)."""
    from cello1.training.sft import train_sft

    tmp_path = tmp_path_factory.mktemp("sft")
    _, test = puzzle_files()
    return tmp_path, train_sft(tiny_config(tmp_path, eval_file=str(test)))


def test_tiny_sft_two_steps_checkpoint_resume_merge(tiny_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cello1.training.sft import train_sft

    tmp_path, result = tiny_run
    out = result.output_dir
    assert (out / "checkpoint-2").is_dir() and (out / "final" / "adapter_config.json").exists()
    saved = (out / "cello1_sft.yaml").read_text()
    assert "lora_r: 4" in saved and "max_steps: 2" in saved
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logs if "loss" in e] == [1, 2]
    # the held-out evaluation ran at the end with cello1.scoring's metrics
    assert result.heldout and {"cell_accuracy", "batch_accuracy", "format_rate"} <= set(result.heldout[-1])
    assert len((out / "eval" / "step-2.jsonl").read_text().splitlines()) == 2

    # resume: one more step continues from checkpoint-2 instead of starting over
    resumed = train_sft(tiny_config(tmp_path, max_steps=3))
    state = json.loads((resumed.output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [
        e["step"] for e in (json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()) if "loss" in e
    ] == [1, 2, 3]

    # the merged folder is a standalone model: no adapter files, loads and generates
    merged = resumed.model_dir
    assert (merged / "config.json").exists() and not (merged / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert tokenizer.chat_template
    ids = tokenizer.apply_chat_template(
        make_puzzles(1)[0].messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out_ids = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out_ids.shape[1] == ids["input_ids"].shape[1] + 5


def test_merged_model_loads_in_hf_solver(tiny_run):
    pytest.importorskip("cello1.solvers.hf")
    from cello1.solvers.run import solve

    _, result = tiny_run
    records = solve(make_puzzles(1), "hf", model=str(result.model_dir), max_new_tokens=4, progress=False)
    assert len(records) == 1 and records[0]["error"] is None and records[0]["completion_tokens"] <= 4


def test_preflight_errors(tmp_path):
    from transformers import AutoTokenizer

    from cello1.training.sft import train_sft

    with pytest.raises(InputError, match="longer than max_length=64 tokens"):
        train_sft(tiny_config(tmp_path, max_length=64))
    plain = tmp_path / "plain"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    for f in tiny_model_dir().glob("*.safetensors"):
        (plain / f.name).symlink_to(f)
    (plain / "config.json").write_text((tiny_model_dir() / "config.json").read_text())
    with pytest.raises(InputError, match="has no chat template"):
        train_sft(tiny_config(tmp_path, model=str(plain)))
    untraced = tmp_path / "plain.jsonl"
    write_puzzles(untraced, make_puzzles(2, reasoning=False))
    with pytest.raises(InputError, match="no reasoning trace"):
        train_sft(tiny_config(tmp_path, train_file=str(untraced)))
    assert not (tmp_path / "sft" / "checkpoint-1").exists()


@pytest.mark.slow
def test_smollm2_sft_two_steps(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cello1.training.sft import train_sft

    result = train_sft(
        tiny_config(
            tmp_path,
            model=str(smollm2_dir()),
            per_device_train_batch_size=1,
            lora_layers=[29],
            max_length=400,
            save_steps=2,
        )
    )
    assert (result.output_dir / "checkpoint-2").is_dir()
    assert result.metrics["train_loss"] > 0
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    ids = tokenizer.apply_chat_template(
        make_puzzles(1)[0].messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
