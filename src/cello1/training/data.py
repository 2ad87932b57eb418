"""Puzzles → Hugging Face ``datasets.Dataset`` in TRL's conversational forms.

* SFT: prompt-completion form — ``prompt`` (system/user messages, as at inference)
  and ``completion`` (one assistant message ``<think>…</think>\\n<answer>…</answer>``).
  TRL computes the loss on the completion only for this form, i.e. on the assistant
  turn only, with any chat template (no ``{% generation %}`` markers needed).
* GRPO: ``prompt`` (messages) plus ``answer`` (gold ``"A | B | C"``, read by
  ``cello1.scoring.trl_reward``), ``id`` and ``n``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cello1.errors import InputError
from cello1.io import read_puzzles
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle

if TYPE_CHECKING:
    from datasets import Dataset


def load_puzzles(source: str | os.PathLike | Sequence[Puzzle], limit: int | None = None) -> list[Puzzle]:
    """Puzzles from a puzzle file or a sequence, the first ``limit`` if given; raises when there are none."""
    puzzles = list(source) if not isinstance(source, (str, os.PathLike)) else read_puzzles(source)
    if not puzzles:
        raise InputError(f"{source if isinstance(source, (str, Path)) else 'input'}: no puzzles")
    return puzzles[:limit] if limit else puzzles


def sft_records(puzzles: Sequence[Puzzle], prompt_layout: str = DEFAULT_PROMPT_LAYOUT) -> list[dict]:
    """Prompt-completion records; every puzzle needs a gold answer and a reasoning trace."""
    missing = [p.id for p in puzzles if p.answer is None or p.reasoning is None]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(puzzles)} puzzles have no reasoning trace (first: {missing[0]}); "
            "SFT needs records whose assistant_msg is '<think>…</think>\\n<answer>…</answer>' — "
            "make them with `cello1 distill` or use the official reasoning split"
        )
    return [
        {
            "prompt": p.messages(prompt_layout),
            "completion": [{"role": "assistant", "content": p.assistant_msg}],
            "id": p.id,
            "n": p.n,
        }
        for p in puzzles
    ]


def grpo_records(puzzles: Sequence[Puzzle], prompt_layout: str = DEFAULT_PROMPT_LAYOUT) -> list[dict]:
    """Prompt-only records with the gold answer in the ``answer`` column."""
    missing = [p.id for p in puzzles if p.answer is None]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(puzzles)} puzzles have no gold answer (first: {missing[0]}); "
            "GRPO needs labelled puzzles (assistant_msg = 'A | B | C')"
        )
    return [{"prompt": p.messages(prompt_layout), "answer": p.answer_str, "id": p.id, "n": p.n} for p in puzzles]


def sft_dataset(puzzles: Sequence[Puzzle], prompt_layout: str = DEFAULT_PROMPT_LAYOUT) -> Dataset:
    """A ``datasets.Dataset`` of :func:`sft_records`."""
    from datasets import Dataset

    return Dataset.from_list(sft_records(puzzles, prompt_layout))


def grpo_dataset(puzzles: Sequence[Puzzle], prompt_layout: str = DEFAULT_PROMPT_LAYOUT) -> Dataset:
    """A ``datasets.Dataset`` of :func:`grpo_records`."""
    from datasets import Dataset

    return Dataset.from_list(grpo_records(puzzles, prompt_layout))
