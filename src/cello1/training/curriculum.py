"""A curriculum over puzzle size for GRPO: small N first, then larger N.

Two schedules (``curriculum`` in :class:`~cello1.training.config.GRPOStageConfig`):

* ``stage`` — the training puzzles are visited by N, smallest first (shuffled within each N,
  seeded); each epoch walks from the smallest N to the largest again, so every N gets steps in
  proportion to its puzzles;
* ``adaptive`` — training starts on the smallest N only and moves to the next N once the mean
  reward of the last ``curriculum_window`` rollouts at the current N reaches
  ``curriculum_threshold`` (it never moves back); the largest N is kept until the end.

Either way the reward is logged per N (``rewards/reward_n{N}/mean`` in ``metrics.jsonl`` and
TRL's ``report_to`` targets) by zero-weight reward functions (:func:`reward_by_n_functions`),
which also feed the adaptive schedule; ``curriculum/n`` logs the N being trained.

The sampler keeps TRL's ``RepeatSampler`` layout — chunks of distinct prompts, each prompt
repeated ``num_generations`` times, each chunk repeated for ``steps_per_generation ×
num_iterations`` — so GRPO's groups and gradient accumulation work unchanged. This module
imports no torch (the stage configs check the curriculum settings cheaply).
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cello1.errors import InputError

CURRICULA = ("none", "stage", "adaptive")


def check_curriculum(name: str) -> str:
    """``name`` if it is a known curriculum, else an :class:`~cello1.errors.InputError`."""
    if name not in CURRICULA:
        raise InputError(f"{{curriculum}} must be one of {', '.join(CURRICULA)}, not {name!r}", params=["curriculum"])
    return name


def stage_order(sizes: Sequence[int], seed: int = 0) -> list[int]:
    """Indices of the puzzles ordered by N (smallest first), shuffled within each N."""
    rng = random.Random(seed)
    by_n: dict[int, list[int]] = defaultdict(list)
    for index, n in enumerate(sizes):
        by_n[n].append(index)
    order: list[int] = []
    for n in sorted(by_n):
        group = by_n[n]
        rng.shuffle(group)
        order += group
    return order


class CurriculumState:
    """The running reward per N and, for the adaptive schedule, the N being trained.

    Parameters
    ----------
    sizes
        The N of every training puzzle.
    threshold
        Mean reward over the window at which the adaptive schedule moves to the next N.
    window
        How many of the latest rollouts at the current N the mean is taken over.
    """

    def __init__(self, sizes: Sequence[int], threshold: float = 0.5, window: int = 32) -> None:
        if window < 1:
            raise InputError(f"{{curriculum_window}} must be >= 1, not {window}", params=["curriculum_window"])
        self.levels = sorted(set(sizes))
        self.threshold = float(threshold)
        self.window = int(window)
        self.level = 0
        self.recent: dict[int, deque[float]] = {n: deque(maxlen=self.window) for n in self.levels}
        self.moves: list[tuple[int, int]] = []  # (rollouts seen, new N)
        self.seen = 0

    @property
    def current_n(self) -> int:
        """The N the adaptive schedule trains on now."""
        return self.levels[self.level]

    def record(self, n: int, reward: float) -> None:
        """Add one rollout's reward; move to the next N when the current one is mastered."""
        self.seen += 1
        if n in self.recent:
            self.recent[n].append(float(reward))
        recent = self.recent[self.current_n]
        mastered = len(recent) == self.window and sum(recent) / self.window >= self.threshold
        if mastered and self.level + 1 < len(self.levels):
            self.level += 1
            self.moves.append((self.seen, self.current_n))

    def running_mean(self, n: int) -> float | None:
        """Mean reward of the latest rollouts at ``n`` (``None`` before any)."""
        recent = self.recent.get(n)
        return sum(recent) / len(recent) if recent else None


def reward_by_n_functions(
    reward: Callable[..., list[float]], sizes: Sequence[int], state: CurriculumState | None = None
) -> list[Callable[..., list[float | None]]]:
    """One zero-weight TRL reward function per N, named ``reward_n{N}``: the main ``reward`` for
    rollouts of that N and ``None`` (ignored in TRL's means) for the others. The first one also
    feeds every rollout's reward to ``state``.
    """
    functions = []
    for position, n in enumerate(sorted(set(sizes))):

        def by_n(
            prompts: Any = None, completions: Any = (), *, _n: int = n, _first: bool = position == 0, **columns: Any
        ) -> list[float | None]:
            sizes_here = [int(x) for x in columns.get("n") or []]
            if len(sizes_here) != len(completions):
                raise InputError("reward by N: the GRPO dataset needs an 'n' column (cello1's grpo_records has one)")
            values = reward(prompts=prompts, completions=completions, **columns)
            if _first and state is not None:
                for size, value in zip(sizes_here, values, strict=True):
                    state.record(size, value)
            return [v if size == _n else None for size, v in zip(sizes_here, values, strict=True)]

        by_n.__name__ = by_n.__qualname__ = f"reward_n{n}"
        functions.append(by_n)
    return functions


class CurriculumSampler:
    """A data-loader sampler (a sized iterable of indices) with TRL's ``RepeatSampler`` layout,
    the prompts in curriculum order.

    Parameters
    ----------
    sizes
        The N of every dataset row.
    schedule
        ``stage`` or ``adaptive`` (see the module docstring).
    mini_repeat_count
        Rollouts per prompt (``num_generations``).
    batch_size
        Distinct prompts per generation round.
    repeat_count
        How often a chunk is reused (``steps_per_generation × num_iterations``).
    state
        The shared :class:`CurriculumState` (adaptive: read before every chunk).
    seed
        Shuffling seed.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        schedule: str,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        state: CurriculumState | None = None,
        seed: int = 0,
    ) -> None:
        self.sizes = list(sizes)
        self.schedule = check_curriculum(schedule)
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.state = state if state is not None else CurriculumState(self.sizes)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        chunks = len(self.sizes) // self.batch_size
        return chunks * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        self.epoch += 1
        chunks = self._stage_chunks() if self.schedule == "stage" else self._adaptive_chunks()
        for chunk in chunks:
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count

    def _stage_chunks(self) -> Iterator[list[int]]:
        order = stage_order(self.sizes, self.seed + self.epoch)
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            yield order[start : start + self.batch_size]

    def _adaptive_chunks(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        pools: dict[int, list[int]] = defaultdict(list)
        for n in self.state.levels:
            pools[n] = [i for i, size in enumerate(self.sizes) if size == n]
        queues: dict[int, list[int]] = {}
        for _ in range(len(self.sizes) // self.batch_size):
            n = self.state.current_n  # read lazily: the state moves on while training runs
            chunk: list[int] = []
            while len(chunk) < self.batch_size:
                if not queues.get(n):
                    queues[n] = rng.sample(pools[n], len(pools[n]))
                chunk.append(queues[n].pop())
            yield chunk


__all__ = [
    "CURRICULA",
    "CurriculumSampler",
    "CurriculumState",
    "check_curriculum",
    "reward_by_n_functions",
    "stage_order",
]
