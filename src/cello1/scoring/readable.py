"""A base for result types that read like the JSON they are written as."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any


class Readable(Mapping):
    """Results read like the JSON they are written as (``result["by"]["n"]["8"]``)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``None`` parts left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = _plain(getattr(self, f.name))
            if value is not None:
                out[f.name] = value
        return out

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key) if key in {f.name for f in fields(self)} else None  # type: ignore[arg-type]
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _plain(value: Any) -> Any:
    if isinstance(value, Readable):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
