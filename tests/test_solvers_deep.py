"""Deep marker profiles, the donor-matched malignant profile, the fitted reference, the
ensemble, per-cell confidence and transductive solving, on official CellPuzzles puzzles
(``tests/fixtures/cellpuzzles_official_train_sample.jsonl``, 39 train-split puzzles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from scipy import sparse
from scipy.stats import rankdata

from cello1.errors import InputError
from cello1.genes import normalise_gene
from cello1.io import read_puzzles, write_puzzles
from cello1.knowledge import Donor, knowledge_base, markers_for, match_cancer_types, parse_donor, profile_for
from cello1.prediction import Prediction
from cello1.puzzle import Puzzle
from cello1.scoring import evaluate, is_valid_format, parse_prediction
from cello1.solvers import get_solver
from cello1.solvers.base import Ability, Completion, Solver
from cello1.solvers.ensemble import EnsembleSolver, parse_weights
from cello1.solvers.markers import MarkerSolver
from cello1.solvers.matrix import assignment_confidence, cell_matrix, combine_columns
from cello1.solvers.reference import OTHER_TISSUE_SUPPORT, ReferenceSolver
from cello1.solvers.run import solve
from cello1.solvers.scores import dense_block
from cello1.training.distill import distill, select_traces
from cello1.vocabulary import label_key

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "cellpuzzles_official_train_sample.jsonl"


@pytest.fixture(scope="module")
def official() -> list[Puzzle]:
    return read_puzzles(SAMPLE)


def _correct(records: list[Prediction]) -> np.ndarray:
    return np.concatenate(
        [
            [label_key(a) == label_key(b) for a, b in zip(r.assignment, r.answer.split(" | "), strict=True)]
            for r in records
        ]
    )


def _auroc(confidence: np.ndarray, correct: np.ndarray) -> float:
    ranks = rankdata(confidence)
    pos, neg = correct.sum(), (~correct).sum()
    return float((ranks[correct].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _context(disease: str | None, tissue: str = "lung") -> str:
    said = (
        "The patient is healthy with no diagnosed disease."
        if disease is None
        else f"The patient has been diagnosed with {disease}."
    )
    return f"The cell is from a male, originating from the {tissue}. {said}"


# ---- knowledge: deep profiles ------------------------------------------------------------


def test_deep_profiles_extend_the_classic_marker_lists():
    kb = knowledge_base()
    classic = markers_for("classical monocyte")
    deep = profile_for("classical monocyte")
    assert len(classic) == 40 and 500 <= len(deep) <= 1000
    assert deep[:40] == classic  # the classic list is the head of the deep profile
    weights = [w for _, w in deep]
    assert weights[0] == 1.0 and weights == sorted(weights, reverse=True) and min(weights) > 0
    assert all(g == g.upper() for g, _ in deep)  # stored as cello1 compares genes
    assert "linear" in kb.about["markers"]["kept"] and "MIT" in kb.about["cancer"]["source"]
    assert len(kb.cancer_names) > 100 and kb.cancer_names["lung_adenocarcinoma"] == "Lung Adenocarcinoma"
    assert len(kb.cancer_profile("lung_adenocarcinoma")) >= 10


# ---- donor context and cancer matching -----------------------------------------------------

NAMES = {
    "lung_adenocarcinoma": "Lung Adenocarcinoma",
    "lung_carcinoma": "Lung Carcinoma",
    "lung_small_cell_carcinoma": "Lung Small Cell Carcinoma",
    "lung_non_small_cell_carcinoma": "Lung Non-Small Cell Carcinoma",
    "lung_squamous_cell_carcinoma": "Lung Squamous Cell Carcinoma",
    "breast_carcinoma": "Breast Carcinoma",
    "melanoma": "Melanoma",
    "cancer": "Neoplasm",
}


@pytest.mark.parametrize(
    ("disease", "tissue", "expected"),
    [
        ("lung adenocarcinoma", "lung", ["lung_adenocarcinoma"]),
        ("lung adenocarcinoma", "lymph node", ["lung_adenocarcinoma"]),
        ("squamous cell lung carcinoma", "lung", ["lung_squamous_cell_carcinoma"]),
        ("non-small cell lung carcinoma", "lung", ["lung_non_small_cell_carcinoma"]),
        ("lung large cell carcinoma", "lung", ["lung_carcinoma"]),  # never "small cell"
        ("pleomorphic carcinoma", "lung", ["lung_carcinoma"]),  # the site comes from the tissue
        ("breast cancer", "lung", ["breast_carcinoma"]),  # the disease beats the tissue
        ("melanoma", "skin", ["melanoma"]),
        ("chronic obstructive pulmonary disease", "lung", []),
        (None, "lung", []),
        ("squamous cell carcinoma", "skin", []),  # never the pan-cancer aggregate by name
    ],
)
def test_cancer_types_match_the_donors_disease(disease, tissue, expected):
    assert match_cancer_types(parse_donor(_context(disease, tissue)), NAMES) == expected


def test_donor_from_context_and_fields():
    text = "The cell is from a female, originating from the Lung. The lung condition is described as IPF."
    assert parse_donor(text) == Donor("lung", ("IPF",))
    assert parse_donor("The cell originates from the ileum.").tissue == "ileum"  # builder wording
    assert parse_donor(text, tissue="blood", disease="melanoma") == Donor("blood", ("melanoma",))


# ---- markers -------------------------------------------------------------------------------


def test_markers_solve_official_puzzles_well_with_confidence_that_ranks_errors(official):
    records = solve(official, "markers", progress=False)
    m = evaluate(records, bootstrap=0, by=False)
    assert m["format_rate"] == 1.0 and m["uniqueness"] == 1.0
    assert m["cell_accuracy"] >= 0.85 and m["batch_accuracy"] >= 0.5, m
    assert all(len(r.confidence) == r.n and min(r.confidence) >= 0 for r in records)
    correct = _correct(records)
    confidence = np.concatenate([r.confidence for r in records])
    assert _auroc(confidence, correct) > 0.75
    assert correct[confidence >= 1].mean() > correct.mean()  # confident cells are right more often
    think = records[0].prediction.split("</think>")[0]
    assert "confidence" in think and all(f"Cell {i}:" in think for i in range(1, records[0].n + 1))


def test_malignant_cell_uses_the_donors_cancer(official):
    luad = next(p for p in official if "malignant cell" in p.candidates and "adenocarcinoma" in p.context)
    solver = MarkerSolver()
    assert solver.cancer_types(luad) == ["lung_adenocarcinoma"]
    assert solver.profile("malignant cell", luad) == knowledge_base().cancer_profile("lung_adenocarcinoma")
    assert "Lung Adenocarcinoma" in solver.solve_one(luad).text
    healthy = Puzzle(id="h", context=_context(None), cells=luad.cells, candidates=luad.candidates)
    assert solver.cancer_types(healthy) == []  # fallback: the mean over all cancer types
    assert solver.profile("malignant cell", healthy) == knowledge_base().profile("CL:0001064")
    assert MarkerSolver(malignant="mean").cancer_types(luad) == []
    with pytest.raises(InputError, match="malignant"):
        MarkerSolver(malignant="nearest")


def test_specificity_weights_genes_by_how_few_cells_list_them():
    cells = [["A", "S"], ["B", "S"], ["C", "S", "A"]]
    index, X = cell_matrix(cells)
    index_s, Xs = cell_matrix(cells, specificity=True)
    assert index == index_s
    assert np.all(Xs[:, index["S"]] == 0)  # listed by every cell: no evidence
    assert Xs[0, index["A"]] == pytest.approx(X[0, index["A"]] * np.log(3 / 2))
    assert Xs[1, index["B"]] == pytest.approx(X[1, index["B"]] * np.log(3))
    assert MarkerSolver(specificity=True).settings()["specificity"] is True


# ---- confidence ---------------------------------------------------------------------------


def test_confidence_is_the_regret_of_each_label():
    S = np.array([[3.0, 0.0], [0.0, 1.0]])
    assert assignment_confidence(S, [0, 1]) == [4.0, 4.0]  # 4 - 0: the swap loses 4
    assert assignment_confidence(np.ones((2, 2)), [0, 1]) == [0.0, 0.0]  # a tie
    # without the one-to-one rule it is the margin over the row's next best
    assert assignment_confidence(S, [0, 1], one_to_one=False) == [3.0, 1.0]
    # rectangular: 3 cells, 2 candidates; the left-over cell gets its row margin
    R = np.array([[2.0, 0.0], [0.0, 2.0], [1.5, 0.5]])
    conf = assignment_confidence(R, [0, 1, 0])
    assert conf[2] == pytest.approx(1.0) and conf[0] == pytest.approx(0.5)
    assert assignment_confidence(np.ones((1, 1)), [0]) == [0.0]


def test_prediction_records_carry_confidence_only_when_present(official):
    (completion,) = MarkerSolver().solve_batch(official[:1])[0]
    assert len(completion.info["confidence"]) == official[0].n
    rec = Prediction.of(official[0], completion.text, confidence=completion.info["confidence"])
    record = rec.to_record()
    assert record["confidence"] == completion.info["confidence"]
    assert Prediction.from_record(json.loads(json.dumps(record))).confidence == record["confidence"]
    assert "confidence" not in Prediction.of(official[0], completion.text).to_record()


# ---- reference -----------------------------------------------------------------------------


def test_reference_fit_counts_distinct_cells_and_matches_synonyms(official):
    train = official[:20]
    solver = ReferenceSolver(train=train + train[:5])  # repeated puzzles count once
    cells = {(label_key(a), tuple(c)) for p in train for c, a in zip(p.cells, p.answer, strict=True)}
    assert int(solver.n_cells.sum()) == len(cells)
    for label in ("club cell", "classical monocyte"):
        mine = [set(genes) for lab, genes in cells if lab == label]
        counted = {}
        for genes in mine:
            for gene in {normalise_gene(g) for g in genes}:  # profiles are keyed by normalised symbols
                counted[gene] = counted.get(gene, 0) + 1
        expected = {gene: n / len(mine) for gene, n in counted.items()}
        assert solver.profiles[label] == pytest.approx(expected)
    # a synonym of a trained label (same Cell Ontology term) reuses its profile
    assert solver.profile("Clara cell") == solver.profile("club cell")
    assert solver.profile("Clara cell")[1] == "reference"
    assert solver.profile("hepatocyte")[1] == "markers"  # unseen: deep marker profile as frequencies
    assert ReferenceSolver(train=train, fallback="none").profile("hepatocyte")[1] == "none"


def test_reference_column_support_follows_the_tissue(official):
    lung = [p for p in official if parse_donor(p.context).tissue == "lung"]
    solver = ReferenceSolver(train=lung)
    puzzle = lung[0]
    assert np.all(solver.column_support(puzzle) == 1.0)
    elsewhere = Puzzle(id="x", context=_context(None, "ileum"), cells=puzzle.cells, candidates=puzzle.candidates)
    assert np.allclose(solver.column_support(elsewhere), OTHER_TISSUE_SUPPORT)
    unseen = Puzzle(
        id="y", context=puzzle.context, cells=puzzle.cells[:2], candidates=["zorblax", puzzle.candidates[0]]
    )
    assert solver.column_support(unseen).tolist() == [0.0, 1.0]


# ---- ensemble ------------------------------------------------------------------------------


def test_ensemble_of_markers_and_reference_on_held_out_official_puzzles(official):
    fit, held = official[::2], official[1::2]
    assert not {tuple(c) for p in fit for c in p.cells} & {tuple(c) for p in held for c in p.cells}
    ensemble = evaluate(solve(held, "ensemble", progress=False, train=fit), bootstrap=0, by=False)
    reference = evaluate(solve(held, "reference", progress=False, train=fit), bootstrap=0, by=False)
    assert ensemble["format_rate"] == 1.0 and ensemble["uniqueness"] == 1.0
    assert ensemble["cell_accuracy"] >= 0.85 and ensemble["cell_accuracy"] > reference["cell_accuracy"]


def test_ensemble_routes_options_to_its_members(official):
    solver = get_solver("ensemble", members="markers,reference", weights="1,0.5", train=official[:10], specificity=True)
    markers, reference = solver.members
    assert markers.specificity is True and reference.settings()["n_types"] > 5
    assert reference.fallback == "none"  # unseen types come from the markers
    assert solver.weights == [1.0, 0.5] and solver.model == "markers:1+reference:0.5"
    settings = solver.settings()
    assert [m["solver"] for m in settings["members"]] == ["markers", "reference"]
    text = solver.solve_one(official[20]).text
    assert "markers ×1, reference ×0.5" in text and "markers: " in text and "reference: " in text
    with pytest.raises(InputError, match="no ensemble member"):
        get_solver("ensemble", members="markers", seed=3)
    with pytest.raises(InputError, match="train"):
        get_solver("ensemble")  # the reference member needs training puzzles


@pytest.mark.parametrize(
    ("weights", "match"),
    [("1", "one weight per member"), ("1,x", "numbers"), ("0,0", "not all 0"), ("-1,1", "non-negative")],
)
def test_ensemble_weights_are_checked(weights, match):
    with pytest.raises(InputError, match=match):
        parse_weights(weights, 2)


class ConstantScores(Solver):
    """A stand-in for a likelihood member (e.g. an LLM): a fixed score matrix."""

    name = "constant"
    abilities: ClassVar[frozenset[Ability]] = frozenset({Ability.SCORE_MATRIX})

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        scores = np.zeros((puzzle.n, len(puzzle.candidates)))
        scores[np.arange(puzzle.n), self.order] = 100.0  # any scale: the ensemble standardises
        return scores

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        return Completion(text="")


def test_ensemble_takes_any_score_matrix_member(official):
    puzzle = official[0]
    order = list(range(puzzle.n))[::-1]
    only_it = EnsembleSolver(members=["markers", ConstantScores(order)], weights=[0, 1])
    assert parse_prediction(only_it.solve_one(puzzle).text) == [puzzle.candidates[c] for c in order]
    both = EnsembleSolver(members=["markers", ConstantScores(order)], weights=[1, 1e-6])
    assert parse_prediction(both.solve_one(puzzle).text) == parse_prediction(MarkerSolver().solve_one(puzzle).text)

    class NoScores(Solver):
        name = "text-only"

        def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
            return Completion(text="")

    with pytest.raises(InputError, match="gives no score matrix"):
        EnsembleSolver(members=["markers", NoScores()])


def test_dense_block_equals_scipy_indexing():
    rng = np.random.default_rng(0)
    matrix = sparse.random(30, 200, density=0.1, format="csr", random_state=1)
    rows, columns = [3, 0, 17], list(rng.choice(200, 40, replace=False))
    assert np.array_equal(dense_block(matrix, rows, columns), matrix[rows][:, columns].toarray())


def test_combine_columns_lets_members_sit_out_columns():
    M = np.array([[1.0, -1.0], [-1.0, 1.0]])
    R = np.array([[5.0, 7.0], [-5.0, -7.0]])
    S = combine_columns([M, R], [1.0, np.array([1.0, 0.0])], [None, None])
    assert S[:, 0] == pytest.approx((M[:, 0] + R[:, 0]) / 2)
    assert S[:, 1] == pytest.approx(M[:, 1])  # the second member claims nothing for column 1


# ---- transductive --------------------------------------------------------------------------


def test_transductive_answers_say_so_and_never_learn_from_their_own_cells(official):
    solver = MarkerSolver(transductive=True)
    solver.prepare(official)
    scores = solver.solving_scores(official[0])
    again = MarkerSolver(transductive=True)
    again.prepare(
        official
        + [Puzzle(id="copy", context=official[0].context, cells=official[0].cells, candidates=official[0].candidates)]
    )
    assert np.allclose(again.solving_scores(official[0]), scores)  # a copy of the puzzle adds nothing
    assert not np.allclose(scores, MarkerSolver().score_matrix(official[0]))  # the other puzzles do
    completion = solver.solve_one(official[0])
    assert completion.info["transductive"] is True
    assert "Transductive mode (not per-puzzle zero-shot)" in completion.text and is_valid_format(completion.text)
    with pytest.raises(InputError, match="whole set"):
        MarkerSolver(transductive=True).solve_one(official[0])
    # solve_batch learns from the puzzles it is given when it has not seen them all
    fresh = MarkerSolver(transductive=True)
    fresh.solve_batch(official[:3])
    assert [c.text for (c,) in fresh.solve_batch(official[:1])] == [fresh.solve_one(official[0]).text]
    assert fresh.solve_batch(official)[0][0].text == completion.text


def test_transductive_runs_resume_to_the_same_answers(official, tmp_path):
    out = tmp_path / "pred.jsonl"
    first = solve(official, "markers", out, progress=False, transductive=True)
    assert {r.solver for r in first} == {"markers+transductive"}
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:10]) + "\n")  # as if killed after 10 puzzles
    resumed = solve(official, "markers", out, progress=False, transductive=True)
    assert [r.prediction for r in resumed] == [r.prediction for r in first]
    with pytest.raises(InputError, match="already holds predictions"):
        solve(official, "markers", out, progress=False)  # a zero-shot run must not mix in


# ---- command line and distillation -----------------------------------------------------------


def test_cli_solve_ensemble_and_transductive(official, tmp_path):
    from typer.testing import CliRunner

    from cello1.cli import app

    write_puzzles(tmp_path / "train.jsonl", official[::2])
    write_puzzles(tmp_path / "test.jsonl", official[1::2])
    out = tmp_path / "pred.jsonl"
    args = ["solve", str(tmp_path / "test.jsonl"), "-o", str(out), "--no-progress"]
    ensemble = [*args, "--solver", "ensemble", "--members", "markers,reference", "--weights", "1,0.5"]
    result = CliRunner().invoke(app, [*ensemble, "--train", str(tmp_path / "train.jsonl"), "--specificity"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(official[1::2])
    assert all(r["solver"] == "ensemble" and r["model"] == "markers:1+reference:0.5" for r in records)
    assert all(len(r["confidence"]) == r["n"] for r in records)
    bad = CliRunner().invoke(app, [*args[:3], str(tmp_path / "p2.jsonl"), "--solver", "ensemble", "--weights", "1"])
    assert bad.exit_code == 2 and "--weights" in bad.output and not (tmp_path / "p2.jsonl").exists()
    out3 = tmp_path / "p3.jsonl"
    result = CliRunner().invoke(app, [*args[:3], str(out3), "--no-progress", "--transductive"])
    assert result.exit_code == 0, result.output
    assert all("Transductive" in json.loads(line)["prediction"] for line in out3.read_text().splitlines())


def test_distillation_can_require_confidence(official, tmp_path):
    plain = distill(official, "markers", tmp_path / "all.jsonl", progress=False)
    strict = distill(official, "markers", tmp_path / "sure.jsonl", progress=False, min_confidence=0.5)
    assert 0 < len(strict.kept) < len(plain.kept)
    assert strict.low_confidence == len(plain.kept) - len(strict.kept)
    records = [Prediction.from_record(json.loads(line)) for line in strict.traces_path.read_text().splitlines()]
    kept = {p.id for p in strict.kept}
    assert all(min(r.confidence) >= 0.5 for r in records if r.id in kept)
    from typer.testing import CliRunner

    from cello1.cli import app

    write_puzzles(tmp_path / "puzzles.jsonl", official)
    args = ["distill", str(tmp_path / "puzzles.jsonl"), "-o", str(tmp_path / "cli.jsonl"), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--min-confidence", "0.5"])
    assert result.exit_code == 0, result.output
    assert f"{strict.low_confidence} correct but below the confidence threshold" in result.output
    assert len(read_puzzles(tmp_path / "cli.jsonl")) == len(strict.kept)
    no_confidence = [Prediction.of(official[0], "<think>x</think>\n<answer>" + official[0].answer_str + "</answer>")]
    with pytest.raises(InputError, match="min_confidence"):
        select_traces(official[:1], no_confidence, min_confidence=0.5)
