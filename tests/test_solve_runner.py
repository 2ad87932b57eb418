"""The resumable runner and ``--repair`` with a stand-in solver (no LLM needed)."""

from __future__ import annotations

import json

import pytest

from cello1.errors import InputError
from cello1.puzzle import Puzzle, parse_record
from cello1.solvers.base import Completion, Solver
from cello1.solvers.repair import is_permutation, repair_completion
from cello1.solvers.run import read_predictions, select_puzzles, shard_of, solve

FIELDS = {
    "id", "answer", "prediction", "assignment", "solver", "model", "seconds", "prompt_tokens",
    "completion_tokens", "error", "sample", "n", "tissue", "disease", "source", "donor",
    "puzzle_hash", "options",  # issue 11: what a resume checks (puzzle content, run options)
}  # fmt: skip


def make_puzzles(k: int) -> list[Puzzle]:
    cands = ["B cell", "T cell", "monocyte"]
    return [
        Puzzle(id=f"p{i}", context="ctx", cells=[["CD19"], ["CD3E"], ["CD14"]], candidates=cands,
               answer=cands, tissue="blood", donor=f"d{i % 2}", source="test")
        for i in range(k)
    ]  # fmt: skip


class EchoSolver(Solver):
    """Answers the candidates in order; fails on ids listed in ``fail``; counts calls."""

    name = "echo"

    def __init__(self, fail=(), n=1, batch_size=2, text=None):
        self.fail, self.n, self.batch_size, self.text = set(fail), n, batch_size, text
        self.seen: list[str] = []
        self.model = "echo-1"

    def solve_batch(self, puzzles):
        out = []
        for p in puzzles:
            self.seen.append(p.id)
            if p.id in self.fail:
                out.append([Completion(text="", error="boom")] * self.n)
                continue
            text = self.text or f"<think>easy</think>\n<answer>{' | '.join(p.candidates)}</answer>"
            out.append([Completion(text=text, prompt_tokens=10, completion_tokens=5) for _ in range(self.n)])
        return out


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_records_have_the_contract_fields(tmp_path):
    out = tmp_path / "pred.jsonl"
    recs = solve(make_puzzles(3), EchoSolver(), out, progress=False)
    assert [r["id"] for r in recs] == ["p0", "p1", "p2"]
    assert set(recs[0]) == FIELDS
    r = recs[0]
    assert r["answer"] == "B cell | T cell | monocyte"
    assert r["assignment"] == ["B cell", "T cell", "monocyte"]
    assert (r["solver"], r["model"], r["sample"], r["n"], r["tissue"], r["error"]) == (
        "echo",
        "echo-1",
        0,
        3,
        "blood",
        None,
    )
    assert lines(out) == recs


def test_resume_skips_finished_and_retries_errors_without_duplicates(tmp_path):
    out = tmp_path / "pred.jsonl"
    first = solve(make_puzzles(4), EchoSolver(fail={"p1", "p3"}), out, progress=False)
    assert [r["error"] for r in first] == [None, "boom", None, "boom"]
    again = EchoSolver()
    second = solve(make_puzzles(4), again, out, progress=False)
    assert sorted(again.seen) == ["p1", "p3"]  # only the failed ones were redone
    assert all(r["error"] is None for r in second)
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == ["p0", "p1", "p2", "p3"]  # no duplicates, nothing lost
    third = EchoSolver()
    solve(make_puzzles(4), third, out, progress=False)
    assert third.seen == []


def test_truncated_last_line_and_duplicates_are_compacted(tmp_path):
    out = tmp_path / "pred.jsonl"
    solve(make_puzzles(3), EchoSolver(), out, progress=False)
    good = out.read_text().splitlines()
    # an old duplicate of p0 and a cut line for p2, as a kill mid-write would leave
    out.write_text(good[0] + "\n" + good[0] + "\n" + good[1] + "\n" + good[2][:25])
    recs, dirty = read_predictions(out)
    assert dirty and set(recs) == {("p0", 0), ("p1", 0)}
    solver = EchoSolver()
    solve(make_puzzles(3), solver, out, progress=False)
    assert solver.seen == ["p2"]
    assert sorted(r["id"] for r in lines(out)) == ["p0", "p1", "p2"]


def test_samples_are_keyed_by_id_and_sample(tmp_path):
    out = tmp_path / "pred.jsonl"
    recs = solve(make_puzzles(2), EchoSolver(n=3), out, progress=False)
    assert [(r["id"], r["sample"]) for r in recs] == [("p0", 0), ("p0", 1), ("p0", 2), ("p1", 0), ("p1", 1), ("p1", 2)]
    solver = EchoSolver(n=3)
    assert len(solve(make_puzzles(2), solver, out, progress=False)) == 6 and solver.seen == []


def test_shards_partition_the_ids_deterministically():
    puzzles = make_puzzles(40)
    shards = [select_puzzles(puzzles, shard=f"{i}/3") for i in range(3)]
    ids = [p.id for s in shards for p in s]
    assert sorted(ids) == sorted(p.id for p in puzzles) and all(shards)
    assert [p.id for p in select_puzzles(list(reversed(puzzles)), shard=(1, 3))] == [p.id for p in reversed(shards[1])]
    assert shard_of("p7", 3) == shard_of("p7", 3)
    assert [p.id for p in select_puzzles(puzzles, limit=2)] == ["p0", "p1"]
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(InputError):
            select_puzzles(puzzles, shard=bad)


def test_solver_options_only_with_a_solver_name():
    with pytest.raises(InputError):
        solve(make_puzzles(1), EchoSolver(), progress=False, model="x")


def test_repair_is_recorded_separately(tmp_path):
    bad = "<think>hm</think>\n<answer>T cel | T cell | B cell</answer>"
    recs = solve(make_puzzles(1), EchoSolver(text=bad), tmp_path / "p.jsonl", repair=True, progress=False)
    r = recs[0]
    assert r["prediction"] == bad and r["assignment"] == ["T cel", "T cell", "B cell"]  # strict parse untouched
    assert r["repair_method"] == "similarity"
    # "T cell" is taken by the exact match, so the near-miss "T cel" gets the leftover
    assert r["repaired_assignment"] == ["monocyte", "T cell", "B cell"]


def test_repair_prefers_scores_and_keeps_valid_answers(official_records):
    puzzle = parse_record(official_records[1])
    n = puzzle.n
    # scores that favour the gold permutation
    gold_cols = [puzzle.candidates.index(label) for label in puzzle.answer]
    scores = [[1.0 if j == gold_cols[i] else 0.0 for j in range(n)] for i in range(n)]
    fixed, method = repair_completion(puzzle, Completion(text="no answer at all", scores=scores))
    assert (fixed, method) == (puzzle.answer, "scores")
    valid = "<think>x</think>\n<answer>" + " | ".join(puzzle.answer) + "</answer>"
    assert repair_completion(puzzle, Completion(text=valid)) == (puzzle.answer, "none")
    fixed, method = repair_completion(puzzle, Completion(text="nothing"))
    assert method == "similarity" and is_permutation(fixed, puzzle)


def test_resume_refuses_another_solver_and_adds_missing_repairs(tmp_path):
    out = tmp_path / "pred.jsonl"
    solve(make_puzzles(2), EchoSolver(), out, progress=False)
    other = EchoSolver()
    other.model = "echo-2"
    with pytest.raises(InputError, match="another out file"):
        solve(make_puzzles(2), other, out, progress=False)
    recs = solve(make_puzzles(2), EchoSolver(), out, repair=True, progress=False)
    assert all(r["repair_method"] == "none" for r in recs)
    assert all(r["repair_method"] == "none" for r in lines(out))
