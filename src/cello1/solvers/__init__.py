"""Solvers: one interface (:class:`Solver`), one module per backend, loaded lazily.

>>> solver = get_solver("markers")
"""

from __future__ import annotations

import importlib
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


def solver_class(name: str) -> type[Solver]:
    if name not in SOLVERS:
        raise InputError(f"unknown solver {name!r}; {{solver}} must be one of: {', '.join(SOLVERS)}", params=["solver"])
    module, cls = SOLVERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_solver(name: str, **options: Any) -> Solver:
    """Instantiate a solver by its ``--solver`` name."""
    return solver_class(name)(**options)


__all__ = ["SOLVERS", "Completion", "Solver", "get_solver", "solver_class"]
