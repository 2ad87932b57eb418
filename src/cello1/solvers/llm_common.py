"""Small helpers shared by the LLM backends (no heavy imports here)."""

from __future__ import annotations

import importlib
from typing import Any

from cello1.errors import InputError
from cello1.puzzle import check_prompt_layout, warn_on_layout_mismatch

# --solver name -> the pip extra that provides its engine
EXTRAS = {"vllm": ("vllm", "vLLM"), "gguf": ("llama_cpp", "llama-cpp-python")}


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
    module, dist = EXTRAS[solver]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"the {solver!r} solver needs {dist}, which is not installed; "
            f"install it with: pip install 'cello1[{solver}]'"
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
