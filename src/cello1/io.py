"""Reading and writing record files: JSON, JSONL, Parquet, or a folder of ``.json`` files.

Writers are atomic (temporary file in the same folder, then rename) so a crash never
leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cello1.errors import InputError, RecordFormatError
from cello1.hub import is_hub_reference
from cello1.hub import resolve as resolve_hub
from cello1.puzzle import Puzzle, parse_record


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records from a ``.jsonl``, ``.json`` (one object or a list), ``.parquet`` file, a
    folder of such files (sorted by name), or a hub dataset split
    (``hf://datasets/OWNER/NAME:SPLIT``, see :mod:`cello1.hub`).
    """
    if is_hub_reference(path):
        for file in resolve_hub(str(path)):
            yield from iter_records(file)
        return
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".jsonl", ".parquet"})
        if not files:
            raise InputError(f"{path}: folder holds no .json, .jsonl or .parquet files")
        for file in files:
            yield from iter_records(file)
        return
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield _loads(line, path, lineno)
    elif suffix == ".json":
        data = _loads(path.read_text(encoding="utf-8"), path, None)
        if isinstance(data, list):
            yield from data
        elif isinstance(data, dict):
            yield data
        else:
            raise InputError(f"{path}: expected a JSON object or a list of objects")
    else:
        raise InputError(f"{path}: unknown file type {suffix!r}; use .jsonl, .json or .parquet")


def _loads(text: str, path: Path, lineno: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{path}:{lineno}" if lineno else str(path)
        raise InputError(f"{where}: not valid JSON ({exc.msg}); is this a JSON/JSONL file?") from None


def read_puzzles(path: str | os.PathLike) -> list[Puzzle]:
    """Puzzles from any official-format or cello1 file (see :func:`iter_records`)."""
    puzzles = []
    for i, rec in enumerate(iter_records(path)):
        try:
            puzzles.append(parse_record(rec))
        except RecordFormatError as exc:
            raise InputError(f"{path}: record {i}: {exc}") from None
    return puzzles


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path``.

    Refuses a file, or a non-empty folder unless ``overwrite``; on any error nothing is
    left behind and an existing ``path`` is untouched.
    """
    out = Path(path)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a file, or a non-empty folder unless ``overwrite`` (call before long work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another {{out}}", params=["out"])
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"{out}: folder exists and is not empty; pass {{overwrite}} or choose another {{out}}",
            params=["overwrite", "out"],
        )


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` onto ``out``; an existing ``out`` is moved aside first and removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL atomically; returns the count."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_puzzles(path: str | os.PathLike, puzzles: Iterable[Puzzle], provenance: bool = True) -> int:
    """Write puzzles as official JSONL records atomically (with provenance fields unless
    ``provenance=False``); returns the count.
    """
    return write_jsonl(path, (p.to_record(provenance=provenance) for p in puzzles))
