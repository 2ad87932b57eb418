"""The resumable runner: puzzles + any solver -> one JSONL prediction record per sample.

    preds = solve("test.jsonl", "hf", "pred.jsonl", model="HuggingFaceTB/SmolLM2-135M-Instruct")

Guarantees (``out`` given):

* every finished record is appended, flushed and fsync'ed at once, so Ctrl-C or a kill
  loses nothing already finished;
* re-running the same call skips ``(id, sample)`` pairs already finished without error
  and retries the ones that failed;
* the file never holds two records for one ``(id, sample)``: at start, if the file has
  records to retry, duplicates (written by older tools) or a truncated last line (a kill
  mid-write), it is first rewritten atomically with only the records that stay, so new
  records are only ever appended for pairs that are not in the file.

Each line is a :class:`~cello1.prediction.Prediction` record: ``id``, ``answer`` (gold
string or null), ``prediction`` (raw text), ``assignment`` (strictly parsed labels or
null), ``solver``, ``model``, ``seconds``, ``prompt_tokens``, ``completion_tokens``,
``error``, ``sample`` and the puzzle's ``n``, ``tissue``, ``disease``, ``source``,
``donor``; with ``repair=True`` also ``repaired_assignment`` and ``repair_method``
(``prediction``/``assignment`` untouched).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.io import atomic_path, read_puzzles
from cello1.prediction import Prediction
from cello1.puzzle import Puzzle
from cello1.solvers import get_solver
from cello1.solvers.base import Ability, Completion, Solver

Key = tuple[str, int]


# ---- public API --------------------------------------------------------------------------


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
) -> list[Prediction]:
    """Solve puzzles with any solver; returns the predictions of this run's puzzles in input
    order (including ones finished by an earlier run of the same ``out`` file).

    ``shard=(i, n)`` (or ``"i/n"``) keeps the puzzles whose id hashes to ``i`` of ``n``
    (deterministic, independent of file order); ``limit`` keeps the first puzzles (before
    sharding). ``solver_options`` go to the solver's constructor when ``solver`` is a name.
    """
    puzzle_list = select_puzzles(load_puzzles(puzzles), shard=shard, limit=limit)
    owns_solver = isinstance(solver, str)
    if owns_solver:
        solver = get_solver(solver, **solver_options)
    elif solver_options:
        raise InputError(f"options {sorted(solver_options)} only apply when the solver is given by name")
    try:
        return _run(puzzle_list, solver, out, repair=repair, progress=progress)
    finally:
        if owns_solver:
            solver.close()


def load_puzzles(puzzles: list[Puzzle] | str | os.PathLike) -> list[Puzzle]:
    """Puzzles from a file or a list of :class:`Puzzle`."""
    if isinstance(puzzles, str | os.PathLike):
        return read_puzzles(puzzles)
    puzzles = list(puzzles)
    if not all(isinstance(p, Puzzle) for p in puzzles):
        raise InputError("puzzles must be a list of cello1.Puzzle or a path to a puzzle file")
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


def select_puzzles(puzzles: list[Puzzle], *, shard: Any = None, limit: int | None = None) -> list[Puzzle]:
    """The first ``limit`` puzzles, then those of shard ``i/n``; ids must be unique."""
    ids = [p.id for p in puzzles]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"puzzle id {dup!r} occurs more than once; ids must be unique to resume runs")
    if limit is not None:
        if limit < 0:
            raise InputError(f"{{limit}} must be >= 0, not {limit}", params=["limit"])
        puzzles = puzzles[:limit]
    parsed = parse_shard(shard)
    if parsed is not None:
        i, n = parsed
        puzzles = [p for p in puzzles if shard_of(p.id, n) == i]
    return puzzles


def read_predictions(path: str | os.PathLike) -> tuple[dict[Key, Prediction], bool]:
    """Existing predictions keyed by ``(id, sample)``, the latest line winning, and whether
    the file needs compaction (duplicates or unreadable lines such as a truncated tail).
    """
    path = Path(path)
    records: dict[Key, Prediction] = {}
    dirty = False
    if not path.exists():
        return records, dirty
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        dirty = True  # killed mid-write: the last line is cut
    lines = raw.decode("utf-8", errors="replace").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = Prediction.from_record(json.loads(line))
            key = rec.key
        except (json.JSONDecodeError, TypeError, ValueError):
            if lineno < len(lines):
                print(f"warning: {path}:{lineno}: unreadable line dropped", file=sys.stderr)
            dirty = True
            continue
        dirty = dirty or key in records
        records[key] = rec
    return records, dirty


# ---- the run -----------------------------------------------------------------------------


def _run(
    puzzles: list[Puzzle], solver: Solver, out: str | os.PathLike | None, *, repair: bool, progress: bool
) -> list[Prediction]:
    n_samples = max(1, int(solver.n or 1))
    done: dict[Key, Prediction] = {}
    writer = None
    if out is not None:
        done, writer = _open_output(Path(out), puzzles, solver, n_samples, repair=repair)
    # transductive solvers (--transductive) see all of this run's puzzles first, so a
    # resumed run answers the pending ones exactly as an uninterrupted run would
    solver.prepare(puzzles)
    pending = [p for p in puzzles if any(_needs_run(done.get((p.id, s))) for s in range(n_samples))]
    fresh: dict[Key, Prediction] = {}
    bar = _Progress(len(pending), progress)
    try:
        for puzzle, completions, seconds in _iter_completions(solver, pending):
            for sample, completion in enumerate(completions):
                key = (puzzle.id, sample)
                if not _needs_run(done.get(key)):
                    continue  # finished by an earlier run; keep that record
                rec = make_prediction(puzzle, completion, solver, sample, seconds, repair=repair)
                if writer is not None:
                    writer.write(rec)
                fresh[key] = rec
            bar.update(completions)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    merged = {**done, **fresh}
    return [merged[(p.id, s)] for p in puzzles for s in range(n_samples) if (p.id, s) in merged]


def _needs_run(record: Prediction | None) -> bool:
    return record is None or record.failed


def _open_output(
    path: Path, puzzles: list[Puzzle], solver: Solver, n_samples: int, *, repair: bool
) -> tuple[dict[Key, Prediction], _Appender]:
    """Read what an earlier run finished; drop records this run will redo; compact if needed."""
    if path.is_dir():
        raise InputError(f"{{out}}={path} is a folder; give a file name such as {path / 'pred.jsonl'}", params=["out"])
    existing, dirty = read_predictions(path)
    wanted = {(p.id, s) for p in puzzles for s in range(n_samples)}
    _check_same_solver(path, [rec for k, rec in existing.items() if k in wanted], solver)
    retry = {k for k, rec in existing.items() if k in wanted and _needs_run(rec)}
    kept = {k: rec for k, rec in existing.items() if k not in retry}
    if repair:
        dirty = _add_missing_repairs(kept, {p.id: p for p in puzzles}) or dirty
    if dirty or retry:
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for rec in kept.values():
                fh.write(json.dumps(rec.to_record(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return {k: rec for k, rec in kept.items() if k in wanted}, _Appender(path)


def _check_same_solver(path: Path, records: list[Prediction], solver: Solver) -> None:
    """Resuming into a file written by another solver or model would mix two runs."""
    for rec in records:
        if (rec.solver, rec.model) != (solver.name, solver.model):
            raise InputError(
                f"{path} already holds predictions of solver {rec.solver!r} (model {rec.model!r}), "
                f"not {solver.name!r} (model {solver.model!r}); write to another {{out}} file",
                params=["out"],
            )


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


class _Appender:
    """Append-only JSONL writer that makes each record durable before returning."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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


__all__ = ["load_puzzles", "make_prediction", "parse_shard", "read_predictions", "select_puzzles", "shard_of", "solve"]
