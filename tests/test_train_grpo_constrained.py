"""Constrained GRPO rollouts (``train grpo --constrained``), the curriculum inside a real run,
observability (metrics.jsonl, the curves PNG) and the exact shared-prompt speed-ups, on a tiny
random-weight model."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.training.config import GRPOStageConfig
from train_helpers import make_puzzles, puzzle_files, tiny_model_dir


def tiny_config(tmp_path, **overrides) -> GRPOStageConfig:
    train, _ = puzzle_files()
    values = {
        "model": str(tiny_model_dir()),
        "train_file": str(train),
        "output_dir": str(tmp_path / "grpo"),
        "max_steps": 2,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_prompt_length": 512,
        "max_completion_length": 40,
        "save_steps": 100,
        "report_to": "none",
        "resume_from_checkpoint": False,
        "trl_args": {"log_completions": False},
    }
    values.update(overrides)
    return GRPOStageConfig(**values)


def logged_steps(out) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in rows if "reward" in e]


def test_cli_constrained_two_steps_every_group_has_signal(tmp_path):
    """`cello1 train grpo --constrained`: 2 steps; the rollout groups carry reward variance,
    every rollout is well formed, and the run leaves metrics.jsonl and the curves PNG."""
    from cello1.cli import app

    train, _ = puzzle_files()
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train", "grpo", "--model", str(tiny_model_dir()), "--train", str(train), "--output-dir", str(out),
            "--max-steps", "2", "--num-generations", "4", "--constrained", "--reward", "cell_accuracy",
            "--plot", "--no-resume",
            "--set", "per_device_train_batch_size=8", "--set", "max_completion_length=40",
            "--set", "save_steps=100", "--set", "share_prompt_prefill=true", "--set", "gradient_accumulation_steps=1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    steps = logged_steps(out)
    assert [e["step"] for e in steps] == [1, 2]
    for e in steps:
        # a random 2-layer model never writes the format by itself; constrained, every rollout does
        assert e["rewards/format_rate/mean"] == 1.0
        assert 0.0 <= e["reward"] <= 1.0
        # the point of constrained rollouts: rewards vary within the groups, so GRPO has a gradient
        assert e["reward_std"] > 0.0
        assert e["frac_reward_zero_std"] < 1.0
        assert e["completions/clipped_ratio"] == 0.0  # the EOS always fits in the budget
        assert e["constrained/log_Z"] <= 0.0
        assert 0.0 < e["constrained/forced_token_share"] < 1.0
        assert e["completions/mean_length"] > 0
    png = out / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "final" / "config.json").exists()


def test_free_rollouts_of_a_random_model_carry_no_signal(tmp_path):
    """The contrast: unconstrained, every rollout of the random model is malformed (−1), every
    group has zero variance; the ``shaped`` reward ranks the malformed rollouts instead."""
    from cello1.training.grpo import train_grpo

    result = train_grpo(tiny_config(tmp_path, max_steps=1, max_completion_length=12))
    (step,) = logged_steps(result.output_dir)
    assert step["reward"] == -1.0 and step["frac_reward_zero_std"] == 1.0
    assert step["rewards/format_rate/mean"] == 0.0


def test_curriculum_run_logs_reward_by_n(tmp_path):
    from cello1.training.grpo import train_grpo

    mixed = tmp_path / "mixed.jsonl"
    write_puzzles(mixed, make_puzzles(2, seed=11, n=4) + make_puzzles(2, seed=12, n=3))
    result = train_grpo(
        tiny_config(
            tmp_path,
            train_file=str(mixed),
            constrained=True,
            reward_variant="cell_accuracy",
            curriculum="stage",
            num_generations=2,
            per_device_train_batch_size=4,
            plot=True,
        )
    )
    steps = logged_steps(result.output_dir)
    # stage curriculum: step 1 trains the two N=3 puzzles, step 2 the two N=4 ones
    assert [e["curriculum/n"] for e in steps] == [3.0, 4.0]
    assert "rewards/reward_n3/mean" in steps[0] and "rewards/reward_n3/mean" not in steps[1]
    assert "rewards/reward_n4/mean" in steps[1]
    assert steps[0]["rewards/reward_n3/mean"] == pytest.approx(steps[0]["reward"])
    assert (result.output_dir / "training_curves.png").exists()


def test_constrained_budget_preflight(tmp_path):
    from cello1.training.grpo import train_grpo

    with pytest.raises(InputError, match="too small for constrained rollouts"):
        train_grpo(tiny_config(tmp_path, constrained=True, max_completion_length=8))
    assert not (tmp_path / "grpo" / "metrics.jsonl").exists()


def test_reward_options_checked_before_training(tmp_path):
    from cello1.training.grpo import train_grpo

    with pytest.raises(InputError, match="does not take"):
        train_grpo(tiny_config(tmp_path, reward_variant="paper", reward_options={"coarse_credit": 0.2}))


def test_permutation_regex():
    from cello1.training.constrained_grpo import permutation_regex

    p = make_puzzles(1, seed=3)[0]
    rx = re.compile(permutation_regex(p))
    ok = "<think>because</think>\n<answer>" + " | ".join(reversed(p.candidates)) + "</answer>"
    assert rx.fullmatch(ok)
    assert not rx.fullmatch("<think>x</think>\n<answer>" + " | ".join([p.candidates[0]] * p.n) + "</answer>")
    assert not rx.fullmatch("<think>a<b</think>\n<answer>" + " | ".join(p.candidates) + "</answer>")


def test_permutation_regex_bounds_the_reasoning_so_the_answer_fits():
    """vLLM has no budget guard: with max_tokens, the longest completion the regex allows
    (plus EOS) has at most max_tokens characters, hence at most max_tokens tokens.
    """
    from cello1.training.constrained_grpo import longest_answer_chars, per_prompt_sampling_params, permutation_regex

    p = make_puzzles(1, seed=3)[0]
    longest = sorted(p.candidates, key=len)[-p.n :]
    answer = "</think>\n<answer>" + " | ".join(longest) + "</answer>"
    for budget in (longest_answer_chars(p) + 40, 300):
        rx = re.compile(permutation_regex(p, budget))
        room = budget - longest_answer_chars(p)
        assert rx.fullmatch("<think>" + "x" * room + answer)
        assert not rx.fullmatch("<think>" + "x" * (room + 1) + answer)
        assert len("<think>" + "x" * room + answer) + 1 <= budget

    class Params:
        max_tokens = 300
        structured_outputs = None

        def clone(self):
            return Params()

    (params,) = per_prompt_sampling_params(Params(), [p.messages()], lambda regex: regex)
    assert params.structured_outputs == permutation_regex(p, 300) != permutation_regex(p)


def test_constrain_vllm_sends_one_regex_per_prompt():
    """The vLLM colocate hook, with a stand-in LLM: each rollout gets its own puzzle's regex."""
    from cello1.training.constrained_grpo import permutation_regex
    from cello1.training.grpo_trainer import constrain_vllm

    class Params:
        structured_outputs = None

        def clone(self):
            return Params()

    class FakeLLM:
        def generate(self, prompts, sampling_params=None, **kwargs):
            return prompts, sampling_params

    puzzles = make_puzzles(2, seed=4)
    rows = [p.messages() for p in puzzles]
    llm = FakeLLM()
    constrain_vllm(llm, lambda: rows, lambda regex: regex)
    _, params = llm.generate(["a", "b"], sampling_params=Params())
    assert [p.structured_outputs for p in params] == [permutation_regex(p) for p in puzzles]
    with pytest.raises(RuntimeError, match="2 known puzzles"):
        llm.generate(["a", "b", "c"], sampling_params=Params())


def test_shared_prefill_gives_identical_greedy_tokens():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cello1.training.prefix_sharing import generate_with

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir()).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir())
    tok.padding_side = "left"
    texts = [
        tok.apply_chat_template(p.messages(), tokenize=False, add_generation_prompt=True)
        for p in make_puzzles(2, seed=5)
        for _ in range(3)
    ]
    texts[0] = texts[0] + "x"  # prompts of different lengths: left padding differs by row
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tok.pad_token_id}
    plain = model.generate(**enc, **kwargs)
    with generate_with(model, None, share_prefill=True):
        shared = model.generate(**enc, **kwargs)
    assert "generate" not in vars(model)  # the patch is removed
    assert torch.equal(plain, shared)


def _tiny_lora_model():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir())


def _grads(model):
    import torch

    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_shared_prompt_logps_equal_trl_forward():
    import torch

    from cello1.training.prefix_sharing import shared_prompt_logps

    model, tok = _tiny_lora_model()
    tok.padding_side = "left"
    texts = [
        tok.apply_chat_template(p.messages(), tokenize=False, add_generation_prompt=True)
        for p in make_puzzles(2, seed=7)
    ]
    texts[1] += " extra words"  # different prompt lengths: left padding
    enc = tok([t for t in texts for _ in range(3)], return_tensors="pt", padding=True, add_special_tokens=False)
    c = 7
    completion = torch.randint(10, 500, (6, c))
    cmask = torch.ones(6, c, dtype=torch.long)
    cmask[2, 4:] = 0
    ids = torch.cat([enc["input_ids"], completion], 1)
    mask = torch.cat([enc["attention_mask"], cmask], 1)

    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-c] = -100
    model.zero_grad()
    ref = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    (ref.log_probs[:, -c:] * cmask).sum().backward()
    ref_grad = _grads(model)
    model.zero_grad()
    logps, entropy = shared_prompt_logps(model, ids, mask, c, compute_entropy=True)
    (logps * cmask).sum().backward()
    on = cmask.bool()
    assert torch.allclose(logps[on], ref.log_probs[:, -c:][on], atol=1e-5)
    assert torch.allclose(entropy[on], ref.entropy[:, -c:][on], atol=1e-5)
    assert torch.allclose(_grads(model), ref_grad, rtol=1e-4, atol=1e-6)


def test_shared_prefix_forward_equals_plain_sft_forward():
    import torch

    from cello1.training.prefix_sharing import shared_prefix_forward

    model, tok = _tiny_lora_model()
    rows, labels = [], []
    for p in make_puzzles(3, seed=8):
        prompt = tok.apply_chat_template(p.messages(), tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        answer = tok(p.assistant_msg, add_special_tokens=False)["input_ids"]
        rows.append(prompt_ids + answer)
        labels.append([-100] * len(prompt_ids) + answer)
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])

    def loss_and_grad(share: bool):
        model.zero_grad()
        kwargs = {"input_ids": ids, "attention_mask": mask, "labels": lab, "use_cache": False, "fused_lm_head": True}
        if share:
            with shared_prefix_forward(model):
                out = model(**kwargs)
        else:
            out = model(**kwargs)
        loss = -out.log_probs.sum() / out.label_mask.sum()
        loss.backward()
        return loss.detach(), out.label_mask.sum(), out.is_top1.sum(), _grads(model)

    plain, shared = loss_and_grad(False), loss_and_grad(True)
    assert "forward" not in vars(model)
    assert torch.allclose(plain[0], shared[0], atol=1e-5)
    assert plain[1] == shared[1] and plain[2] == shared[2]
    assert torch.allclose(plain[3], shared[3], rtol=1e-4, atol=1e-6)


def test_report_to_and_plot_reach_trl(tmp_path):
    """`--report-to tensorboard --plot` end up in TRL's arguments and the stage config."""
    from cello1.cli.train_cmd import _options, build_config
    from cello1.training.grpo import build_grpo_args

    train, _ = puzzle_files()
    options = _options(str(tiny_model_dir()), train, None, tmp_path / "o", None, 2, None, False, True, "tensorboard")
    config = build_config("grpo", None, options, ["constrained=true", "reward_variant=ontology"])
    assert config.plot is True and config.report_to == "tensorboard"
    assert config.constrained is True and config.reward_variant == "ontology"
    assert build_grpo_args(config).report_to == ["tensorboard"]
    default = build_config("grpo", None, _options(*[None] * 10), ["model=m", f"train_file={train}"])
    assert default.reward_variant == "paper" and default.constrained is False and default.curriculum == "none"
