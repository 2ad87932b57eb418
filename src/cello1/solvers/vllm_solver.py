"""``vllm``: the offline vLLM engine (optional extra: ``pip install 'cello1[vllm]'``).

vLLM batches and schedules all puzzles itself, so the runner hands it large batches.
"""

from __future__ import annotations

from typing import Any

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Completion, Solver
from cello1.solvers.hf import DEFAULT_MAX_NEW_TOKENS
from cello1.solvers.llm_common import import_extra, reject_unsupported, resolve_prompt_layout, resolve_temperature


class VLLMSolver(Solver):
    """Chat completions from the offline vLLM engine, which batches and schedules the puzzles itself."""

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
        top_p: float | None = None,
        batch_size: int = 256,
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported.pop("constrained", False):
            raise InputError(
                "{constrained} is implemented for {solver}=hf; with vllm use {repair}",
                params=["constrained", "solver", "repair"],
            )
        reject_unsupported(self.name, unsupported)
        vllm = import_extra("vllm")  # before any other work: a clear message if missing
        if not model:
            raise InputError("the 'vllm' solver needs {model} (a hub id or a local folder)", params=["model"])
        self.model, self.prompt_layout = model, resolve_prompt_layout(prompt_layout, model)
        self.n, self.batch_size = int(n), int(batch_size)
        temperature = resolve_temperature(temperature, self.n)
        self.sampling = vllm.SamplingParams(
            n=self.n,
            temperature=temperature,
            top_p=1.0 if top_p is None else top_p,
            max_tokens=int(max_new_tokens),
            seed=seed,
        )
        engine_args: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
        }
        if max_model_len:
            engine_args["max_model_len"] = max_model_len
        if dtype:
            engine_args["dtype"] = dtype
        self.llm = vllm.LLM(**engine_args)

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """``n`` completions per puzzle from one ``LLM.chat`` call, with token counts."""
        conversations = [p.messages(self.prompt_layout) for p in puzzles]
        outputs = self.llm.chat(conversations, self.sampling, use_tqdm=False)
        results = []
        for output in outputs:
            prompt_tokens = len(output.prompt_token_ids or [])
            results.append(
                [
                    Completion(text=o.text, prompt_tokens=prompt_tokens, completion_tokens=len(o.token_ids))
                    for o in output.outputs
                ]
            )
        return results

    def close(self) -> None:
        """Drop the engine so its GPU memory can be freed."""
        self.llm = None
