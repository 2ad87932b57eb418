"""The resumable runner: puzzles + any solver -> one JSONL prediction record per sample.

    preds = solve("test.jsonl", "hf", "pred.jsonl", model="HuggingFaceTB/SmolLM2-135M-Instruct")

Guarantees (``out`` given; docs/reliability.md states them for the command line):

* **one writer**: the run holds an exclusive lock on ``out`` (``flock`` on the hidden
  file ``.{name}.lock`` beside it) from the first read to the last write; a second run on
  the same ``out`` stops at once, naming the process that holds it;
* **nothing lost**: every finished record is appended, flushed and fsync'ed at once, so
  Ctrl-C or a kill loses nothing already finished;
* **only what matches is resumed**: re-running skips ``(id, sample)`` pairs finished
  without error *on the same puzzle content* (``puzzle_hash``, a hash of the rendered
  record) and retries the ones that failed; predictions made on another version of a
  puzzle (same id, other content) are reported and redone;
* **never someone else's file**: an existing ``out`` that is not a prediction file of
  this run — not cello1 output at all, another solver, model or options, or predictions
  for puzzles that are not in the input — is refused before anything is written;
* the file never holds two records for one ``(id, sample)``: at start, if the file has
  records to retry, stale ones, duplicates (written by older tools) or a truncated last
  line (a kill mid-write), it is first rewritten atomically (same mode) with only the
  records that stay, so new records are only ever appended for pairs not in the file.

Each line is a :class:`~cello1.prediction.Prediction` record: ``id``, ``answer`` (gold
string or null), ``prediction`` (raw text), ``assignment`` (strictly parsed labels or
null), ``solver``, ``model``, ``seconds``, ``prompt_tokens``, ``completion_tokens``,
``error``, ``sample``, the puzzle's ``n``, ``tissue``, ``disease``, ``source``,
``donor``, and ``puzzle_hash`` and ``options`` (what identifies the run); with
``repair=True`` also ``repaired_assignment`` and ``repair_method`` (``prediction``/
``assignment`` untouched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cello1.errors import InputError, OutputError
from cello1.io import atomic_path, check_puzzles, make_parent, read_puzzles
from cello1.prediction import Prediction
from cello1.puzzle import Puzzle
from cello1.solvers import get_solver
from cello1.solvers.base import Ability, Completion, Solver

Key = tuple[str, int]

# Solver options that change how a run goes, not what it answers: a resume may change them.
RUNTIME_OPTIONS = frozenset(
    {"batch_size", "concurrency", "timeout", "max_retries", "device", "dtype", "threads", "base_url", "api_key_env",
     "allow_insecure_key", "progress", "kv_cache_gb", "kv_cache_memory_bytes", "max_model_len",
     "tensor_parallel_size", "gpu_memory_utilization", "enforce_eager"}
)  # fmt: skip


# ---- public API --------------------------------------------------------------------------


class RunResult(list):
    """The predictions :func:`solve` returns (a list, in input order) plus what this run
    did: ``new`` predictions made now, ``new_failed`` of them with an error, ``stale``
    predictions of another puzzle version dropped from the file.
    """

    def __init__(self, predictions: list[Prediction] = (), new: int = 0, new_failed: int = 0, stale: int = 0) -> None:
        super().__init__(predictions)
        self.new, self.new_failed, self.stale = new, new_failed, stale

    @property
    def nothing_succeeded(self) -> bool:
        """Whether the run asked for predictions and every one of them failed (e.g. no server answered)."""
        return self.new > 0 and self.new_failed == self.new


def solve(
    puzzles: list[Puzzle] | str | os.PathLike,
    solver: str | Solver = "markers",
    out: str | os.PathLike | None = None,
    *,
    shard: tuple[int, int] | str | None = None,
    repair: bool = False,
    progress: bool = True,
    limit: int | None = None,
    **solver_options: Any,
) -> RunResult:
    """Solve puzzles with any solver; returns the predictions of this run's puzzles in input
    order (including ones finished by an earlier run of the same ``out`` file).

    ``shard=(i, n)`` (or ``"i/n"``) keeps the puzzles whose id hashes to ``i`` of ``n``
    (deterministic, independent of file order); ``limit`` keeps the first puzzles (before
    sharding). ``solver_options`` go to the solver's constructor when ``solver`` is a name.
    ``out`` must be a ``.jsonl`` file that is new, empty, or a prediction file of this run
    (see the module docstring).
    """
    everything = load_puzzles(puzzles)
    source = str(puzzles) if isinstance(puzzles, (str, os.PathLike)) else "the puzzles"
    puzzle_list = select_puzzles(everything, shard=shard, limit=limit, source=source)
    if not isinstance(solver, str) and solver_options:
        raise InputError(f"options {sorted(solver_options)} only apply when the solver is given by name")
    # the output is locked, read and checked before a (possibly slow) solver loads
    output = None if out is None else _Output(check_prediction_path(out), everything)
    try:
        owns_solver = isinstance(solver, str)
        if owns_solver:
            solver = get_solver(solver, **solver_options)
        try:
            options = run_options(solver, solver_options)
            if solver.settings().get("constrained") == "format" and not repair:
                # a server grammar guarantees the strict format, every item a candidate, but
                # not a permutation: the optimal-assignment repair supplies the rest
                print(
                    "note: this server's grammar cannot forbid repeated candidates; adding --repair",
                    file=sys.stderr,
                )
                repair = True
            return _run(puzzle_list, everything, solver, output, options, repair=repair, progress=progress)
        finally:
            if owns_solver:
                solver.close()
    finally:
        if output is not None:
            output.close()


def load_puzzles(puzzles: list[Puzzle] | str | os.PathLike) -> list[Puzzle]:
    """Puzzles from a file or a list of :class:`Puzzle`, checked (:func:`cello1.io.check_puzzle`)."""
    if isinstance(puzzles, str | os.PathLike):
        return read_puzzles(puzzles)
    puzzles = list(puzzles)
    if not all(isinstance(p, Puzzle) for p in puzzles):
        raise InputError("puzzles must be a list of cello1.Puzzle or a path to a puzzle file")
    if not puzzles:
        raise InputError("no puzzles given")
    check_puzzles(puzzles)
    return puzzles


def parse_shard(shard: tuple[int, int] | str | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)`` with ``0 <= i < n``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise InputError(f"{{shard}} must look like i/n (e.g. 0/4), not {shard!r}", params=["shard"]) from None
    else:
        i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"{{shard}} {i}/{n}: need 0 <= i < n", params=["shard"])
    return i, n


def shard_of(puzzle_id: str, n_shards: int) -> int:
    """Stable shard of an id (sha1, so the same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha1(puzzle_id.encode("utf-8")).digest()[:8], "big") % n_shards


def select_puzzles(
    puzzles: list[Puzzle], *, shard: Any = None, limit: int | None = None, source: str = "the puzzles"
) -> list[Puzzle]:
    """The first ``limit`` puzzles, then those of shard ``i/n``; ids must be unique."""
    seen: dict[str, int] = {}
    for i, p in enumerate(puzzles):
        if p.id in seen:
            raise InputError(
                f"{source}: puzzle id {p.id!r} occurs more than once (puzzles {seen[p.id] + 1} and {i + 1}); "
                "ids must be unique, as they key the predictions and the resume"
            )
        seen[p.id] = i
    if limit is not None:
        if limit < 0:
            raise InputError(f"{{limit}} must be >= 0, not {limit}", params=["limit"])
        puzzles = puzzles[:limit]
    parsed = parse_shard(shard)
    if parsed is not None:
        i, n = parsed
        puzzles = [p for p in puzzles if shard_of(p.id, n) == i]
    return puzzles


def content_hash(puzzle: Puzzle) -> str:
    """A hash of the puzzle as a model sees and the scorer judges it (the rendered
    ``user_msg`` and the gold answer): equal exactly when a prediction carries over.
    """
    text = json.dumps([puzzle.user_msg, puzzle.answer_str], ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def run_options(solver: Solver, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings that shape a run's answers (recorded as each record's ``options``):
    the solver's :meth:`~cello1.solvers.base.Solver.settings` and the options given by
    name, minus ``solver``/``model`` (recorded on their own) and :data:`RUNTIME_OPTIONS`.
    """
    options = {k: v for k, v in solver.settings().items() if k not in {"solver", "model", *RUNTIME_OPTIONS}}
    for name, value in (given or {}).items():
        if name not in RUNTIME_OPTIONS:
            options.setdefault(name, value)
    return {k: _plain(v) for k, v in sorted(options.items())}


def _plain(value: Any) -> Any:
    """A JSON value that compares equal after a round trip through the file."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    if isinstance(value, (list, tuple)):
        return f"{len(value)} {type(value[0]).__name__ if value else 'item'}s"
    return type(value).__name__


def check_prediction_path(out: str | os.PathLike) -> Path:
    """``out`` must name a ``.jsonl`` file (``cello1 eval`` reads files by their suffix)."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"{{out}}={path} is a folder; give a file name such as {path / 'pred.jsonl'}", params=["out"])
    if path.suffix.lower() != ".jsonl":
        raise InputError(
            f"{{out}}={path}: predictions are written as JSON lines; give the file a .jsonl name "
            f"(e.g. {path.with_suffix('.jsonl').name})",
            params=["out"],
        )
    return path


def read_predictions(path: str | os.PathLike) -> tuple[dict[Key, Prediction], bool]:
    """Existing predictions keyed by ``(id, sample)``, the latest line winning, and whether
    the file needs compaction (duplicates or a truncated last line, as a kill mid-write
    leaves). A file that is not a prediction file raises :class:`~cello1.errors.InputError`.
    """
    path = Path(path)
    records: dict[Key, Prediction] = {}
    if not path.exists():
        return records, False
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a prediction file")
    raw = path.read_bytes()
    if raw.startswith(b"PAR1"):
        raise _not_predictions(path, None, "it is a Parquet file")
    lines = raw.split(b"\n")
    cut = lines.pop()  # b"" when the file ends with a newline (as every complete write does)
    dirty = bool(cut.strip())  # killed mid-write: the last line is cut
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            dirty = True
            continue
        rec = _prediction_record(line, path, lineno)
        dirty = dirty or rec.key in records
        records[rec.key] = rec
    if cut.strip():
        try:  # a complete record that only lacks its newline is kept (the rewrite adds it)
            rec = _prediction_record(cut, path, len(lines) + 1)
        except InputError:
            # a record cut by a kill starts like every record we write; other text in a
            # file without a single prediction is someone else's
            if not records and not cut.startswith(_RECORD_START):
                raise
        else:
            records[rec.key] = rec
    return records, dirty


_RECORD_KEYS = ("id", "prediction", "solver")
_RECORD_START = b'{"id": '  # how every record :class:`_Appender` writes begins


def _prediction_record(line: bytes, path: Path, lineno: int) -> Prediction:
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise _not_predictions(path, lineno, "it is not UTF-8 text") from None
    except json.JSONDecodeError:
        raise _not_predictions(path, lineno, "it is not a JSON record") from None
    if not isinstance(value, dict) or not all(k in value for k in _RECORD_KEYS):
        raise _not_predictions(path, lineno, "it is not a prediction record (id, prediction, solver)")
    try:
        return Prediction.from_record(value)
    except (TypeError, ValueError) as exc:
        raise _not_predictions(path, lineno, f"it is not a prediction record ({exc})") from None


def _not_predictions(path: Path, lineno: int | None, why: str) -> InputError:
    where = f"line {lineno}: " if lineno else ""
    return InputError(
        f"{path} exists and is not a cello1 prediction file ({where}{why}); nothing was changed — "
        f"give {{out}} a new file name, or delete the file yourself if you mean to replace it",
        params=["out"],
    )


# ---- the run -----------------------------------------------------------------------------


class _Output:
    """The prediction file of a run, from the first read to the last write: locked
    (:class:`OutputLock`), read and checked to be a prediction file for these puzzles.
    """

    def __init__(self, path: Path, everything: list[Puzzle]) -> None:
        self.path = path.resolve()  # a symlink and its target share one lock and stay a symlink
        self.lock = OutputLock(self.path)
        self.lock.acquire()
        try:
            self.existing, self.dirty = read_predictions(self.path)
            _check_known_puzzles(self.path, self.existing, {p.id for p in everything})
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        """Release the lock."""
        self.lock.release()


def _run(
    puzzles: list[Puzzle],
    everything: list[Puzzle],
    solver: Solver,
    output: _Output | None,
    options: dict[str, Any],
    *,
    repair: bool,
    progress: bool,
) -> RunResult:
    n_samples = max(1, int(solver.n or 1))
    hashes = {p.id: content_hash(p) for p in puzzles}
    done: dict[Key, Prediction] = {}
    fresh: dict[Key, Prediction] = {}
    stale = 0
    writer = bar = None
    try:
        if output is not None:
            done, stale = _open_output(output, puzzles, everything, solver, options, n_samples, repair=repair)
            writer = _Appender(output.path)
        # transductive solvers (--transductive) see all of this run's puzzles first, so a
        # resumed run answers the pending ones exactly as an uninterrupted run would
        solver.prepare(puzzles)
        pending = [p for p in puzzles if any(_needs_run(done.get((p.id, s))) for s in range(n_samples))]
        bar = _Progress(len(pending), progress)
        for puzzle, completions, seconds in _iter_completions(solver, pending):
            for sample, completion in enumerate(completions):
                key = (puzzle.id, sample)
                if not _needs_run(done.get(key)):
                    continue  # finished by an earlier run; keep that record
                rec = make_prediction(puzzle, completion, solver, sample, seconds, repair=repair)
                rec.puzzle_hash, rec.options = hashes[puzzle.id], options
                if writer is not None:
                    writer.write(rec)
                fresh[key] = rec
            bar.update(completions)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    merged = {**done, **fresh}
    ordered = [merged[(p.id, s)] for p in puzzles for s in range(n_samples) if (p.id, s) in merged]
    return RunResult(ordered, new=len(fresh), new_failed=sum(r.failed for r in fresh.values()), stale=stale)


def _needs_run(record: Prediction | None) -> bool:
    return record is None or record.failed


def _open_output(
    output: _Output,
    puzzles: list[Puzzle],
    everything: list[Puzzle],
    solver: Solver,
    options: dict[str, Any],
    n_samples: int,
    *,
    repair: bool,
) -> tuple[dict[Key, Prediction], int]:
    """Read what an earlier run finished (refusing a file of another run), drop records
    this run will redo and stale ones, compact the file if needed.

    Returns the finished records this run keeps and the number of stale ones dropped.
    """
    path, existing, dirty = output.path, output.existing, output.dirty
    by_id = {p.id: p for p in everything}
    _check_same_run(path, existing, solver, options)
    hashes: dict[str, str] = {}
    stale = {k for k, rec in existing.items() if not _same_puzzle(rec, by_id[k[0]], hashes)}
    if stale:
        print(
            f"warning: {path}: {len(stale)} predictions were made on another version of their puzzle "
            "(same id, different content, e.g. after a rebuild); they are dropped and solved again",
            file=sys.stderr,
        )
    wanted = {(p.id, s) for p in puzzles for s in range(n_samples)}
    retry = {k for k, rec in existing.items() if k in wanted and _needs_run(rec)}
    kept = {k: rec for k, rec in existing.items() if k not in retry and k not in stale}
    if repair:
        dirty = _add_missing_repairs(kept, {p.id: p for p in puzzles}) or dirty
    if dirty or retry or stale:
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for rec in kept.values():
                fh.write(json.dumps(rec.to_record(), ensure_ascii=False) + "\n")
    return {k: rec for k, rec in kept.items() if k in wanted}, len(stale)


def _check_known_puzzles(path: Path, existing: dict[Key, Prediction], ids: set[str]) -> None:
    """Predictions for puzzles that are not in the input belong to another run."""
    foreign = [pid for pid, _ in existing if pid not in ids]
    if foreign:
        raise InputError(
            f"{path} holds predictions for {len(set(foreign))} puzzles that are not in this input "
            f"(e.g. {foreign[0]!r}), so it belongs to another run; write to another {{out}} file",
            params=["out"],
        )


def _check_same_run(path: Path, existing: dict[Key, Prediction], solver: Solver, options: dict[str, Any]) -> None:
    """Resuming into a file of another solver, model or options would mix two runs."""
    for rec in existing.values():
        if (rec.solver, rec.model) != (solver.name, solver.model):
            raise InputError(
                f"{path} already holds predictions of solver {rec.solver!r} (model {rec.model!r}), "
                f"not {solver.name!r} (model {solver.model!r}); write to another {{out}} file",
                params=["out"],
            )
        if rec.options is not None and rec.options != options:
            raise InputError(
                f"{path} holds predictions made with other options ({_options_diff(rec.options, options)}); "
                "re-run with the same options to resume it, or write to another {out} file",
                params=["out"],
            )


def _options_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: file {old.get(k)!r}, now {new.get(k)!r}" for k in names[:4])


def _same_puzzle(record: Prediction, puzzle: Puzzle, cache: dict[str, str]) -> bool:
    """Whether a finished record was made on this content of its puzzle (records written
    before ``puzzle_hash`` existed are compared by gold answer and N).
    """
    if record.puzzle_hash is not None:
        if puzzle.id not in cache:
            cache[puzzle.id] = content_hash(puzzle)
        return record.puzzle_hash == cache[puzzle.id]
    return record.answer == puzzle.answer_str and record.n in (None, puzzle.n)


def _add_missing_repairs(records: dict[Key, Prediction], puzzles: dict[str, Puzzle]) -> bool:
    """Records finished by a run without --repair get their repair now (string similarity:
    score matrices are not stored). Returns whether any record changed.
    """
    from cello1.solvers.repair import repair_completion

    changed = False
    for (pid, _), rec in records.items():
        if pid in puzzles and not rec.repaired and not rec.failed:
            rec.set_repair(*repair_completion(puzzles[pid], Completion(text=rec.prediction)))
            changed = True
    return changed


class OutputLock:
    """An exclusive lock on one output file: ``flock`` on the hidden ``.{name}.lock`` beside
    it, holding the owner's pid. The kernel drops the lock when its process dies, so a
    killed run never blocks the next one; a live one makes :meth:`acquire` fail at once.
    """

    def __init__(self, path: Path) -> None:
        self.target = path
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`~cello1.errors.InputError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: no lock
            return
        make_parent(self.target)
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError(f"cannot write in the folder of {self.target}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise InputError(
                    f"{self.target} is being written by another cello1 process ({holder}); wait for it to "
                    "finish (re-running then resumes), or write to another {out} file",
                    params=["out"],
                ) from None
            # the previous holder removes the lock file on release: make sure ours is the live one
            try:
                live = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                live = False
            if live:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise OutputError(f"cannot lock {self.target}: the lock file keeps changing")

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order, see :meth:`acquire`)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


class _Appender:
    """Append-only JSONL writer that makes each record durable before returning."""

    def __init__(self, path: Path) -> None:
        make_parent(path)
        self._fh = path.open("a", encoding="utf-8")

    def write(self, prediction: Prediction) -> None:
        # one write call per record, so a kill leaves at most one cut line at the end
        self._fh.write(json.dumps(prediction.to_record(), ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _iter_completions(solver: Solver, puzzles: list[Puzzle]) -> Iterator[tuple[Puzzle, list[Completion], float]]:
    """(puzzle, its n completions, seconds per puzzle) as soon as each is ready.

    Streaming solvers (e.g. the concurrent API client) yield puzzles as they finish;
    the others are called batch by batch with ``solve_batch``.
    """
    if solver.supports(Ability.STREAMING):
        last = time.perf_counter()
        for index, completions in solver.iter_solve(puzzles):
            now = time.perf_counter()
            timed = completions[0].info.get("seconds") if completions else None
            yield puzzles[index], completions, now - last if timed is None else timed
            last = now
        return
    batch_size = max(1, int(solver.batch_size or 1))
    for lo in range(0, len(puzzles), batch_size):
        batch = puzzles[lo : lo + batch_size]
        start = time.perf_counter()
        try:
            results = solver.solve_batch(batch)
        except InputError:
            raise  # a setting is wrong: every batch would fail the same way
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            results = [[Completion(text="", error=message)] * max(1, int(solver.n or 1)) for _ in batch]
        if len(results) != len(batch):
            raise RuntimeError(f"solver {solver.name!r} returned {len(results)} results for {len(batch)} puzzles")
        seconds = (time.perf_counter() - start) / len(batch)
        for puzzle, completions in zip(batch, results, strict=True):
            yield puzzle, completions, seconds


def make_prediction(
    puzzle: Puzzle, completion: Completion, solver: Solver, sample: int, seconds: float, *, repair: bool = False
) -> Prediction:
    """The :class:`Prediction` of one completion (repaired too when ``repair``)."""
    prediction = Prediction.of(
        puzzle,
        completion.text,
        solver=solver.name,
        model=solver.model,
        seconds=round(float(seconds), 4),
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        error=completion.error,
        sample=sample,
        confidence=completion.info.get("confidence"),  # per cell, from solvers that assign
    )
    if repair:
        from cello1.solvers.repair import repair_completion

        if prediction.failed:
            prediction.set_repair(None, None)
        else:
            completion = _with_likelihood_scores(solver, puzzle, completion, prediction.assignment)
            prediction.set_repair(*repair_completion(puzzle, completion))
    return prediction


def _with_likelihood_scores(
    solver: Solver, puzzle: Puzzle, completion: Completion, assignment: list[str] | None
) -> Completion:
    """For an answer that needs repair, ask a solver that can score candidates with its
    model (e.g. ``hf``) for a likelihood matrix.
    """
    from cello1.solvers.repair import is_permutation

    if (
        completion.scores is not None
        or is_permutation(assignment, puzzle)
        or not solver.supports(Ability.CANDIDATE_SCORES)
    ):
        return completion
    scores = solver.candidate_scores(puzzle, completion)
    return replace(completion, scores=scores, info={**completion.info, "scores_from": "likelihood"})


class _Progress:
    """tqdm bar in puzzles/s with the generated tokens/s as a postfix."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, unit="puzzle", disable=not enabled or total == 0, dynamic_ncols=True)
        self._tokens = 0
        self._errors = 0
        self._start = time.perf_counter()

    def update(self, completions: list[Completion]) -> None:
        self._tokens += sum(c.completion_tokens or 0 for c in completions)
        self._errors += sum(c.error is not None for c in completions)
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        postfix: dict[str, Any] = {}
        if self._tokens:  # non-LLM solvers count no tokens
            postfix["tok/s"] = f"{self._tokens / elapsed:.1f}"
        if self._errors:
            postfix["errors"] = self._errors
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


__all__ = [
    "OutputLock",
    "RunResult",
    "check_prediction_path",
    "content_hash",
    "load_puzzles",
    "make_prediction",
    "parse_shard",
    "read_predictions",
    "run_options",
    "select_puzzles",
    "shard_of",
    "solve",
]
