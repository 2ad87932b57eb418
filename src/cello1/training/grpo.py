"""GRPO with the batch-level reward: TRL ``GRPOTrainer`` + ``cello1.scoring.trl_reward``.

Paper defaults (docs/format.md §7): 5 rollouts per prompt, lr 1e-6, KL coefficient 0.001,
prompt/response limits 3,072/3,000 tokens, entropy coefficient 0. vLLM rollouts
when vLLM is installed and a GPU is present (``use_vllm: auto``). The prompt mode is
the one used at inference. Per step TRL logs the reward and — through zero-weight
metric "rewards" — cell accuracy, batch accuracy and format rate; a callback
evaluates on the held-out split every ``eval_steps`` with ``cello1.scoring.evaluate``.
Runs resume from the last ``checkpoint-*`` in ``output_dir`` (``resume_from_checkpoint: auto``).

Beyond the paper (each off by default): reward variants (``reward_variant`` /
``reward_options``: dense per-cell, exact match, format shaping, Cell Ontology partial credit),
constrained rollouts (``constrained``, :mod:`cello1.training.constrained_grpo`), a curriculum
over N (``curriculum``, :mod:`cello1.training.curriculum`; the reward is logged by N whenever
the training set has several N) and exact CPU speed-ups (``share_prompt_prefill``), all in
:mod:`cello1.training.grpo_trainer`.

Multi-GPU: ``accelerate launch -m cello1.cli train grpo --config …``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cello1.errors import InputError
from cello1.puzzle import Puzzle, mark_prompt_layout, warn_on_layout_mismatch
from cello1.training.config import GRPOStageConfig, has_gpu, save_config, vllm_available
from cello1.training.data import grpo_dataset, load_puzzles
from cello1.training.modeling import (
    check_prompt_lengths,
    convert_to_folder,
    load_model,
    load_tokenizer,
    resolve_resume,
    split_model_spec,
    trainer_kwargs,
)
from cello1.training.sft import TrainResult, build_peft_config, finish_run, save_merged

if TYPE_CHECKING:
    from trl import GRPOConfig

    from cello1.training.curriculum import CurriculumState

log = logging.getLogger("cello1.training")


def resolve_use_vllm(setting: bool | str) -> bool:
    """Whether rollouts use vLLM: ``auto`` means installed and a GPU present; asking for it
    without vLLM installed raises.
    """
    if isinstance(setting, str):
        if setting.lower() != "auto":
            return setting.lower() in ("true", "yes", "1", "on")
        return vllm_available() and has_gpu()
    if setting and not vllm_available():
        raise InputError("use_vllm is on but vLLM is not installed; `pip install 'cello1[vllm]'` or set use_vllm=false")
    return bool(setting)


def reward_function(variant: str = "paper", options: dict[str, float] | None = None) -> Callable[..., list[float]]:
    """The batch-level reward as a TRL reward callable (gold in the ``answer`` column);
    ``paper`` without options is ``cello1.scoring.trl_reward``.
    """
    from cello1.scoring import make_reward, trl_reward

    return trl_reward if variant == "paper" and not options else make_reward(variant, **(options or {}))


def reward_functions(
    config: GRPOStageConfig, sizes: list[int], state: CurriculumState | None = None
) -> list[Callable[..., list[float | None]]]:
    """The reward (weight 1), then zero-weight functions TRL logs: cell accuracy, batch accuracy,
    format rate and — when the puzzles have several N — the reward by N (``reward_n{N}``).
    """
    from cello1.training.callbacks import metric_reward_functions
    from cello1.training.curriculum import reward_by_n_functions

    reward = reward_function(config.reward_variant, config.reward_options)
    by_n = reward_by_n_functions(reward, sizes, state) if len(set(sizes)) > 1 or state is not None else []
    return [reward, *metric_reward_functions(), *by_n]


def build_grpo_args(config: GRPOStageConfig, n_rewards: int = 4) -> GRPOConfig:
    """The ``trl.GRPOConfig`` for a stage config (paper defaults + CPU/GPU auto settings);
    ``n_rewards`` = how many reward functions (the first counts, the others are logged only).
    """
    from trl import GRPOConfig

    use_vllm = resolve_use_vllm(config.use_vllm)
    extra: dict[str, object] = {}
    if config.constrained and use_vllm:
        # vLLM's sampling log-probs are constrained, the trainer's are not (see constrained_grpo)
        if config.trl_args.get("vllm_importance_sampling_correction"):
            log.warning("constrained rollouts: vllm_importance_sampling_correction turned off (it would compare "
                        "constrained vLLM log-probs with unconstrained trainer log-probs)")  # fmt: skip
        extra["vllm_importance_sampling_correction"] = False
    if config.curriculum != "none":
        extra["shuffle_dataset"] = False  # the curriculum sampler orders the prompts itself
    kwargs = trainer_kwargs(
        config,
        generation_batch_size=config.generation_batch_size,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        beta=config.beta,
        entropy_coef=config.entropy_coef,
        temperature=config.temperature,
        # reward first, then cell accuracy / batch accuracy / format rate / reward by N for logging only
        reward_weights=[1.0] + [0.0] * (n_rewards - 1),
        use_vllm=use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_tensor_parallel_size=config.vllm_tensor_parallel_size,
    )
    kwargs.update(extra)
    return GRPOConfig(**kwargs)


def check_constrained_budget(tokenizer, puzzles: list[Puzzle], max_completion_length: int) -> None:
    """``constrained`` needs room for ``<think></think>``, the longest possible answer and EOS."""
    from cello1.solvers.constrained import answer_pieces

    needs = [(answer_pieces(tokenizer, p).min_new_tokens() + 1, p.id) for p in puzzles]
    need, pid = max(needs)
    if max_completion_length < need:
        raise InputError(
            f"max_completion_length {max_completion_length} is too small for {{constrained}} rollouts: puzzle "
            f"{pid} needs at least {need} tokens (<think></think>, its longest possible answer and EOS)",
            params=["constrained"],
        )


def _policy_model_path(config: GRPOStageConfig) -> str:
    """GRPO rebuilds its reference model from the policy's path, so a GGUF file is
    first converted to a plain folder (once, cached in ``output_dir/base-model``).
    """
    name, extra = split_model_spec(config.model)
    if not extra:
        return config.model
    folder = Path(config.output_dir) / "base-model"
    if not (folder / "config.json").exists():
        log.info("converting %s to a transformers folder in %s", config.model, folder)
        convert_to_folder(config.model, folder)
    return str(folder)


def train_grpo(config: GRPOStageConfig, callbacks: list | None = None) -> TrainResult:
    """Run GRPO; the final policy is saved as a standalone model in ``{output_dir}/final``."""
    from cello1.training.callbacks import stage_callbacks
    from cello1.training.curriculum import CurriculumState

    config.check()  # cheap setting errors first, before heavy imports and model loading
    from cello1.training.grpo_trainer import make_trainer_class

    warn_on_layout_mismatch(config.model, config.prompt_layout)
    tokenizer = load_tokenizer(config.model)
    train_puzzles = load_puzzles(config.train_file, config.max_train_puzzles)
    dataset = grpo_dataset(train_puzzles, config.prompt_layout)
    check_prompt_lengths(tokenizer, train_puzzles, config.prompt_layout, config.max_prompt_length, "max_prompt_length")
    if config.constrained:
        check_constrained_budget(tokenizer, train_puzzles, config.max_completion_length)
    eval_puzzles = load_puzzles(config.eval_file, config.eval_max_puzzles) if config.eval_file else []
    sizes = [p.n for p in train_puzzles]
    state = None
    if config.curriculum != "none":
        state = CurriculumState(sizes, config.curriculum_threshold, config.curriculum_window)
    rewards = reward_functions(config, sizes, state)

    args = build_grpo_args(config, len(rewards))
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    resume = resolve_resume(config.resume_from_checkpoint, out)

    model = load_model(_policy_model_path(config), "bfloat16" if args.bf16 else None)
    all_callbacks, heldout = stage_callbacks(config, tokenizer, eval_puzzles, out, callbacks)
    trainer = make_trainer_class()(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=build_peft_config(config),
        callbacks=all_callbacks,
        constrained=config.constrained,
        mask_forced_tokens=config.mask_forced_tokens,
        share_prompt_prefill=config.share_prompt_prefill,
        curriculum=config.curriculum,
        curriculum_state=state,
        sizes=sizes,
    )
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    final = out / "final"
    if config.use_lora:
        trainer.save_model(str(out / "adapter"))
        if trainer.accelerator.is_main_process:
            save_merged(trainer.model, tokenizer, final, config.prompt_layout)
    else:
        trainer.save_model(str(final))
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(final))
            mark_prompt_layout(final, config.prompt_layout)
    if state is not None and state.moves:
        log.info(
            "adaptive curriculum: moved to N %s", ", ".join(f"{n} after {seen} rollouts" for seen, n in state.moves)
        )
    finish_run(config, out)
    return TrainResult(out, final, dict(result.metrics), heldout.history if heldout else [])
