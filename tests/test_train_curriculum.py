"""The curriculum over N: stage order, the adaptive schedule, TRL's repeat layout, and the
reward logged by N."""

from __future__ import annotations

import pytest

from cello1.errors import InputError
from cello1.training.curriculum import (
    CurriculumSampler,
    CurriculumState,
    check_curriculum,
    reward_by_n_functions,
    stage_order,
)

SIZES = [5, 3, 4, 3, 5, 4, 3, 4]  # N of each dataset row


def test_stage_order_is_by_n_and_seeded():
    order = stage_order(SIZES, seed=1)
    assert sorted(order) == list(range(len(SIZES)))
    assert [SIZES[i] for i in order] == [3, 3, 3, 4, 4, 4, 5, 5]
    assert order == stage_order(SIZES, seed=1)
    shuffles = {tuple(stage_order(SIZES, seed=s)) for s in range(20)}
    assert len(shuffles) > 1  # shuffled within each N


def test_stage_sampler_keeps_trls_repeat_layout():
    sampler = CurriculumSampler(SIZES, "stage", mini_repeat_count=2, batch_size=2, repeat_count=3, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 4 * 2 * 2 * 3  # 4 chunks × 2 prompts × 2 rollouts × 3 reuses
    first_chunk = indices[:4]
    assert first_chunk[0] == first_chunk[1] and first_chunk[2] == first_chunk[3]  # each prompt twice in a row
    assert indices[4:8] == first_chunk and indices[8:12] == first_chunk  # the chunk reused 3 times
    visit_order = list(dict.fromkeys(indices))  # each prompt at its first appearance
    assert [SIZES[i] for i in visit_order] == [3, 3, 3, 4, 4, 4, 5, 5]  # small N first
    again = list(dict.fromkeys(sampler))  # the next epoch walks from small N again, reshuffled
    assert [SIZES[i] for i in again] == [3, 3, 3, 4, 4, 4, 5, 5]


def test_adaptive_state_moves_once_the_running_reward_is_reached():
    state = CurriculumState([3, 4, 5, 3], threshold=0.5, window=3)
    assert state.current_n == 3
    for reward in (1.0, 0.0, 0.2):  # mean 0.4 < 0.5
        state.record(3, reward)
    assert state.current_n == 3 and state.moves == []
    state.record(4, 1.0)  # a rollout of another N does not count towards N=3
    assert state.current_n == 3
    state.record(3, 0.9)  # window now (0.0, 0.2, 0.9): mean 0.367
    state.record(3, 0.9)  # (0.2, 0.9, 0.9): mean 0.667 → move to N=4
    assert state.current_n == 4 and state.moves == [(6, 4)]
    assert state.running_mean(3) == pytest.approx(2.0 / 3)
    for _ in range(3):
        state.record(4, 1.0)
    for _ in range(3):
        state.record(5, 1.0)
    assert state.current_n == 5 and [n for _, n in state.moves] == [4, 5]
    state.record(5, -1.0)
    assert state.current_n == 5  # it never moves back, and stays on the largest N
    assert state.running_mean(7) is None


def test_adaptive_sampler_follows_the_state_lazily():
    state = CurriculumState(SIZES, threshold=0.5, window=2)
    sampler = CurriculumSampler(SIZES, "adaptive", mini_repeat_count=1, batch_size=2, state=state, seed=0)
    stream = iter(sampler)
    first = [next(stream) for _ in range(2)]
    assert {SIZES[i] for i in first} == {3}
    state.record(3, 1.0)
    state.record(3, 1.0)  # mastered: the next chunk is drawn at N=4
    nxt = [next(stream) for _ in range(2)]
    assert {SIZES[i] for i in nxt} == {4}


def test_reward_by_n_functions_log_each_n_and_feed_the_state():
    def reward(prompts=None, completions=(), **columns):
        return [float(len(c)) for c in completions]

    state = CurriculumState([3, 4], threshold=10.0, window=2)
    functions = reward_by_n_functions(reward, [3, 4, 3], state)
    assert [f.__name__ for f in functions] == ["reward_n3", "reward_n4"]
    completions, n = ["a", "bb", "ccc"], [3, 4, 3]
    assert functions[0](None, completions, n=n) == [1.0, None, 3.0]
    assert functions[1](None, completions, n=n) == [None, 2.0, None]
    assert state.seen == 3  # only the first function records
    assert state.running_mean(3) == pytest.approx(2.0)
    with pytest.raises(InputError, match="'n' column"):
        functions[0](None, completions)


def test_setting_errors(tmp_path):
    assert check_curriculum("stage") == "stage"
    with pytest.raises(InputError, match="curriculum"):
        check_curriculum("by-size")
    with pytest.raises(InputError, match="curriculum_window"):
        CurriculumState(SIZES, window=0)
    from cello1.training.config import GRPOStageConfig

    train = tmp_path / "t.jsonl"
    train.write_text("")
    with pytest.raises(InputError, match="curriculum"):
        GRPOStageConfig(model="m", train_file=str(train), curriculum="random").check()
