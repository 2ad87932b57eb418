"""Every reward variant pinned with hand-written examples, through ``batch_reward`` and the
TRL and verl adapters (the same numbers everywhere); the paper's reward stays the default."""

from __future__ import annotations

import pytest

from cello1.errors import InputError
from cello1.scoring import batch_reward, make_reward
from cello1.scoring.reward import VARIANT_OPTIONS, VARIANTS, cell_credit, tag_credit
from cello1.scoring.verl import compute_score, make_compute_score

GOLD = "CD8+ Cytotoxic T | CD56+ NK | CD19+ B"


def wrap(answer: str, think: str = "x") -> str:
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


RIGHT = wrap(GOLD)
ONE_RIGHT = wrap("CD56+ NK | CD8+ Cytotoxic T | CD19+ B")  # only cell 3 right
ALL_WRONG = wrap("CD56+ NK | CD19+ B | CD8+ Cytotoxic T")
# cell 1 is a child of the gold type in the Cell Ontology (naive cytotoxic T ⊂ cytotoxic T)
CHILD = wrap("CD8+/CD45RA+ Naive Cytotoxic | CD56+ NK | CD19+ B")
# cell 1 is the gold type's parent ("T cell" is an ancestor of CD8+ cytotoxic T)
PARENT = wrap("T cell | CD56+ NK | CD19+ B")
SAME_TERM = wrap("CD8+ Cytotoxic T | natural killer cell | CD19+ B")  # "NK" spelled as its CL name
REPEAT = wrap("CD19+ B | CD19+ B | CD56+ NK")
TWO_LABELS = wrap("CD8+ Cytotoxic T | CD56+ NK")


# expected reward of each completion under each variant (default options)
TABLE = {
    #            paper   exact  cell_acc  format  shaped  ontology
    RIGHT: (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    ONE_RIGHT: (1 / 6, 0.0, 1 / 3, 1.0, 1 / 6, 1 / 6),
    ALL_WRONG: (0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    CHILD: (1 / 3, 0.0, 2 / 3, 1.0, 1 / 3, (2.5 / 3) / 2),
    PARENT: (1 / 3, 0.0, 2 / 3, 1.0, 1 / 3, (2.5 / 3) / 2),
    SAME_TERM: (1 / 3, 0.0, 2 / 3, 1.0, 1 / 3, (2.5 / 3) / 2),
    REPEAT: (-1.0, -1.0, -1.0, 1.0, None, -1.0),
    TWO_LABELS: (-1.0, -1.0, -1.0, 1.0, None, -1.0),
    "CD8+ Cytotoxic T | CD56+ NK | CD19+ B": (-1.0, -1.0, -1.0, 0.0, None, -1.0),
}
ORDER = ("paper", "exact_match", "cell_accuracy", "format", "shaped", "ontology")


def test_variants_listed():
    assert set(ORDER) == set(VARIANTS)
    assert set(VARIANT_OPTIONS) == {"shaped", "ontology"}


@pytest.mark.parametrize("completion", list(TABLE))
@pytest.mark.parametrize("variant", ORDER)
def test_variant_table(completion, variant):
    expected = TABLE[completion][ORDER.index(variant)]
    if expected is None:  # shaped on malformed answers: pinned separately below
        return
    assert batch_reward(completion, GOLD, variant) == pytest.approx(expected)


def test_paper_is_the_default_and_exact():
    for completion, row in TABLE.items():
        assert batch_reward(completion, GOLD) == pytest.approx(row[0])
    assert batch_reward(ONE_RIGHT, GOLD) == pytest.approx((1 / 3 + 0) / 2)


def test_shaped_orders_malformed_answers_below_every_valid_one():
    # no <think> block, no <answer> tag, all three labels readable: −1 + 0.3 × 3/3
    assert batch_reward("CD8+ Cytotoxic T | CD56+ NK | CD19+ B", GOLD, "shaped") == pytest.approx(-0.7)
    # both tags but no newline between them (strict format fails): −1 + 0.1 + 0.1 + 0.3
    glued = "<think>x</think><answer>" + GOLD + "</answer>"
    assert batch_reward(glued, GOLD, "shaped") == pytest.approx(-0.5)
    assert batch_reward(glued, GOLD, "paper") == -1.0
    assert batch_reward("nothing at all", GOLD, "shaped") == -1.0
    # think block only, answer missing
    assert batch_reward("<think>hmm</think>", GOLD, "shaped") == pytest.approx(-0.9)
    # a repeat: think + answer credit, two of three gold labels read
    assert batch_reward(REPEAT, GOLD, "shaped") == pytest.approx(-1 + 0.2 + 0.3 * 2 / 3)
    # options change the credits
    assert batch_reward(glued, GOLD, "shaped", think_credit=0.0, answer_credit=0.2, slots_credit=0.0) == pytest.approx(
        -0.8
    )
    assert tag_credit("<think>a</think> <answer>", 0.1, 0.2) == pytest.approx(0.3)
    assert tag_credit("</think><think>", 0.1, 0.2) == 0.0  # the block must open before it closes


def test_ontology_credits_are_options():
    assert cell_credit("CD8+ Cytotoxic T", "cd8+ cytotoxic t") == 1.0
    assert cell_credit("T cell", "CD8+ Cytotoxic T") == 0.5  # ancestor: too coarse
    assert cell_credit("CD8+/CD45RA+ Naive Cytotoxic", "CD8+ Cytotoxic T") == 0.5  # descendant: too fine
    assert cell_credit("CD19+ B", "CD8+ Cytotoxic T") == 0.0
    assert cell_credit("T cell", "CD8+ Cytotoxic T", coarse_credit=0.25) == 0.25
    opts = {"coarse_credit": 0.2, "fine_credit": 0.8, "same_term_credit": 1.0}
    assert batch_reward(PARENT, GOLD, "ontology", **opts) == pytest.approx(((2 + 0.2) / 3) / 2)
    assert batch_reward(CHILD, GOLD, "ontology", **opts) == pytest.approx(((2 + 0.8) / 3) / 2)
    # a same-term swap with full credit: every cell counts, but batch accuracy stays strict
    assert batch_reward(SAME_TERM, GOLD, "ontology", **opts) == pytest.approx(0.5)


def test_unknown_options_are_refused():
    with pytest.raises(InputError, match="does not take"):
        batch_reward(RIGHT, GOLD, "paper", coarse_credit=0.5)
    with pytest.raises(InputError, match="does not take"):
        make_reward("ontology", think_credit=0.1)
    with pytest.raises(InputError, match="not a number"):
        batch_reward(RIGHT, GOLD, "ontology", coarse_credit="high")


def test_trl_adapter_gives_the_same_numbers():
    completions = list(TABLE)
    for variant in ORDER:
        reward = make_reward(variant)
        assert reward.__name__ == f"reward_{variant}"
        got = reward(None, [[{"role": "assistant", "content": c}] for c in completions], answer=[GOLD] * len(TABLE))
        assert got == pytest.approx([batch_reward(c, GOLD, variant) for c in completions])
    partial = make_reward("ontology", coarse_credit=0.0)
    assert partial(None, [PARENT], answer=[GOLD]) == pytest.approx([(2 / 3) / 2])


def test_verl_adapter_gives_the_same_numbers():
    for completion in TABLE:
        for variant in ORDER:
            expected = batch_reward(completion, GOLD, variant)
            # per row through extra_info, and bound once through reward_kwargs / make_compute_score
            assert compute_score("cellpuzzles", completion, GOLD, {"reward_variant": variant}) == pytest.approx(
                expected
            )
            assert compute_score("cellpuzzles", completion, GOLD, None, reward_variant=variant) == pytest.approx(
                expected
            )
            assert make_compute_score(variant)("cellpuzzles", completion, GOLD) == pytest.approx(expected)
    info = {"reward_variant": "ontology", "reward_options": {"coarse_credit": 0.0}}
    assert compute_score("x", PARENT, {"ground_truth": GOLD}, info) == pytest.approx((2 / 3) / 2)
    bound = make_compute_score("ontology", coarse_credit=1.0)
    assert bound("x", PARENT, GOLD) == pytest.approx(0.5)
    assert bound("x", PARENT, GOLD, {"reward_variant": "paper"}) == pytest.approx(1 / 3)  # the row wins
