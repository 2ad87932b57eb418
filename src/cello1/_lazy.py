"""Lazy attributes for package ``__init__`` modules: heavy parts load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a module path) on first access."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_dir(module_globals: Mapping[str, Any], names: Mapping[str, str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing the lazy attributes too (so ``dir(cello1)`` shows ``annotate``)."""

    def __dir__() -> list[str]:
        return sorted(set(module_globals) | set(names))

    return __dir__
