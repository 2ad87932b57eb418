"""GRPO with the batch-level reward: TRL ``GRPOTrainer`` + ``cello1.scoring.trl_reward``.

Paper defaults (docs/format.md §7): 5 rollouts per prompt, lr 1e-6, KL coefficient 0.001,
prompt/response limits 3,072/3,000 tokens, entropy coefficient 0. vLLM rollouts
when vLLM is installed and a GPU is present (``use_vllm: auto``). The prompt mode is
the one used at inference. Per step TRL logs the reward and — through zero-weight
metric "rewards" — cell accuracy, batch accuracy and format rate; a callback
evaluates on the held-out split every ``eval_steps`` with ``cello1.scoring.evaluate``.
Runs resume from the last ``checkpoint-*`` in ``output_dir`` (``resume_from_checkpoint: auto``).

Multi-GPU: ``accelerate launch -m cello1.cli train grpo --config …``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cello1.errors import InputError
from cello1.puzzle import mark_prompt_layout, warn_on_layout_mismatch
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
from cello1.training.sft import TrainResult, build_peft_config, save_merged

if TYPE_CHECKING:
    from trl import GRPOConfig

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


def reward_function(variant: str = "paper") -> Callable[..., list[float]]:
    """The batch-level reward as a TRL reward callable (gold in the ``answer`` column);
    ``paper`` is ``cello1.scoring.trl_reward``.
    """
    from cello1.scoring import make_reward, trl_reward

    return trl_reward if variant == "paper" else make_reward(variant)


def build_grpo_args(config: GRPOStageConfig) -> GRPOConfig:
    """The ``trl.GRPOConfig`` for a stage config (paper defaults + CPU/GPU auto settings)."""
    from trl import GRPOConfig

    kwargs = trainer_kwargs(
        config,
        generation_batch_size=config.generation_batch_size,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        beta=config.beta,
        entropy_coef=config.entropy_coef,
        temperature=config.temperature,
        # reward first, then cell accuracy / batch accuracy / format rate for logging only
        reward_weights=[1.0, 0.0, 0.0, 0.0],
        use_vllm=resolve_use_vllm(config.use_vllm),
        vllm_mode=config.vllm_mode,
        vllm_tensor_parallel_size=config.vllm_tensor_parallel_size,
    )
    return GRPOConfig(**kwargs)


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
    from cello1.training.callbacks import metric_reward_functions, stage_callbacks

    config.check()  # cheap setting errors first, before heavy imports and model loading
    from trl import GRPOTrainer

    warn_on_layout_mismatch(config.model, config.prompt_layout)
    tokenizer = load_tokenizer(config.model)
    train_puzzles = load_puzzles(config.train_file, config.max_train_puzzles)
    dataset = grpo_dataset(train_puzzles, config.prompt_layout)
    check_prompt_lengths(tokenizer, train_puzzles, config.prompt_layout, config.max_prompt_length, "max_prompt_length")
    eval_puzzles = load_puzzles(config.eval_file, config.eval_max_puzzles) if config.eval_file else []
    reward = reward_function(config.reward_variant)

    args = build_grpo_args(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    resume = resolve_resume(config.resume_from_checkpoint, out)

    model = load_model(_policy_model_path(config), "bfloat16" if args.bf16 else None)
    all_callbacks, heldout = stage_callbacks(config, tokenizer, eval_puzzles, out, callbacks)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward, *metric_reward_functions()],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=build_peft_config(config),
        callbacks=all_callbacks,
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
    return TrainResult(out, final, dict(result.metrics), heldout.history if heldout else [])
