"""Property-based tests: arbitrary and adversarial outputs never break scoring.

The fast string-based implementation is checked against a direct transcription of
docs/format.md §5 (regex + str.splitlines), on generated text built from the tags, separators,
line breaks and unicode that trip up parsers.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cello1.scoring import batch_reward, evaluate, extract_answer, is_valid_format, parse_prediction
from cello1.scoring.lenient import lenient_score

SPEC_RE = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def spec_extract(text: str) -> str:
    lines = text.splitlines()
    answer = ""
    for line in lines:
        if "<answer>" in line:
            answer = line.split("<answer>", 1)[1].strip()
            if answer.endswith("</answer>"):
                answer = answer.replace("</answer>", "").strip()
            break
    if not answer:
        answer = next((line.strip() for line in lines if "|" in line), "")
    return answer


def spec_valid(text: str) -> bool:
    return all(text.count(tag) == 1 for tag in TAGS) and SPEC_RE.match(text) is not None and "|" in spec_extract(text)


def spec_reward(text: str, gold: list[str]) -> float:
    if not spec_valid(text):
        return -1.0
    pred = [p.strip() for p in spec_extract(text).split("|") if p.strip()]
    if len(pred) != len(gold) or len({p.lower() for p in pred}) != len(pred):
        return -1.0
    correct = sum(p.lower() == g.lower() for p, g in zip(pred, gold, strict=True))
    return (correct / len(gold) + (correct == len(gold))) / 2


FRAGMENTS = [
    *TAGS,
    "<think",
    "answer>",
    "</answer",
    "<",
    ">",
    "|",
    " | ",
    "||",
    "\n",
    "\r\n",
    "\r",
    "\u2028",
    "\x85",
    " ",
    "\t",
    "B cell",
    "T cell",
    "b CELL",
    "NK cell",
    "é",
    "细胞",
    "🧬",
    "\x00",
    "<answer><answer>",
]
GOLD = ["B cell", "T cell", "NK cell"]

fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=30).map("".join)
label = st.sampled_from(["B cell", "T cell", "NK cell", "b cell", "Monocyte", " T cell ", "", "x|y"])
near_valid = st.builds(
    lambda think, labels, sep, tail: f"<think>{think}</think>\n<answer>{sep.join(labels)}</answer>{tail}",
    fragment_text,
    st.lists(label, max_size=5),
    st.sampled_from([" | ", "|", " |", "\n| ", " | \n"]),
    st.sampled_from(["", "\n", "\r\n", " ", "\n\n", "x"]),
)
tagless_text = st.lists(st.sampled_from([f for f in FRAGMENTS if "<" not in f]), max_size=30).map("".join)
outputs = st.one_of(st.text(max_size=200), fragment_text, near_valid)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(outputs)
@example("<think>a</think>\n<answer>\nB cell | T cell | NK cell\n</answer>")
@example("<think>a</think>\n<answer>B cell | T cell | NK cell</answer>\n")
@example("<think><answer></think>\n<answer>B cell | T cell | NK cell</answer>")
@example("<think>x</think>\n<answer>B cell | T cell\u2028| NK cell</answer>")
@example("<think></answer></think>\n<answer>B cell | T cell | NK cell")
@example("<think>x</think>\n<answer>B cell | T cell | NK cell</answer><")
@example("<think>x</think>\n<answer>B cell | T cell | NK cell</answer>\n<think>")
def test_matches_spec_transcription(text):
    assert extract_answer(text) == spec_extract(text)
    assert is_valid_format(text) == spec_valid(text)
    assert batch_reward(text, GOLD) == spec_reward(text, GOLD)


@SETTINGS
@given(outputs, st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6))
def test_reward_never_raises_and_stays_in_range(text, gold):
    for variant in ("paper", "exact_match", "cell_accuracy"):
        r = batch_reward(text, gold, variant=variant)
        assert r == -1.0 or 0.0 <= r <= 1.0
    assert batch_reward(text, gold, variant="format") in (0.0, 1.0)
    if not is_valid_format(text):
        assert batch_reward(text, gold) == -1.0
        assert parse_prediction(text) is None


@SETTINGS
@given(st.permutations(GOLD), st.sampled_from(["", "\n"]), tagless_text)
def test_valid_permutation_reward_is_cell_accuracy_formula(perm, tail, think):
    text = f"<think>{think}</think>\n<answer>{' | '.join(perm)}</answer>{tail}"
    correct = sum(p == g for p, g in zip(perm, GOLD, strict=True))
    assert batch_reward(text, GOLD) == (correct / 3 + (correct == 3)) / 2


@settings(max_examples=60, deadline=None)
@given(st.lists(outputs, min_size=1, max_size=6))
def test_evaluate_never_raises_and_metrics_are_rates(predictions):
    records = [{"id": str(i), "answer": " | ".join(GOLD), "prediction": p} for i, p in enumerate(predictions)]
    result = evaluate(records, bootstrap=20, lenient=True)
    for key in ("cell_accuracy", "batch_accuracy", "format_rate", "uniqueness"):
        assert 0.0 <= result[key] <= 1.0
    assert result["n_puzzles"] == len(predictions)
    assert result["batch_accuracy"] <= result["format_rate"]


@settings(max_examples=100, deadline=None)
@given(st.permutations(GOLD))
def test_lenient_equals_strict_on_clean_permutations(perm):
    text = f"<think>x</think>\n<answer>{' | '.join(perm)}</answer>"
    strict = sum(p == g for p, g in zip(perm, GOLD, strict=True))
    assert lenient_score(text, GOLD) == (strict, strict == 3)


def test_megabyte_outputs():
    big = "x" * 1_000_000
    valid = f"<think>{big}</think>\n<answer>B cell | T cell | NK cell</answer>"
    assert batch_reward(valid, GOLD) == 1.0
    assert batch_reward("<" * 1_000_000, GOLD) == -1.0
    assert batch_reward("|" * 1_000_000, GOLD) == -1.0
    assert batch_reward(("<think>" + "\r\n") * 200_000, GOLD) == -1.0
    assert extract_answer("a\n" * 500_000 + "B | C") == "B | C"
    assert batch_reward(valid.replace("\n<answer>", "\r\n<answer>"), GOLD) == -1.0
