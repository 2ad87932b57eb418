"""Non-LLM solvers (random, markers, reference) on real puzzles from the embedded data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.puzzle import Puzzle
from cello1.scoring import evaluate, is_valid_format, parse_prediction
from cello1.solvers import get_solver
from cello1.solvers.markers import MarkerSolver
from cello1.solvers.matrix import profile_score_matrix
from cello1.solvers.random_solver import RandomSolver
from cello1.solvers.reference import ReferenceSolver
from cello1.solvers.run import solve

SEEDS = (0, 1, 2)


@pytest.fixture(scope="session")
def builds():
    """Three default builds (default split) of the embedded data: ~54 test puzzles, N 8–10."""
    from cello1.data import build_puzzles, pbmc68k_reduced

    adata = pbmc68k_reduced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [build_puzzles(adata, label_key="bulk_labels", seed=seed) for seed in SEEDS]


def _metrics(builds, solver: str, **options) -> dict:
    records = []
    for build in builds:
        opts = dict(options)
        if solver == "reference":
            opts["train"] = build.train
        records += solve(build.test, solver, progress=False, **opts)
    return evaluate(records, bootstrap=0, by=False)


@pytest.fixture(scope="session")
def random_metrics(builds):
    return _metrics(builds, "random")


@pytest.mark.parametrize("solver", ["markers", "reference"])
def test_informed_solvers_beat_random_by_a_clear_margin(builds, random_metrics, solver):
    m = _metrics(builds, solver)
    assert m["n_puzzles"] == sum(len(b.test) for b in builds) >= 40
    assert random_metrics["cell_accuracy"] < 0.2 and random_metrics["batch_accuracy"] < 0.05
    assert m["cell_accuracy"] >= random_metrics["cell_accuracy"] + 0.4, m
    assert m["batch_accuracy"] >= random_metrics["batch_accuracy"] + 0.1, m
    assert m["format_rate"] == 1.0 and m["uniqueness"] == 1.0


@pytest.mark.parametrize("solver", ["random", "markers", "reference"])
def test_hungarian_answers_are_permutations_in_strict_format(builds, solver):
    build = builds[0]
    options = {"train": build.train} if solver == "reference" else {}
    s = get_solver(solver, **options)
    for puzzle, (completion,) in zip(build.test, s.solve_batch(build.test), strict=True):
        assert is_valid_format(completion.text)
        labels = parse_prediction(completion.text)
        assert sorted(labels) == sorted(puzzle.candidates)
        think = completion.text.split("</think>")[0]
        assert all(f"Cell {i}:" in think for i in range(1, puzzle.n + 1))  # evidence per cell
        assert np.asarray(completion.scores).shape == (puzzle.n, len(puzzle.candidates))


@pytest.mark.parametrize("solver", ["markers", "reference"])
def test_assignment_none_is_independent_argmax(builds, solver):
    m_none = _metrics(builds, solver, assignment="none")
    assert m_none["format_rate"] == 1.0
    assert m_none["uniqueness"] < 1.0  # labels repeat without the one-to-one constraint
    m_hung = _metrics(builds, solver)
    assert m_hung["batch_accuracy"] >= m_none["batch_accuracy"]
    build = builds[0]
    s = get_solver(solver, assignment="none", **({"train": build.train} if solver == "reference" else {}))
    for puzzle, (completion,) in zip(build.test, s.solve_batch(build.test), strict=True):
        best = np.argmax(np.asarray(completion.scores), axis=1)
        assert parse_prediction(completion.text) == [puzzle.candidates[j] for j in best]


def test_random_is_seeded_and_order_independent(builds):
    puzzles = builds[0].test
    a = [c[0].text for c in RandomSolver(seed=1).solve_batch(puzzles)]
    b = [c[0].text for c in RandomSolver(seed=1).solve_batch(puzzles[::-1])][::-1]
    c = [c[0].text for c in RandomSolver(seed=2).solve_batch(puzzles)]
    assert a == b and a != c
    two = RandomSolver(seed=1, n=2).solve_batch(puzzles[:1])[0]
    assert len(two) == 2 and two[0].text == a[0] and two[1].text != two[0].text


def test_rectangular_puzzles(builds):
    cells = builds[0].test[0].cells
    labels = builds[0].test[0].answer
    few_cells = Puzzle(id="r1", context="", cells=cells[:3], candidates=sorted(labels))
    many_cells = Puzzle(id="r2", context="", cells=cells[:6], candidates=sorted(labels[:3]))
    for solver in (MarkerSolver(), ReferenceSolver(train=builds[0].train), RandomSolver()):
        for puzzle in (few_cells, many_cells):
            scores = solver.score_matrix(puzzle)
            assert scores.shape == (puzzle.n, len(puzzle.candidates))
            answer = parse_prediction(solver.solve_one(puzzle).text)
            assert len(answer) == puzzle.n and set(answer) <= set(puzzle.candidates)
        # 3 cells, all candidates: distinct labels; 6 cells, 3 candidates: all 3 used
        assert len(set(parse_prediction(solver.solve_one(few_cells).text))) == 3
        assert set(parse_prediction(solver.solve_one(many_cells).text)) == set(many_cells.candidates)


def test_specificity_shared_markers_carry_no_evidence():
    cells = [["A", "S"], ["B", "S"]]
    scores = profile_score_matrix(cells, [{"A": 1.0, "S": 1.0}, {"B": 1.0, "S": 1.0}])
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]
    # an unmapped candidate (empty profile) gets a neutral column
    scores = profile_score_matrix(cells, [{"A": 1.0}, {}])
    assert np.all(scores[:, 1] == 0)


def test_unmapped_candidate_takes_the_leftover_cell(builds):
    puzzle = builds[0].test[0]
    odd = "zorblax widget"
    labels = [odd if lab == puzzle.answer[0] else lab for lab in puzzle.answer]
    changed = Puzzle(id="u", context="", cells=puzzle.cells, candidates=sorted(labels), answer=labels)
    completion = MarkerSolver().solve_one(changed)
    assert is_valid_format(completion.text)
    assert "not in the Cell Ontology marker base" in completion.text


def test_reference_labels_case_insensitive_and_unseen_labels_fall_back(builds):
    build = builds[0]
    lowered = [
        Puzzle(
            id=p.id,
            context=p.context,
            cells=p.cells,
            candidates=[c.lower() for c in p.candidates],
            answer=[a.lower() for a in p.answer],
        )
        for p in build.train
    ]
    solver = ReferenceSolver(train=lowered)
    assert set(solver.profiles) == {a.lower() for p in build.train for a in p.answer}
    puzzle = build.test[0]
    assert solver.profile(puzzle.candidates[0])[1] == "reference"
    assert solver.profile("classical monocyte")[1] == "markers"  # unseen in training → CL markers
    assert solver.profile("zorblax")[1] == "none"


def test_reference_from_file_and_errors(builds, tmp_path):
    path = tmp_path / "train.jsonl"
    write_puzzles(path, builds[0].train)
    solver = get_solver("reference", train=str(path))
    assert solver.settings()["n_types"] == 10
    with pytest.raises(InputError, match="train"):
        ReferenceSolver()
    with pytest.raises(InputError, match="no such file"):
        ReferenceSolver(train=tmp_path / "missing.jsonl")
    unlabeled = [Puzzle(id="x", context="", cells=[["A"]], candidates=["t"])]
    with pytest.raises(ValueError, match="no gold answers"):
        ReferenceSolver(train=unlabeled)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("markers", {"model": "gpt"}, "does not support option"),
        ("markers", {"assignment": "greedy"}, "assignment must be"),
        ("markers", {"n": 3}, "deterministic"),
        ("random", {"temperature": 0.7}, "does not support option"),
        ("reference", {"seed": 1}, "does not support option"),
    ],
)
def test_bad_options_raise_clear_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        get_solver(name, **options)


def test_cli_solve_reference_with_assignment_none(builds, tmp_path):
    from typer.testing import CliRunner

    from cello1.cli import app

    write_puzzles(tmp_path / "train.jsonl", builds[0].train)
    write_puzzles(tmp_path / "test.jsonl", builds[0].test)
    out = tmp_path / "pred.jsonl"
    args = ["solve", str(tmp_path / "test.jsonl"), "-o", str(out), "--solver", "reference"]
    result = CliRunner().invoke(app, [*args, "--train", str(tmp_path / "train.jsonl"), "--assignment", "none"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(builds[0].test)
    assert all(r["solver"] == "reference" and r["error"] is None and r["assignment"] for r in records)
    missing = CliRunner().invoke(app, [*args[:3], str(tmp_path / "p2.jsonl"), "--solver", "reference"])
    assert missing.exit_code == 2 and "--train" in missing.output
    assert not (tmp_path / "p2.jsonl").exists()  # no half-written output
