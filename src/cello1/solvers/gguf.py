"""``gguf``: llama-cpp-python on CPU (optional extra: ``pip install 'cello1[gguf]'``).

    solver = GGUFSolver("SmolLM2-135M-Instruct.Q4_1.gguf", max_new_tokens=512)

The chat template comes from the GGUF metadata. One puzzle at a time (llama.cpp keeps
its own threads busy); ``n`` samples are ``n`` calls with consecutive seeds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Completion, Solver
from cello1.solvers.hf import DEFAULT_MAX_NEW_TOKENS
from cello1.solvers.llm_common import import_extra, reject_unsupported, resolve_prompt_layout, resolve_temperature


class GGUFSolver(Solver):
    """Chat completions from a local GGUF model with llama-cpp-python, one puzzle at a time."""

    name = "gguf"

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int = 0,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        batch_size: int = 1,
        **unsupported: Any,
    ) -> None:
        if unsupported.pop("constrained", False):
            raise InputError(
                "{constrained} is implemented for {solver}=hf; with gguf use {repair}",
                params=["constrained", "solver", "repair"],
            )
        reject_unsupported(self.name, unsupported)
        llama_cpp = import_extra("gguf")
        if not model or not Path(model).is_file():
            raise InputError(f"the 'gguf' solver needs {{model}}=PATH.gguf (got {model!r})", params=["model"])
        self.model, self.prompt_layout = model, resolve_prompt_layout(prompt_layout, model)
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.temperature = resolve_temperature(temperature, self.n)
        self.top_p = 1.0 if top_p is None else top_p
        self.max_new_tokens = int(max_new_tokens)
        self.llm = llama_cpp.Llama(
            model_path=model, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), seed=seed, verbose=False
        )

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """One chat completion; sample ``s`` uses seed ``seed + s``."""
        start = time.perf_counter()
        response = self.llm.create_chat_completion(
            messages=puzzle.messages(self.prompt_layout),
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed + sample,
        )
        usage = response.get("usage") or {}
        return Completion(
            text=response["choices"][0]["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            info={"seconds": time.perf_counter() - start},
        )

    def close(self) -> None:
        """Drop the model."""
        self.llm = None
