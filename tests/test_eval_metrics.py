"""`evaluate`: docs/format.md §6 metrics on hand-computed examples, inputs, CIs, breakdowns, lenient."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cello1.errors import InputError
from cello1.grammar import loose_labels
from cello1.scoring import bootstrap_ci, compare, evaluate, paired_bootstrap
from cello1.scoring.lenient import lenient_assignment
from cello1.vocabulary import normalise_label

GOLD3 = "B cell | T cell | NK cell"


def wrap(answer: str) -> str:
    return f"<think>because</think>\n<answer>{answer}</answer>"


def rec(i, prediction, gold=GOLD3, **extra):
    return {"id": f"p{i}", "answer": gold, "prediction": prediction, **extra}


@pytest.fixture
def records():
    return [
        rec(0, wrap(GOLD3), tissue="blood", source="s1"),  # all right
        rec(1, wrap("T cell | B cell | NK cell"), tissue="blood", source="s1"),  # 1/3
        rec(2, "B cell | T cell | NK cell", tissue="lung", source="s2"),  # no tags: format fail
        rec(3, wrap("B cell | B cell"), gold="B cell | T cell", tissue="lung"),  # valid, repeat, 1/2
    ]


def test_paper_metrics_by_hand(records):
    r = evaluate(records, bootstrap=0)
    assert r["n_puzzles"] == 4 and r["n_cells"] == 11
    # correct cells: 3 + 1 + 0 (format fail counts all wrong) + 1 = 5 of 11 gold cells
    assert r["cell_accuracy"] == pytest.approx(5 / 11)
    assert r["batch_accuracy"] == pytest.approx(1 / 4)
    assert r["format_rate"] == pytest.approx(3 / 4)
    # uniqueness: 1, 1, 0 (invalid), 1/2
    assert r["uniqueness"] == pytest.approx(2.5 / 4)
    # words: "<think>because</think>" + ... split on whitespace
    assert r["mean_length"] == pytest.approx(np.mean([len(x["prediction"].split()) for x in records]))
    assert r["mean_reward"] == pytest.approx((1.0 + 1 / 6 - 1 - 1) / 4)
    assert r["length_unit"] == "words"
    assert "ci" not in r


def test_wrong_count_still_earns_matching_positions():
    # the metric (unlike the reward) compares position by position, as the paper's script
    r = evaluate([rec(0, wrap("B cell | T cell"))], bootstrap=0)
    assert r["cell_accuracy"] == pytest.approx(2 / 3)
    assert r["batch_accuracy"] == 0.0
    assert r["mean_reward"] == -1.0


def test_case_and_space_insensitive():
    r = evaluate([rec(0, wrap(" b CELL|t cell |Nk Cell "))], bootstrap=0)
    assert r["cell_accuracy"] == 1.0 and r["batch_accuracy"] == 1.0


def test_null_prediction_counts_as_format_failure():
    r = evaluate([rec(0, None, error="timeout"), rec(1, wrap(GOLD3))], bootstrap=0)
    assert r["format_rate"] == 0.5 and r["cell_accuracy"] == 0.5


def test_breakdowns_by_n_tissue_source(records):
    by = evaluate(records, bootstrap=0)["by"]
    assert list(by["n"]) == ["2", "3"]  # N derived from the gold
    assert by["n"]["3"]["n_puzzles"] == 3 and by["n"]["3"]["cell_accuracy"] == pytest.approx(4 / 9)
    assert by["tissue"]["lung"]["cell_accuracy"] == pytest.approx(1 / 5)
    assert set(by["source"]) == {"s1", "s2"}
    assert "disease" not in by


def test_bootstrap_ci_seeded_and_sane(records):
    a = evaluate(records * 10, bootstrap=300, seed=1)
    b = evaluate(records * 10, bootstrap=300, seed=1)
    assert a["ci"] == b["ci"]
    for key in ("cell_accuracy", "batch_accuracy", "format_rate", "uniqueness"):
        low, high = a["ci"][key]
        assert low <= a[key] <= high and low < high


def test_bootstrap_ci_ratio_of_sums_matches_loop():
    rng = np.random.default_rng(0)
    num, den = rng.integers(0, 9, 50), rng.integers(8, 10, 50)
    low, high = bootstrap_ci(num, den, resamples=2000, seed=3)
    point = num.sum() / den.sum()
    idx = rng.integers(0, 50, (2000, 50))
    ref = num[idx].sum(1) / den[idx].sum(1)
    assert low < point < high
    assert low == pytest.approx(np.quantile(ref, 0.025), abs=0.02)
    assert high == pytest.approx(np.quantile(ref, 0.975), abs=0.02)


def test_paired_bootstrap_detects_clear_difference():
    a = np.zeros(200)
    b = (np.arange(200) % 2 == 0).astype(float)
    out = paired_bootstrap(a, b, resamples=500, seed=0)
    assert out["diff"] == pytest.approx(0.5)
    assert out["ci_low"] > 0.3 and out["p_value"] < 0.01
    same = paired_bootstrap(b, b, resamples=200)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_compare_pairs_by_id_and_sample(records):
    better = [dict(r, prediction=wrap(r["answer"])) for r in records]
    results = compare([records, list(reversed(better))], names=["base", "oracle"], bootstrap=200)
    assert [r["file"] for r in results] == ["base", "oracle"]
    paired = results[1]["paired_vs_first"]
    assert paired["n_pairs"] == 4 and paired["baseline"] == "base"
    assert paired["cell_accuracy"]["diff"] == pytest.approx(1 - 5 / 11)
    assert paired["batch_accuracy"]["diff"] == pytest.approx(0.75)
    assert "paired_vs_first" not in results[0]


def test_inputs_jsonl_and_folder_of_json_with_assistant_msg(tmp_path, records):
    jsonl = tmp_path / "pred.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    assert evaluate(jsonl, bootstrap=0)["cell_accuracy"] == pytest.approx(5 / 11)
    folder = tmp_path / "orig"
    folder.mkdir()
    for r in records:  # the original repository's per-puzzle files
        (folder / f"{r['id']}.json").write_text(
            json.dumps({"assistant_msg": r["answer"], "prediction": r["prediction"]})
        )
    result = evaluate(folder, bootstrap=0)
    assert result["file"] == "orig" and result["cell_accuracy"] == pytest.approx(5 / 11)


def test_gold_from_reasoning_assistant_msg():
    r = evaluate([{"assistant_msg": wrap(GOLD3), "prediction": wrap(GOLD3)}], bootstrap=0)
    assert r["batch_accuracy"] == 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prediction": "x"}, "no gold answer"),
        ({"answer": None, "prediction": "x"}, "no gold answer"),
        ({"answer": GOLD3}, "no 'prediction'"),
    ],
)
def test_bad_records_raise_input_error(bad, message):
    with pytest.raises(InputError, match=message):
        evaluate([bad])


def test_empty_input_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="no prediction records"):
        evaluate(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="no such file"):
        evaluate(tmp_path / "missing.jsonl")


def test_token_lengths_with_a_tokenizer_object(records):
    class CharTokenizer:
        def encode(self, text, add_special_tokens=False):
            return list(text)

    r = evaluate(records, tokenizer=CharTokenizer(), bootstrap=0)
    assert r["length_unit"] == "tokens"
    assert r["mean_length"] == pytest.approx(np.mean([len(x["prediction"]) for x in records]))


# ---- lenient ---------------------------------------------------------------------------


def test_lenient_separate_from_strict():
    recs = [
        rec(0, wrap("B cells | T-cell | natural killer cell")),  # synonyms + plural
        rec(1, "<answer>\nCell 1: B cell\nCell 2: T cell\nCell 3: NK cell"),  # no format
        rec(2, wrap("B cell | B cell | NK cell")),  # duplicate, repaired by elimination
        rec(3, wrap("B cell | NK cell | T cell")),  # plainly wrong stays wrong
    ]
    r = evaluate(recs, bootstrap=0, lenient=True)
    assert r["cell_accuracy"] == pytest.approx((0 + 0 + 2 + 1) / 12)  # strict untouched
    assert r["lenient"]["cell_accuracy"] == pytest.approx((3 + 3 + 3 + 1) / 12)
    assert r["lenient"]["batch_accuracy"] == pytest.approx(3 / 4)
    assert "lenient" not in evaluate(recs, bootstrap=0)


def test_lenient_helpers():
    assert normalise_label("CD14-positive Monocytes") == normalise_label("classical monocyte")
    assert normalise_label("NK cells") == normalise_label("Natural Killer cell")
    assert loose_labels("<answer>1. A\n2) B | C</answer>") == ["A", "B", "C"]
    # two blanks are not forced: only the supported position counts
    assert lenient_assignment(["B cell"], ["B cell", "T cell", "NK cell"])[1] == 1
    # ties never break towards the gold order
    assert lenient_assignment(["x", "y", "z"], ["B cell", "T cell", "NK cell"])[1] == 0


def test_mean_reward_equals_batch_reward():
    from cello1.scoring import batch_reward

    preds = [
        wrap(GOLD3),
        wrap("B cell | NK cell | T cell"),
        wrap("B cell | B cell | NK cell"),
        wrap("b cell | T cell"),
        "x",
        wrap("B cell|b CELL|T cell"),
    ]
    recs = [rec(i, p) for i, p in enumerate(preds)]
    assert evaluate(recs, bootstrap=0)["mean_reward"] == pytest.approx(np.mean([batch_reward(p, GOLD3) for p in preds]))


def test_official_records_with_model_outputs(official_records):
    # official test records carry the gold in assistant_msg; add a perfect and a shuffled output
    from cello1.grammar import render_completion

    recs = []
    for r in official_records:
        labels = r["assistant_msg"].split(" | ")
        recs.append({**r, "prediction": render_completion("reasoning", labels)})
        recs.append({**r, "id": r.get("id", "") + "_rev", "prediction": render_completion("r", labels[::-1])})
    result = evaluate(recs, bootstrap=0)
    assert result["format_rate"] == 1.0
    assert result["batch_accuracy"] == pytest.approx(0.5)
    assert set(result["by"]["n"]) == {str(len(r["assistant_msg"].split(" | "))) for r in official_records}


def test_list_of_shard_paths_is_pooled(tmp_path, records):
    a, b = tmp_path / "shard0.jsonl", tmp_path / "shard1.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    b.write_text("".join(json.dumps(r) + "\n" for r in records[2:]))
    result = evaluate([a, b], bootstrap=0)
    assert result["n_puzzles"] == 4 and result["cell_accuracy"] == pytest.approx(5 / 11)
