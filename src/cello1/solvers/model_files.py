"""Model files for each engine: a ``.gguf`` file turned into the transformers folder that
``hf`` and vLLM load, once, cached by content.

llama.cpp reads ``.gguf`` files directly. transformers can de-quantise one
(``from_pretrained(folder, gguf_file=…)``, ~30 s for a 135M model on a CPU), but the
result stays flagged as quantised and ``save_pretrained`` refuses it; vLLM's CPU build
cannot load GGUF at all without a plugin. :func:`gguf_to_transformers` does the
conversion properly (the de-quantised weights saved as plain safetensors, with the
tokenizer and chat template) and :func:`transformers_folder` caches it under
``$CELLO1_CACHE`` (default ``~/.cache/cello1``), keyed by the file's content, so each
``.gguf`` is converted once per machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cello1.errors import InputError
from cello1.io import atomic_dir

CACHE_ENV = "CELLO1_CACHE"


def cache_root() -> Path:
    """Where converted models are kept: ``$CELLO1_CACHE`` or ``~/.cache/cello1``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cello1")


def content_key(path: str | os.PathLike, chars: int = 16) -> str:
    """The first ``chars`` hex digits of the file's sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:chars]


def gguf_to_transformers(
    gguf: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """De-quantise ``gguf`` into a transformers model folder ``out_dir`` (written atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise InputError(f"{gguf}: no such .gguf file; check the {{model}} path", params=["model"])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=getattr(torch, dtype)
    )
    # the weights are plain tensors now, but the model is still flagged as GGUF-quantised,
    # and save_pretrained refuses "quantized" models: drop the flags
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def transformers_folder(model: str) -> str:
    """``model`` itself, or for a ``.gguf`` file the cached transformers folder made from it."""
    path = Path(model).expanduser()
    if path.suffix.lower() != ".gguf":
        return model
    if not path.is_file():
        raise InputError(f"{model}: no such .gguf file; check the {{model}} path", params=["model"])
    folder = cache_root() / "gguf" / f"{path.stem}-{content_key(path)}"
    if not (folder / "config.json").exists():
        gguf_to_transformers(path, folder, overwrite=True)  # a leftover without config.json
    return str(folder)


__all__ = ["cache_root", "content_key", "gguf_to_transformers", "transformers_folder"]
