"""Stage configs (TRL-style dataclasses) with YAML/TOML loading and ``key=value`` overrides.

One dataclass per stage holds the paper's defaults (``docs/format.md`` §7, written once in
:mod:`cello1.training.recipe`). A run is described by a
YAML or TOML file plus command-line overrides; the resolved config is saved next to
the run's outputs (``cello1_sft.yaml`` / ``cello1_grpo.yaml``) so every run can be
repeated exactly. Keys that are not ours but are valid ``trl.SFTConfig`` /
``trl.GRPOConfig`` arguments are passed through to TRL unchanged (``trl_args``).

This module imports no torch/TRL at import time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import importlib.util
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cello1.errors import InputError
from cello1.hub import is_hub_reference
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, check_prompt_layout
from cello1.training import recipe


@dataclass
class StageConfig:
    """Settings shared by every training stage."""

    # data and model
    model: str = recipe.BASE_MODEL
    """HF hub id, local folder, or a ``.gguf`` file (dequantised to float32 on load)."""
    train_file: str | None = None
    """Puzzles: any file ``cello1.io.read_puzzles`` reads (builder output or official records)."""
    eval_file: str | None = None
    """Held-out puzzles for periodic evaluation (same metrics as ``cello1 eval``)."""
    output_dir: str = "runs/stage"
    prompt_layout: str = DEFAULT_PROMPT_LAYOUT
    """``sft`` | ``rl`` | ``test``: the released code's three prompt layouts (see
    :meth:`cello1.Puzzle.messages`); use the same at inference (``cello1 solve --prompt-layout``)."""
    max_train_puzzles: int | None = None
    seed: int = 0

    # optimisation (names as in transformers.TrainingArguments)
    learning_rate: float = 5e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    warmup_steps: float = 0.0
    """Warm-up: an integer number of steps, or a float in [0, 1) = ratio of all steps."""
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    bf16: bool | None = None
    """``None`` = auto: on when a GPU with bf16 support is present."""
    use_cpu: bool | None = None
    """``None`` = auto: on when no GPU is present."""

    # bookkeeping
    logging_steps: int = 1
    save_steps: int = 500
    save_total_limit: int | None = 2
    report_to: str = "none"
    """Where TRL also sends the per-step metrics: ``none``, ``tensorboard`` (``pip install
    tensorboard``; logs under ``{output_dir}/runs``), ``wandb``, ``mlflow`` … (any transformers
    integration, comma-separated). ``metrics.jsonl`` is written either way."""
    plot: bool = False
    """Draw the curves of ``metrics.jsonl`` into ``{output_dir}/training_curves.png`` at the end
    (reward, reward std, zero-variance groups, accuracy, format rate, KL, length, loss)."""
    resume_from_checkpoint: str | bool | None = "auto"
    """``auto`` resumes from the last ``checkpoint-*`` in ``output_dir`` when there is one."""

    # periodic held-out evaluation (generation + cello1.scoring.evaluate)
    eval_steps: int = 0
    """Evaluate on ``eval_file`` every this many optimiser steps (0 = only at the end)."""
    eval_max_puzzles: int | None = 64
    eval_max_new_tokens: int = 1024
    eval_batch_size: int = 8

    # LoRA/DoRA (the paper's: all linear layers)
    use_lora: bool = False
    lora_r: int = recipe.SFT_LORA_R
    lora_alpha: int = recipe.SFT_LORA_ALPHA
    lora_dropout: float = recipe.SFT_LORA_DROPOUT
    lora_target_modules: str | list[str] = "all-linear"
    lora_layers: list[int] | None = None
    """Only these decoder layers get adapters (``layers_to_transform``); default all."""
    use_dora: bool = False

    trl_args: dict[str, Any] = field(default_factory=dict)
    """Any other ``trl.SFTConfig``/``trl.GRPOConfig`` argument, passed through unchanged."""

    stage: typing.ClassVar[str] = "stage"

    def check(self) -> None:
        """Cheap checks that need no model (the trainers add model-dependent ones)."""
        check_prompt_layout(self.prompt_layout)
        if not self.train_file:
            raise InputError(
                f"{self.stage}: no training puzzles; pass {{train}}=FILE or set train_file in the config",
                params=["train"],
            )
        for name in ("train_file", "eval_file"):
            value = getattr(self, name)
            if value and not is_hub_reference(value) and not Path(value).exists():
                raise InputError(f"{name} {value}: no such file or folder; check the path")
        if self.use_dora and not self.use_lora:
            raise InputError("use_dora needs use_lora=true")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise InputError("per_device_train_batch_size and gradient_accumulation_steps must be >= 1")


@dataclass
class SFTStageConfig(StageConfig):
    """Cold-start SFT on correct reasoning traces (paper: LoRA r 256, alpha 512, …)."""

    output_dir: str = "runs/sft"
    learning_rate: float = recipe.SFT_LEARNING_RATE
    num_train_epochs: float = recipe.SFT_EPOCHS
    per_device_train_batch_size: int = recipe.SFT_BATCH_SIZE
    gradient_accumulation_steps: int = recipe.SFT_GRADIENT_ACCUMULATION
    max_length: int = recipe.SFT_MAX_LENGTH
    """Longest prompt + trace in tokens; a prompt alone longer than this is an error."""
    use_lora: bool = True
    merge: bool = True
    """Merge the adapter into a standalone model folder ``{output_dir}/merged`` at the end."""
    merged_dir: str | None = None
    """Where the merged model goes (default ``{output_dir}/merged``)."""
    share_prompt_prefix: bool = False
    """Run the prompt prefix every row of a batch shares (chat template + system message) once,
    with gradient (:mod:`cello1.training.prefix_sharing`); exact, and faster on a CPU."""

    stage: typing.ClassVar[str] = "sft"

    def check(self) -> None:
        """The base checks plus a minimal ``max_length``."""
        super().check()
        if self.max_length < 16:
            raise InputError(f"max_length {self.max_length} is too small")


@dataclass
class GRPOStageConfig(StageConfig):
    """GRPO with the batch-level reward (the paper's rollouts, learning rate, KL, lengths)."""

    output_dir: str = "runs/grpo"
    learning_rate: float = recipe.GRPO_LEARNING_RATE
    num_train_epochs: float = float(recipe.GRPO_EPOCHS)
    # 8 GPUs x 8 completions x 5 accumulation = 320 completions = 64 prompts x 5 rollouts
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 5
    generation_batch_size: int | None = None
    """Completions generated per generation round (default: per-device batch x world x accumulation)."""
    num_generations: int = recipe.GRPO_ROLLOUTS
    beta: float = recipe.GRPO_KL_COEF
    max_prompt_length: int = recipe.GRPO_MAX_PROMPT_LENGTH
    max_completion_length: int = recipe.GRPO_MAX_RESPONSE_LENGTH
    entropy_coef: float = recipe.GRPO_ENTROPY_COEF
    temperature: float = 1.0
    reward_variant: str = "paper"
    """``paper`` ((cell acc + exact)/2, −1 on bad format; the default), ``exact_match`` (the
    released code's commented-out alternative), ``cell_accuracy`` (dense per-cell), ``shaped``
    (format shaping for cold starts), ``ontology`` (Cell Ontology parent/child partial credit):
    any variant of ``cello1.scoring.VARIANTS`` (docs/training.md, "Rewards")."""
    reward_options: dict[str, float] = field(default_factory=dict)
    """The variant's credits, e.g. ``{coarse_credit: 0.25, fine_credit: 0.5}`` for ``ontology``
    (``cello1.scoring.reward.VARIANT_OPTIONS`` lists them with their defaults)."""
    constrained: bool = False
    """Constrained rollouts: every rollout is a strict-format permutation of its puzzle's
    candidates (:mod:`cello1.training.constrained_grpo`; transformers generation or vLLM colocate)."""
    mask_forced_tokens: bool = True
    """With ``constrained``: leave the tokens the constraint forced out of the loss (their
    probability under the constrained sampler is 1, so their exact gradient is 0)."""
    share_prompt_prefill: bool = False
    """Compute each distinct prompt once in rollouts and in the training forward/backward (TRL
    repeats it ``num_generations`` times); exact, and much faster on a CPU."""
    curriculum: str = "none"
    """``none``, ``stage`` (puzzles visited by N, smallest first) or ``adaptive`` (the smallest N
    until its running reward reaches ``curriculum_threshold``, then the next N)."""
    curriculum_threshold: float = 0.5
    """``adaptive``: mean reward over the last ``curriculum_window`` rollouts that moves training to the next N."""
    curriculum_window: int = 32
    """``adaptive``: how many of the latest rollouts at the current N the running reward covers."""
    use_vllm: bool | str = "auto"
    """``auto``: vLLM rollouts when vLLM is installed and a GPU is present."""
    vllm_mode: str = "colocate"
    vllm_tensor_parallel_size: int = 1
    save_steps: int = 100

    stage: typing.ClassVar[str] = "grpo"

    def check(self) -> None:
        """The base checks plus GRPO's: ``num_generations`` ≥ 2, a generation batch divisible
        by it, a valid ``generation_batch_size`` and a known ``reward_variant``.
        """
        super().check()
        if self.num_generations < 2:
            raise InputError(f"num_generations must be >= 2 for GRPO (the paper uses 5), not {self.num_generations}")
        world = world_size()
        generation_batch = self.generation_batch_size or (
            self.per_device_train_batch_size * world * self.gradient_accumulation_steps
        )
        if generation_batch % self.num_generations:
            raise InputError(
                f"the generation batch ({generation_batch} completions = per_device_train_batch_size "
                f"{self.per_device_train_batch_size} x {world} process(es) x gradient_accumulation_steps "
                f"{self.gradient_accumulation_steps}) is not divisible by num_generations {self.num_generations}; "
                "make per_device_train_batch_size (or generation_batch_size) a multiple of num_generations"
            )
        if self.generation_batch_size and self.generation_batch_size % (self.per_device_train_batch_size * world):
            raise InputError(
                f"generation_batch_size {self.generation_batch_size} must be a multiple of "
                f"per_device_train_batch_size x processes ({self.per_device_train_batch_size * world})"
            )
        from cello1.scoring import VARIANTS
        from cello1.scoring.reward import check_options
        from cello1.training.curriculum import CurriculumState, check_curriculum

        if self.reward_variant not in VARIANTS:
            raise InputError(f"reward_variant must be one of {', '.join(VARIANTS)}, not {self.reward_variant!r}")
        check_options(self.reward_variant, self.reward_options)
        check_curriculum(self.curriculum)
        CurriculumState([], self.curriculum_threshold, self.curriculum_window)  # checks the window
        vllm_asked = str(self.use_vllm).lower() not in ("false", "no", "0", "off", "auto")
        if self.constrained and vllm_asked and (self.vllm_mode != "colocate" or self.vllm_tensor_parallel_size != 1):
            raise InputError(
                "{constrained} rollouts with vLLM need vllm_mode=colocate and vllm_tensor_parallel_size=1 "
                "(each rollout gets its own structured-output regex); or set use_vllm=false",
                params=["constrained"],
            )


STAGES: dict[str, type[StageConfig]] = {"sft": SFTStageConfig, "grpo": GRPOStageConfig}


# ---- environment ------------------------------------------------------------------------


def world_size() -> int:
    """Number of training processes (``WORLD_SIZE``, 1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_gpu() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def vllm_available() -> bool:
    """Whether vLLM is installed."""
    return importlib.util.find_spec("vllm") is not None


# ---- loading / saving -------------------------------------------------------------------


def load_config(
    stage: str | type[StageConfig],
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> StageConfig:
    """Build a stage config: defaults ← file (YAML/TOML) ← overrides.

    ``path`` is a ``.yaml``/``.yml``/``.toml`` file or the name of a config shipped with
    the package (:data:`NAMED_CONFIGS`: ``paper``, ``cpu``, ``gpu``; see :func:`config_file`).
    ``overrides`` is a dict or a list of ``key=value`` strings (values parsed as YAML,
    then coerced to the field's type). Unknown keys that TRL accepts go to ``trl_args``;
    anything else is an error naming the valid keys.
    """
    cls = STAGES[stage] if isinstance(stage, str) else stage
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_config_file(config_file(path, cls.stage)))
    if overrides:
        values.update(parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return from_dict(cls, values)


NAMED_CONFIGS: dict[str, str] = {
    "paper": "the paper's recipe at its scale (Qwen2.5-7B-Instruct, 8 GPUs)",
    "cpu": "SmolLM2-135M-Instruct with LoRA on a laptop-class CPU, budgets sized to distilled traces",
    "gpu": "Qwen2.5-7B-Instruct with LoRA, sized for one 80 GB GPU (bf16, vLLM rollouts when installed)",
}
"""Configs shipped inside the package (``cello1/resources/configs/{name}-{stage}.yaml``)."""


def named_config_path(name: str, stage: str) -> Path:
    """The packaged ``{name}-{stage}.yaml`` (``name`` one of :data:`NAMED_CONFIGS`)."""
    if name not in NAMED_CONFIGS:
        raise InputError(
            f"{{config}} {name!r}: no such file, and not a packaged config ({', '.join(NAMED_CONFIGS)}); "
            "give one of those names or the path of a .yaml/.toml file",
            params=["config"],
        )
    return Path(str(importlib.resources.files("cello1") / "resources" / "configs" / f"{name}-{stage}.yaml"))


def config_file(config: str | os.PathLike, stage: str) -> Path:
    """``config`` as a file: an existing path, or a bare name (no folder, no suffix) of a
    packaged config (``paper`` | ``cpu`` | ``gpu``) for ``stage``.
    """
    path = Path(config)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    return named_config_path(str(config), stage)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict, values parsed as YAML (kept as text when that fails; empty → ``None``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} is not key=value (e.g. {{set_}} learning_rate=1e-5)", params=["set_"])
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def from_dict(cls: type[StageConfig], values: dict[str, Any]) -> StageConfig:
    """A ``cls`` instance from a flat dict: own fields coerced to their types, unknown keys that
    TRL's config accepts moved to ``trl_args``; any other key raises.
    """
    hints = typing.get_type_hints(cls)
    ours = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    trl_args = dict(values.get("trl_args") or {})
    for key, value in values.items():
        if key == "trl_args":
            continue
        if key in ours:
            kwargs[key] = _coerce(key, value, hints[key])
        elif key in _trl_fields(cls.stage):
            trl_args[key] = value
        else:
            raise InputError(
                f"unknown {cls.stage} setting {key!r}; valid keys: {', '.join(sorted(ours))} "
                f"(or any trl {'SFTConfig' if cls.stage == 'sft' else 'GRPOConfig'} argument)"
            )
    kwargs["trl_args"] = trl_args
    return cls(**kwargs)


def save_config(config: StageConfig, directory: str | os.PathLike) -> Path:
    """Write the resolved config as ``cello1_{stage}.yaml`` into ``directory``."""
    from cello1.io import atomic_path

    path = Path(directory) / f"cello1_{config.stage}.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(
            f"# cello1 train {config.stage}: resolved settings of this run\n"
            + yaml.safe_dump(dataclasses.asdict(config), sort_keys=False),
            encoding="utf-8",
        )
    return path


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"config {path}: no such file; check the path")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise InputError(f"config {path}: use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"config {path}: cannot parse ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path}: expected a mapping of settings at the top level")
    return data


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Coerce YAML/CLI values to the field type (YAML reads ``1e-6`` as a string)."""
    if value is None:
        return None
    options = typing.get_args(hint) or (hint,)
    if isinstance(value, str):
        if bool in options and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        for kind in (int, float):
            if kind in options and str not in options:
                try:
                    return kind(value) if kind is float else int(float(value))
                except ValueError:
                    raise InputError(f"{key}: {value!r} is not a number") from None
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and float in options and int not in options:
        return float(value)
    if isinstance(value, float) and int in options and float not in options:
        if not value.is_integer():
            raise InputError(f"{key}: expected an integer, got {value}")
        return int(value)
    return value


@functools.cache
def _trl_fields(stage: str) -> frozenset[str]:
    """Argument names of the matching TRL config (empty if TRL is not installed)."""
    try:
        import trl
    except ImportError:  # pragma: no cover - train extra missing
        return frozenset()
    cls = trl.SFTConfig if stage == "sft" else trl.GRPOConfig
    return frozenset(f.name for f in dataclasses.fields(cls))
