"""Puzzle sets on the Hugging Face Hub: ``hf://datasets/OWNER/NAME[@REVISION]:SPLIT``.

Every command that reads puzzles accepts such a reference, e.g.
``cello1 eval`` … or ``cello1 solve hf://datasets/ncbi/CellPuzzles:test -o pred.jsonl``.
The repository is fetched with ``huggingface_hub`` into its usual cache (``HF_HOME`` /
``HF_HUB_CACHE``), so it downloads once and then works offline; with ``HF_HUB_OFFLINE=1``
only the cache is used. A split's files are found the way the hub lays datasets out: the
``configs`` → ``data_files`` of the dataset card's YAML header, else ``data/{split}-*``,
``{split}.*`` or ``{split}/*`` (Parquet, JSON or JSONL).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from cello1.errors import InputError

PREFIX = "hf://datasets/"
_REF = re.compile(r"^hf://datasets/(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w./-]+?))?(?::(?P<split>[\w.-]+))?/?$")
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass(frozen=True)
class HubReference:
    """A parsed ``hf://datasets/…`` reference."""

    repo_id: str
    revision: str | None
    split: str | None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{PREFIX}{self.repo_id}{rev}" + (f":{self.split}" if self.split else "")


def is_hub_reference(source: object) -> bool:
    """Whether ``source`` is a string starting with ``hf://datasets/``."""
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_reference(source: str) -> HubReference:
    """``hf://datasets/OWNER/NAME[@REVISION][:SPLIT]`` → its parts."""
    match = _REF.match(source)
    if match is None:
        raise InputError(
            f"{source}: not a hub dataset reference; write hf://datasets/OWNER/NAME:SPLIT "
            "(e.g. hf://datasets/ncbi/CellPuzzles:test), optionally with @REVISION before the split"
        )
    return HubReference(match["repo"], match["revision"], match["split"])


def snapshot(ref: HubReference) -> Path:
    """The local folder of the dataset repository (downloaded once into the hub cache)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with the llm/train extras
        raise InputError(f"{ref}: reading from the hub needs huggingface_hub: pip install 'cello1[llm]'") from None
    try:
        return Path(
            snapshot_download(
                ref.repo_id,
                repo_type="dataset",
                revision=ref.revision,
                allow_patterns=["README.md", "*.parquet", "*.json", "*.jsonl", "**/*.parquet", "**/*.json*"],
            )
        )
    except LocalEntryNotFoundError:
        raise InputError(
            f"{ref}: not in the local Hugging Face cache and the hub cannot be reached; run once with network "
            f"access (or `hf download --repo-type dataset {ref.repo_id}`), or point HF_HUB_CACHE at a cache that has it"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise InputError(f"{ref}: {type(exc).__name__} on the hub; check the repository name and revision") from None


def split_files(folder: Path, ref: HubReference) -> list[Path]:
    """The data files of ``ref.split`` in a downloaded repository folder."""
    patterns = _card_patterns(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    splits = sorted(patterns) if patterns else sorted({_split_of(p.relative_to(folder)) for p in files} - {""})
    if ref.split is None:
        raise InputError(
            f"{ref}: name a split, e.g. {ref}:{splits[0] if splits else 'test'} (splits: {', '.join(splits)})"
        )
    wanted = patterns.get(ref.split) or [
        f"data/{ref.split}-*",
        f"{ref.split}.*",
        f"{ref.split}/*",
        f"data/{ref.split}.*",
    ]
    chosen = [p for p in files if any(fnmatch.fnmatch(str(p.relative_to(folder)), pat) for pat in wanted)]
    if not chosen:
        raise InputError(
            f"{ref}: no split {ref.split!r} in the repository (splits: {', '.join(splits) or 'none found'})"
        )
    return chosen


def _split_of(relative: Path) -> str:
    name = relative.parts[1] if relative.parts[0] == "data" and len(relative.parts) > 1 else relative.parts[0]
    return re.split(r"[-.]", name, maxsplit=1)[0] if len(relative.parts) <= 2 else relative.parts[-2]


def _card_patterns(folder: Path) -> dict[str, list[str]]:
    """Split → file patterns from the dataset card's ``configs`` (the default config)."""
    card = folder / "README.md"
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    import yaml

    try:
        header = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return {}
    configs = header.get("configs") or []
    config = next((c for c in configs if c.get("config_name") == "default"), configs[0] if configs else {})
    patterns: dict[str, list[str]] = {}
    for entry in config.get("data_files") or []:
        if isinstance(entry, dict) and "split" in entry:
            path = entry.get("path")
            patterns[str(entry["split"])] = [path] if isinstance(path, str) else list(path or [])
    return patterns


def resolve(source: str) -> list[Path]:
    """The local data files behind a hub reference (downloading into the cache if needed)."""
    ref = parse_reference(source)
    return split_files(snapshot(ref), ref)


__all__ = ["HubReference", "is_hub_reference", "parse_reference", "resolve", "split_files"]
