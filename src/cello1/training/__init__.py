"""Training Cell-o1 models: distillation, SFT (LoRA/DoRA), GRPO, and export to verl.

Heavy dependencies (torch, transformers, TRL, PEFT) load only when a trainer runs::

    from cello1.training import SFTStageConfig, train_sft, GRPOStageConfig, train_grpo
    sft = train_sft(SFTStageConfig(model="…", train_file="sft.jsonl", output_dir="runs/sft"))
    train_grpo(GRPOStageConfig(model=str(sft.model_dir), train_file="train.jsonl", output_dir="runs/grpo"))
"""

from __future__ import annotations

from cello1._lazy import lazy_getattr

_LAZY = {
    "StageConfig": "cello1.training.config",
    "SFTStageConfig": "cello1.training.config",
    "GRPOStageConfig": "cello1.training.config",
    "load_config": "cello1.training.config",
    "save_config": "cello1.training.config",
    "train_sft": "cello1.training.sft",
    "save_merged": "cello1.training.sft",
    "train_grpo": "cello1.training.grpo",
    "distill": "cello1.training.distill",
    "export_verl": "cello1.training.verl",
    "evaluate_model": "cello1.training.callbacks",
    "sft_dataset": "cello1.training.data",
    "grpo_dataset": "cello1.training.data",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
