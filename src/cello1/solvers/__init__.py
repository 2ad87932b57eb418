"""Solvers: one interface (:class:`Solver`), one module per backend, loaded lazily.

>>> solver = get_solver("markers")
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from cello1.errors import InputError
from cello1.solvers.base import Completion, Solver

# name -> "module:Class"; modules import their heavy dependencies only when used.
SOLVERS: dict[str, str] = {
    "random": "cello1.solvers.random_solver:RandomSolver",
    "markers": "cello1.solvers.markers:MarkerSolver",
    "reference": "cello1.solvers.reference:ReferenceSolver",
    "ensemble": "cello1.solvers.ensemble:EnsembleSolver",
    "hf": "cello1.solvers.hf:HFSolver",
    "openai": "cello1.solvers.openai_api:OpenAISolver",
    "vllm": "cello1.solvers.vllm_solver:VLLMSolver",
    "gguf": "cello1.solvers.gguf:GGUFSolver",
}


AUTO = "auto"


def auto_solver(model: str | None = None) -> str:
    """The local LLM engine ``--solver auto`` picks: the fastest one installed on this machine.

    vLLM first (on the benchmark CPU it generates fastest: benchmarks/results/engines.md),
    then llama.cpp when ``model`` is a ``.gguf`` file, then transformers.
    """
    if importlib.util.find_spec("vllm") is not None:
        return "vllm"
    if model and str(model).lower().endswith(".gguf") and importlib.util.find_spec("llama_cpp") is not None:
        return "gguf"
    return "hf"


def solver_class(name: str) -> type[Solver]:
    """The class behind a ``--solver`` name (``auto``: see :func:`auto_solver`)."""
    if name == AUTO:
        name = auto_solver()
    if name not in SOLVERS:
        raise InputError(f"unknown solver {name!r}; {{solver}} must be one of: {', '.join(SOLVERS)}", params=["solver"])
    module, cls = SOLVERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_solver(name: str, **options: Any) -> Solver:
    """Instantiate a solver by its ``--solver`` name (``auto``: see :func:`auto_solver`)."""
    if name == AUTO:
        name = auto_solver(options.get("model"))
    return solver_class(name)(**options)


__all__ = ["SOLVERS", "Completion", "Solver", "auto_solver", "get_solver", "solver_class"]
