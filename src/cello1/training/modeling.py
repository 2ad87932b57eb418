"""Loading models/tokenizers for training, precision/device choice, and pre-flight checks.

A model is named by a HF hub id, a local folder, or a ``.gguf`` file (transformers
dequantises GGUF weights to float32; we then drop the GGUF quantisation tag so that
checkpoints and merged models save as ordinary safetensors folders).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cello1.errors import InputError
from cello1.puzzle import Puzzle

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("cello1.training")


def split_model_spec(model: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``dir/file.gguf`` → (``dir``, {"gguf_file": "file.gguf"}); anything else unchanged."""
    text = str(model)
    if text.lower().endswith(".gguf"):
        path = Path(text)
        if not path.exists():
            raise InputError(f"model {text}: no such GGUF file; check the path")
        return str(path.parent), {"gguf_file": path.name}
    return text, {}


def load_tokenizer(model: str | os.PathLike, require_chat_template: bool = True) -> PreTrainedTokenizerBase:
    """Load a model's tokenizer (a GGUF file path works too), with the EOS token as pad
    token when it has none; raises without a chat template unless ``require_chat_template=False``.
    """
    from transformers import AutoTokenizer

    name, extra = split_model_spec(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **extra)
    except OSError as exc:
        raise InputError(f"model {model}: cannot load its tokenizer ({str(exc).splitlines()[0]})") from None
    if require_chat_template and not getattr(tokenizer, "chat_template", None):
        raise InputError(
            f"model {model} has no chat template; use an instruct/chat model "
            "(e.g. Qwen/Qwen2.5-7B-Instruct) or add a chat_template to its tokenizer_config.json"
        )
    if tokenizer.pad_token is None:
        # Generation and batching need a pad token; the EOS token is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str | os.PathLike, dtype: str | None = None) -> PreTrainedModel:
    """Load a causal LM in ``dtype`` (a ``torch`` dtype name); default float32 on CPU or for
    GGUF files, else the checkpoint's own dtype.
    """
    import torch
    from transformers import AutoModelForCausalLM

    name, extra = split_model_spec(model)
    torch_dtype = (
        getattr(torch, dtype) if dtype else (torch.float32 if extra or not torch.cuda.is_available() else "auto")
    )
    try:
        loaded = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, **extra)
    except OSError as exc:
        raise InputError(f"model {model}: cannot load it ({str(exc).splitlines()[0]})") from None
    strip_gguf_tag(loaded)
    return loaded


def strip_gguf_tag(model) -> None:
    """GGUF-loaded weights are already dequantised; forget the tag so saves are plain."""
    config = model.config
    qc = getattr(config, "quantization_config", None)
    qc_method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(qc_method).lower().endswith("gguf"):
        del config.quantization_config
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer = None
        model.is_quantized = False


def convert_to_folder(model: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Save a (e.g. GGUF) model and its tokenizer as a plain transformers folder."""
    out = Path(out_dir)
    tokenizer = load_tokenizer(model)
    loaded = load_model(model)
    out.mkdir(parents=True, exist_ok=True)
    loaded.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def precision_settings(bf16: bool | None, use_cpu: bool | None) -> dict[str, bool]:
    """CPU out of the box: no GPU → ``use_cpu`` on and bf16 off; GPU → bf16 if supported."""
    import torch

    gpu = torch.cuda.is_available()
    if use_cpu is None:
        use_cpu = not gpu
    if bf16 is None:
        bf16 = gpu and not use_cpu and torch.cuda.is_bf16_supported()
    if bf16 and (use_cpu or not gpu):
        log.warning("bf16 requested without a GPU; training in float32 on the CPU instead")
        bf16 = False
    return {"bf16": bool(bf16), "use_cpu": bool(use_cpu)}


def prompt_token_lengths(tokenizer, puzzles: Sequence[Puzzle], prompt_layout: str) -> list[int]:
    """Token count of each puzzle's chat-formatted prompt (with the generation prompt)."""
    texts = [
        tokenizer.apply_chat_template(p.messages(prompt_layout), tokenize=False, add_generation_prompt=True)
        for p in puzzles
    ]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_prompt_lengths(
    tokenizer, puzzles: Sequence[Puzzle], prompt_layout: str, limit: int, setting: str
) -> list[int]:
    """Raise before training if any prompt exceeds ``limit`` tokens."""
    lengths = prompt_token_lengths(tokenizer, puzzles, prompt_layout)
    too_long = [(n, p.id) for n, p in zip(lengths, puzzles, strict=True) if n > limit]
    if too_long:
        longest, pid = max(too_long)
        raise InputError(
            f"{len(too_long)} of {len(puzzles)} prompts are longer than {setting}={limit} tokens "
            f"(longest: {longest} tokens, puzzle {pid}); raise {setting} or build puzzles with fewer "
            "genes per cell ({top_k}) or smaller N",
            params=["top_k"],
        )
    return lengths


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-*`` folder in ``output_dir``, or ``None``."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def resolve_resume(setting: str | bool | None, output_dir: str | os.PathLike) -> str | bool | None:
    """``auto`` → the last checkpoint in ``output_dir`` if any; a path must exist."""
    if setting in (None, False, "", "no", "false"):
        return None
    if setting in ("auto", True, "true", "last"):
        found = last_checkpoint(output_dir)
        if setting in (True, "true", "last") and found is None:
            raise InputError(f"resume requested but {output_dir} holds no checkpoint-* folder")
        return found
    if not Path(str(setting)).is_dir():
        raise InputError(f"resume_from_checkpoint {setting}: no such checkpoint folder")
    return str(setting)


def trainer_kwargs(config: Any, **stage_kwargs: Any) -> dict[str, Any]:
    """Keyword arguments shared by the TRL configs of every stage, then the stage's own
    ones, then the user's pass-through ``trl_args`` (which win).
    """
    kwargs: dict[str, Any] = {
        "output_dir": config.output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "logging_steps": config.logging_steps,
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "report_to": config.report_to,
        "seed": config.seed,
        **stage_kwargs,
        **precision_settings(config.bf16, config.use_cpu),
    }
    # always explicit: TRL's SFTConfig/GRPOConfig default to gradient_checkpointing=True, which
    # recomputes every forward in the backward pass (~30 % slower; only worth it for memory)
    kwargs["gradient_checkpointing"] = bool(config.gradient_checkpointing)
    kwargs.update(config.trl_args)
    return kwargs
