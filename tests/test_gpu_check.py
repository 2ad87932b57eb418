"""benchmarks/gpu_check.py, the prepared GPU readiness check, run in its CPU smoke mode:
the same SFT → merged model → GRPO path with a tiny random-weight model and a tokenizer
trained on the spot (nothing downloaded), far fewer steps.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wrong_device_or_dtype_fails_fast_with_the_fix(tmp_path):
    gpu_check = load_script()
    with pytest.raises(SystemExit, match="--dtype float32"):
        gpu_check.main(["--device", "cpu", "--dtype", "bfloat16", "--out", str(tmp_path)])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device cpu"):
            gpu_check.main(["--out", str(tmp_path)])  # the default is cuda + bf16
    assert not any(tmp_path.iterdir())  # nothing written before the checks pass


def test_tiny_model_and_tokenizer_need_no_download(tmp_path):
    gpu_check = load_script()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    puzzles = gpu_check.make_puzzles(4, n=3, genes=10, seed=0)
    assert all(len(cell) == 10 for p in puzzles for cell in p.cells)
    folder = gpu_check.make_tiny_model(tmp_path / "m", puzzles, hidden=64, layers=1, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(puzzles[0].messages("sft"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    ids = tokenizer(puzzles[0].assistant_msg, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == puzzles[0].assistant_msg  # byte-level BPE round-trips
    assert AutoModelForCausalLM.from_pretrained(folder).config.vocab_size == len(tokenizer)


@pytest.mark.slow
def test_cpu_smoke_mode_runs_sft_and_grpo_and_reports_steps(tmp_path):
    gpu_check = load_script()
    report_file = tmp_path / "gpu_check.json"
    args = ["--device", "cpu", "--dtype", "float32", "--out", str(tmp_path / "run"), "--json", str(report_file)]
    args += ["--sft-steps", "2", "--grpo-steps", "2", "--num-generations", "2", "--grpo-prompts", "2"]
    args += ["--max-new-tokens", "8", "--n", "3", "--genes", "8", "--hidden", "64", "--layers", "1"]
    args += ["--eval-puzzles", "2"]
    report = gpu_check.main(args)
    assert json.loads(report_file.read_text()) == report
    sft, grpo = report["stages"]
    assert (sft["stage"], sft["steps"], grpo["stage"], grpo["steps"]) == ("sft", 2, "grpo", 2)
    for stage in (sft, grpo):
        assert stage["model_device"] == "cpu" and stage["peak_gpu_memory_gib"] is None
        assert len(stage["step_seconds"]) == 2 and all(t > 0 for t in stage["step_seconds"])
        assert stage["heldout"]["n_puzzles"] == 2 and "format_rate" in stage["heldout"]
        assert Path(stage["model_dir"], "config.json").exists()
    assert grpo["model_dir"] != sft["model_dir"] and report["versions"]["trl"]
