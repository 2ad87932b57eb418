"""Reading and writing record files: JSON, JSONL, Parquet, or a folder of ``.json`` files.

Reading: :func:`iter_numbered_records` yields every record with where it came from
(``file:line``), so every error names the file and the line; :func:`read_puzzles` is the
one puzzle-file reader (``solve``, ``eval``, ``distill``, ``train`` and ``export`` all use
it) and checks each record with :func:`check_record` / :func:`check_puzzle`.

Writing: writers are atomic (temporary file in the same folder, then rename) so a crash
never leaves a half-written output behind; the result gets the mode an ordinary
``open()`` would give it (the umask is respected; a replaced file keeps its mode).
:func:`atomic_dir` does the same for a whole folder, and :func:`check_output_file` /
:func:`check_output_dir` let a command check every output before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cello1.errors import InputError, OutputError, RecordFormatError
from cello1.hub import is_hub_reference
from cello1.hub import resolve as resolve_hub
from cello1.puzzle import Puzzle, parse_record
from cello1.vocabulary import label_key

RECORD_SUFFIXES = (".json", ".jsonl", ".parquet")

# ---- reading -----------------------------------------------------------------------------


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records from a ``.jsonl``, ``.json`` (one object or a list), ``.parquet`` file, a
    folder of such files (sorted by name), or a hub dataset split
    (``hf://datasets/OWNER/NAME:SPLIT``, see :mod:`cello1.hub`). Every record is a JSON object (else
    :class:`~cello1.errors.InputError` naming the file and line).
    """
    for _, record in iter_numbered_records(path):
        yield record


def iter_numbered_records(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` pairs, ``where`` being ``file:line`` (JSONL), ``file: record i``
    (a JSON list) or ``file: row i`` (Parquet), for error messages.
    """
    if is_hub_reference(path):
        for file in resolve_hub(str(path)):
            yield from iter_numbered_records(file)
        return
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RECORD_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: folder holds no .json, .jsonl or .parquet files")
        for file in files:
            yield from iter_numbered_records(file)
        return
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            yield from _parquet_records(path)
        elif suffix == ".jsonl":
            yield from _jsonl_records(path)
        elif suffix == ".json":
            yield from _json_records(path)
        else:
            raise InputError(f"{path}: unknown file type {suffix!r}; use .jsonl, .json or .parquet")
    except (PermissionError, IsADirectoryError) as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            line = _decode(raw, where, first=lineno == 1)
            if not line.strip():
                continue
            if not raw.endswith(b"\n"):
                _check_last_line(line, where)
            value = _loads(line, where, jsonl=True)
            if not isinstance(value, dict):
                raise InputError(f"{where}: {_not_an_object(value, jsonl=True)}")
            yield where, value


def _check_last_line(line: str, where: str) -> None:
    """A last line without its newline that is not JSON was cut off mid-write."""
    try:
        json.loads(line)
    except json.JSONDecodeError:
        raise InputError(
            f"{where}: the last line is cut off (the file is still being written, or its writer was killed); "
            "let the writer finish, or re-run the `cello1 solve` command that writes it to complete the file"
        ) from None


def _json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    data = _loads(_decode(path.read_bytes(), str(path), first=True), str(path), jsonl=False)
    if isinstance(data, dict):
        yield str(path), data
        return
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON object or a list of objects, found {_kind(data)}")
    for index, value in enumerate(data):
        where = f"{path}: record {index}"
        if not isinstance(value, dict):
            raise InputError(f"{where}: {_not_an_object(value, jsonl=False)}")
        yield where, value


def _parquet_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:120]})") from None
    for index, row in enumerate(table.to_pylist()):
        yield f"{path}: row {index}", row


def _decode(raw: bytes, where: str, first: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "is this a text JSON/JSONL file? convert it to UTF-8"
        ) from None
    return text.removeprefix("\ufeff") if first else text  # a byte-order mark is harmless


def _loads(text: str, where: str, jsonl: bool) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "is this a JSON/JSONL file?"
        if jsonl and text.lstrip().startswith("["):
            hint = "a .jsonl file holds one JSON object per line; a file that is one JSON array should be named .json"
        raise InputError(f"{where}: not valid JSON ({exc.msg}); {hint}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a JSON array"
    return type(value).__name__


def _not_an_object(value: Any, jsonl: bool) -> str:
    text = f"expected a JSON object (one record), found {_kind(value)}"
    if jsonl and isinstance(value, list):
        text += "; a .jsonl file holds one JSON object per line (a file that is one JSON array should be named .json)"
    return text


# ---- the puzzle-file validator ---------------------------------------------------------------

_TEXT_FIELDS = ("user_msg", "system_msg")
_PROVENANCE_TEXT = ("source", "donor", "tissue", "disease")


def check_record(record: dict[str, Any]) -> dict[str, Any]:
    """The field types of one puzzle record; returns the record with numeric provenance
    (``donor: 7``) as text. Raises :class:`~cello1.errors.RecordFormatError`.
    """
    for name in _TEXT_FIELDS:
        if name in record and not isinstance(record[name], str):
            raise RecordFormatError(f"field {name!r} must be a string, not {_kind(record[name])}")
    for name in ("assistant_msg", "answer"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise RecordFormatError(
                f"field {name!r} (the gold answer) must be a string such as 'A | B | C', not {_kind(record[name])}"
            )
    ident = record.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise RecordFormatError(f"field 'id' must be a string, not {_kind(ident)}")
    fixed = None
    for name in _PROVENANCE_TEXT:
        value = record.get(name)
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordFormatError(f"field {name!r} must be a string, not {_kind(value)}")
        fixed = fixed or dict(record)
        fixed[name] = str(value)
    cell_ids = record.get("cell_ids")
    if cell_ids is not None and (
        not isinstance(cell_ids, (list, tuple)) or not all(isinstance(c, (str, int)) for c in cell_ids)
    ):
        raise RecordFormatError("field 'cell_ids' must be a list of strings")
    n = record.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise RecordFormatError(f"field 'n' must be an integer, not {_kind(n)}")
    return fixed or record


def check_puzzle(puzzle: Puzzle, n_field: int | None = None) -> None:
    """What makes a puzzle solvable and its gold scorable (docs/format.md §2): N ≥ 2 cells,
    one distinct candidate per cell (compared as :func:`~cello1.vocabulary.label_key`),
    no ``|`` inside a candidate, and a gold that uses each candidate once. Raises
    :class:`~cello1.errors.RecordFormatError`.
    """
    n = puzzle.n
    if n < 2:
        raise RecordFormatError(
            f"the puzzle has {n} cell(s); a puzzle needs at least 2 (a one-label answer never passes the strict format)"
        )
    if n_field is not None and n_field != n:
        raise RecordFormatError(f"field 'n' says {n_field} cells but user_msg lists {n}")
    if len(puzzle.candidates) != n:
        raise RecordFormatError(
            f"the puzzle lists {len(puzzle.candidates)} candidate types for {n} cells; it needs one per cell"
        )
    seen: dict[str, str] = {}
    for candidate in puzzle.candidates:
        if not candidate.strip():
            raise RecordFormatError("a candidate cell type is empty")
        if "|" in candidate:
            raise RecordFormatError(f"the candidate {candidate!r} contains '|', which separates labels in answers")
        key = label_key(candidate)
        if key in seen:
            same = "" if seen[key] == candidate else f" (as {seen[key]!r}; labels are compared ignoring case)"
            raise RecordFormatError(f"the candidate {candidate!r} is listed twice{same}; candidates must be distinct")
        seen[key] = candidate
    if puzzle.answer is not None and len({label_key(label) for label in puzzle.answer}) != n:
        repeated = next(label for label in puzzle.answer if puzzle.answer.count(label) > 1)
        raise RecordFormatError(f"the gold answer uses {repeated!r} twice; it must use each candidate once")


def parse_puzzle(record: Any, where: str = "record") -> Puzzle:
    """One puzzle record → :class:`~cello1.puzzle.Puzzle`, checked; errors name ``where``."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: {_not_an_object(record, jsonl=False)}")
    try:
        record = check_record(record)
        puzzle = parse_record(record)
        check_puzzle(puzzle, record.get("n"))
    except RecordFormatError as exc:
        raise InputError(f"{where}: {exc}") from None
    return puzzle


def read_puzzles(path: str | os.PathLike) -> list[Puzzle]:
    """Puzzles from any official-format or cello1 file (see :func:`iter_records`), each
    checked (:func:`check_record`, :func:`check_puzzle`); an empty file is an error.
    """
    puzzles = [parse_puzzle(record, where) for where, record in iter_numbered_records(path)]
    if not puzzles:
        raise InputError(
            f"{path}: holds no puzzles (the file is empty or has only blank lines); "
            "pass a puzzle file written by `cello1 build` or official CellPuzzles records"
        )
    return puzzles


def check_puzzles(puzzles: Sequence[Puzzle]) -> None:
    """:func:`check_puzzle` on in-memory puzzles; errors name the puzzle id."""
    for puzzle in puzzles:
        try:
            check_puzzle(puzzle)
        except RecordFormatError as exc:
            raise InputError(f"puzzle {puzzle.id!r}: {exc}") from None


# ---- file modes ------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the fallback only)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()``/``mkdir()`` would give a new file/folder under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def _target_mode(path: Path, directory: bool = False) -> int:
    """A replaced file keeps its mode; a new one gets the umask's."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return default_mode(directory)


# ---- writing ---------------------------------------------------------------------------------


def make_parent(path: Path) -> None:
    """Create ``path``'s folder (and parents); a file in the way is a one-line error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot create the folder for {path}: a file is in the way") from None
    except OSError as exc:
        raise OutputError(f"cannot create the folder for {path}: {exc.strerror}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The result has the mode an ordinary write would give it (the umask's for a new
    file, the old mode for a replaced one) and is fsync'ed before the rename.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    make_parent(path)
    clean_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _target_mode(path))
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


# ---- checking outputs before the work --------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, param: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we can create files in."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise InputError(f"{{{param}}}={path}: {base} is a file, not a folder", params=[param])
    try:  # os.access does not see read-only mounts; a real probe does
        probe = tempfile.mkdtemp(prefix=".cello1-probe-", dir=base)
    except OSError as exc:
        raise InputError(
            f"{{{param}}}={path}: cannot write in {base} ({exc.strerror}); choose another {{{param}}}", params=[param]
        ) from None
    os.rmdir(probe)


def check_output_file(path: str | os.PathLike, param: str = "out", inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Fail early (before any work) when ``path`` cannot be written as a file: it is a
    folder, it is one of the ``inputs``, or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{{{param}}}={path} is a folder; give a file name such as {path / 'out.json'}", params=[param]
        )
    for item in inputs:
        if same_path(path, item):
            raise InputError(
                f"{{{param}}}={path} is also an input; writing it would destroy that input; choose another {{{param}}}",
                params=[param],
            )
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{{{param}}}={path}: not writable; choose another {{{param}}}", params=[param])
    _check_creatable(path, param)
    return path


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (by inode when both exist)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_output_dir(
    out: str | os.PathLike,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    param: str = "out",
) -> Path:
    """Refuse a file, a non-empty folder unless ``overwrite``, a folder holding one of the
    ``inputs`` (replacing it would delete them), or a place that cannot be written —
    call it before a long job, not after.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another {{{param}}}", params=[param])
    for item in inputs:
        if inside(item, out):
            raise InputError(
                f"{out}: holds the input {item}; writing the output there would delete it — choose another {{{param}}}",
                params=[param],
            )
    if out.exists() and any(p for p in out.iterdir()) and not overwrite:
        raise InputError(
            f"{out}: folder exists and is not empty; pass {{overwrite}} or choose another {{{param}}}",
            params=["overwrite", param],
        )
    _check_creatable(out, param)
    return out


# ---- whole folders ---------------------------------------------------------------------------

_TMP_SUFFIX = ".tmp"
_OLD_SUFFIX = ".old"


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _temp_prefix(out: Path) -> str:
    # pid and host in the name let a later run on this machine remove what a killed one left
    return f".{out.name}.{os.getpid()}-{_host()}."


def clean_stale_temps(out: str | os.PathLike) -> list[Path]:
    """Remove ``.{name}.{pid}.*.tmp``/``.old`` files and folders next to ``out`` that a
    killed run left behind (their pid is gone); returns what was removed.
    """
    out = Path(out)
    removed: list[Path] = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return removed
    prefix = f".{out.name}."
    for item in siblings:
        name = item.name
        if not (name.startswith(prefix) and name.endswith((_TMP_SUFFIX, _OLD_SUFFIX))):
            continue
        pid_text, _, host = name[len(prefix) :].split(".", 1)[0].partition("-")
        if not pid_text.isdigit() or host != _host() or _alive(int(pid_text)):
            continue  # not ours, another machine's, or another process is writing it right now
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                item.unlink()
        removed.append(item)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def temp_dir_beside(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder next to ``out`` (same file system, so its files can be renamed
    into place), removed at the end; a later run removes it should this one be killed.
    """
    out = Path(out)
    make_parent(out)
    clean_stale_temps(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=_TMP_SUFFIX, dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write next to {out}: {exc.strerror}") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out`` (an old
    ``out`` is moved aside first and removed after), so an error or a kill never leaves a
    half-written folder. Leftovers of killed runs are removed first.
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    make_parent(out)
    clean_stale_temps(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=_TMP_SUFFIX, dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    try:
        yield tmp
        os.chmod(tmp, _target_mode(out, directory=True))
        _replace_dir(tmp, out, overwrite)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``out``; an existing ``out`` is moved aside first and removed after."""
    if not out.exists():
        try:
            os.replace(tmp, out)
        except OSError:
            if out.exists():  # another process created it meanwhile
                raise OutputError(f"{out} was created by another process meanwhile; nothing replaced") from None
            raise
        return
    if any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} was filled by another process while this one ran; nothing replaced")
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=_OLD_SUFFIX, dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
