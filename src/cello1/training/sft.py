"""Cold-start SFT: TRL ``SFTTrainer`` + PEFT LoRA/DoRA on correct reasoning traces.

Paper defaults (docs/format.md §7): LoRA r 256, alpha 512, dropout 0.05 on all linear layers,
lr 5e-5, 1 epoch, max length 4096, loss on the assistant turn only (prompt-completion
data), adapter merged at the end into ``{output_dir}/merged`` — a standalone model
folder that ``cello1 solve --solver hf --model FOLDER`` loads.

Library use::

    from cello1.training import SFTStageConfig, train_sft
    result = train_sft(SFTStageConfig(model="…", train_file="sft.jsonl", output_dir="runs/sft"))

Multi-GPU: ``accelerate launch -m cello1.cli train sft --config …``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, mark_prompt_layout, warn_on_layout_mismatch
from cello1.training.config import SFTStageConfig, StageConfig, save_config
from cello1.training.data import load_puzzles, sft_dataset
from cello1.training.modeling import (
    check_prompt_lengths,
    load_model,
    load_tokenizer,
    resolve_resume,
    trainer_kwargs,
)

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl import SFTConfig

log = logging.getLogger("cello1.training")

DECODER_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainResult:
    """Where a training stage wrote its outputs, its final metrics and the held-out evaluations."""

    output_dir: Path
    model_dir: Path | None
    """The merged (or full fine-tuned) standalone model folder, if written."""
    metrics: dict[str, Any]
    heldout: list[dict[str, Any]]


def build_sft_args(config: SFTStageConfig) -> SFTConfig:
    """The ``trl.SFTConfig`` for a stage config (paper defaults + CPU/GPU auto settings)."""
    from trl import SFTConfig

    kwargs = trainer_kwargs(
        config,
        max_length=config.max_length,
        # prompt-completion data: the loss covers the completion (the assistant turn) only
        completion_only_loss=True,
    )
    return SFTConfig(**kwargs)


def build_peft_config(config: StageConfig) -> LoraConfig | None:
    """The ``peft.LoraConfig`` (LoRA or DoRA) of a stage config, or ``None`` without ``use_lora``."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    targets = config.lora_target_modules
    if config.lora_layers is not None and targets == "all-linear":
        # PEFT cannot combine "all-linear" with layers_to_transform: name the decoder's
        # linear layers explicitly (Llama/Qwen/Mistral naming)
        targets = list(DECODER_LINEAR_MODULES)
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        use_dora=config.use_dora,
        layers_to_transform=config.lora_layers,
        task_type="CAUSAL_LM",
    )


def _drop_overlong(tokenizer, dataset, max_length: int):
    """Examples whose prompt fits but prompt + trace does not are dropped (truncating
    them would cut off the answer the model should learn).
    """

    def full_length(example: dict) -> dict:
        text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        return {"_length": len(tokenizer(text, add_special_tokens=False)["input_ids"])}

    with_len = dataset.map(full_length)
    keep = [i for i, n in enumerate(with_len["_length"]) if n <= max_length]
    if len(keep) < len(dataset):
        log.warning(
            "dropping %d of %d SFT examples longer than max_length=%d tokens (prompt + trace)",
            len(dataset) - len(keep),
            len(dataset),
            max_length,
        )
    if not keep:
        raise InputError(f"every SFT example is longer than max_length={max_length} tokens; raise max_length")
    return dataset.select(keep)


def train_sft(config: SFTStageConfig, model=None, tokenizer=None, callbacks: list | None = None) -> TrainResult:
    """Run SFT; returns where the outputs are. ``model``/``tokenizer`` may be passed in
    (e.g. an already-loaded model in a notebook); otherwise ``config.model`` is loaded.
    """
    from cello1.training.callbacks import stage_callbacks

    config.check()  # cheap setting errors first, before heavy imports and model loading
    from trl import SFTTrainer

    warn_on_layout_mismatch(config.model, config.prompt_layout)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"model {config.model} has no chat template; use an instruct/chat model")
    train_puzzles = load_puzzles(config.train_file, config.max_train_puzzles)
    dataset = sft_dataset(train_puzzles, config.prompt_layout)  # errors early on missing traces
    check_prompt_lengths(tokenizer, train_puzzles, config.prompt_layout, config.max_length, "max_length")
    dataset = _drop_overlong(tokenizer, dataset, config.max_length)
    eval_puzzles = load_puzzles(config.eval_file, config.eval_max_puzzles) if config.eval_file else []

    args = build_sft_args(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    resume = resolve_resume(config.resume_from_checkpoint, out)

    model = model if model is not None else load_model(config.model, "bfloat16" if args.bf16 else None)
    all_callbacks, heldout = stage_callbacks(config, tokenizer, eval_puzzles, out, callbacks)
    trainer = (shared_prefix_trainer(SFTTrainer) if config.share_prompt_prefix else SFTTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=build_peft_config(config),
        callbacks=all_callbacks,
    )
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out / "final"))  # adapter (LoRA) or full weights
    model_dir = None
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out / "final"))
        if config.merge or not config.use_lora:
            model_dir = Path(config.merged_dir or out / "merged")
            save_merged(trainer.model, tokenizer, model_dir, config.prompt_layout)
    finish_run(config, out)
    return TrainResult(out, model_dir, dict(result.metrics), heldout.history if heldout else [])


def finish_run(config: StageConfig, output_dir: Path) -> Path | None:
    """End-of-run extras: the curves PNG when ``config.plot`` is on (``None`` otherwise)."""
    if not config.plot:
        return None
    from cello1.training.plots import plot_metrics

    try:
        path = plot_metrics(output_dir)
    except InputError as err:  # e.g. nothing logged: the trained model is saved, so warn, don't fail
        log.warning("no training curves drawn: %s", err)
        return None
    log.info("training curves: %s", path)
    return path


def shared_prefix_trainer(base: type) -> type:
    """``base`` (TRL's ``SFTTrainer``) whose loss runs the batch's shared prompt prefix once
    (:func:`cello1.training.prefix_sharing.shared_prefix_forward`; exact).
    """
    from cello1.training.prefix_sharing import shared_prefix_forward

    class SharedPrefixSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None) -> Any:
            if self.args.gradient_checkpointing:  # no KV cache to share under checkpointing
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            with shared_prefix_forward(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    SharedPrefixSFTTrainer.__name__ = SharedPrefixSFTTrainer.__qualname__ = "SharedPrefixSFTTrainer"
    return SharedPrefixSFTTrainer


def save_merged(model, tokenizer, directory: str | Path, prompt_layout: str = DEFAULT_PROMPT_LAYOUT) -> Path:
    """Merge a LoRA/DoRA adapter into the base weights and save a standalone folder that
    records the prompt layout it was trained with.
    """
    from cello1.training.modeling import strip_gguf_tag

    directory = Path(directory)
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    strip_gguf_tag(merged)
    merged.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    mark_prompt_layout(directory, prompt_layout)
    return directory
