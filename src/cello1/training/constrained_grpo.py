"""Constrained GRPO rollouts (``cello1 train grpo --constrained``): every rollout is a
strict-format permutation of its puzzle's candidates.

Rollouts are sampled through :class:`cello1.solvers.constrained.ConstrainedAnswerProcessor`,
the logits processor of ``cello1 solve --solver hf --constrained``: ``<think>`` is forced, the
free reasoning cannot write ``<`` or stop, and the answer is a walk over a token trie of the
candidates. Every rollout therefore earns a reward in [0, 1] that varies with accuracy: a small
model whose free rollouts are mostly malformed (all −1 → zero advantage → no gradient) gets a
signal from its first step. The trainer side lives in :mod:`cello1.training.grpo_trainer`.

**The bias, stated plainly.** Rollouts come from the constrained distribution
``q(y_t | y_<t) = π(y_t | y_<t) · 1[y_t ∈ A_t] / Z_t`` (``A_t`` = the allowed tokens,
``Z_t = π(A_t | y_<t)``), while TRL's loss uses the unconstrained ``log π(y_t)``. The exact
on-policy gradient for q is ``∇ log q(y_t) = ∇ log π(y_t) − ∇ log Z_t``; TRL's gradient drops
the ``− ∇ log Z_t`` term. Consequences:

* at **forced** positions (one allowed token: ``<think>``, ``</think>\\n<answer>``, separators,
  the rest of a candidate name after its first token, ``</answer>``, EOS) ``log q = 0`` and the
  exact gradient is zero, while TRL's would push ``log π`` of the forced token up or down with
  the rollout's advantage. ``mask_forced_tokens`` (default on) removes those positions from the
  loss through TRL's ``tool_mask`` (the mask TRL uses for tool-output tokens), which makes the
  gradient exact there (transformers rollouts; vLLM does not report which tokens were forced);
* at **choice** positions (several allowed tokens: the first token of each candidate name, the
  free reasoning minus ``<``-tokens) the missing term remains. The policy is pushed towards
  choices that score well *among the allowed ones*, but it is never taught to put its mass on
  the allowed set itself, so free decoding of the trained model can still go astray where the
  constraint used to catch it. The size of the gap is logged per step as
  ``constrained/log_Z`` (per rollout ``Σ_t log Z_t`` over choice positions =
  ``log π(y) − log q(y)`` there; 0 when π already puts all its mass on allowed tokens) and
  ``constrained/log_Z_forced`` (the same over forced positions), with
  ``constrained/forced_token_share``;
* with ``num_iterations > 1`` TRL's importance ratio ``π_θ / π_old`` is a ratio of
  unconstrained probabilities; both share ``A_t``, so it differs from the constrained ratio only
  by ``Z_t(θ_old) / Z_t(θ)`` — small while ``Z_t ≈ 1``. TRL's vLLM importance-sampling
  correction would compare vLLM's constrained sampling log-probabilities with the trainer's
  unconstrained ones and down-weight every rollout by ``Z``; it is turned off with
  constrained vLLM rollouts.

``benchmarks/rl_curve.py`` measures the effect: the same SFT model trained with constrained and
with free rollouts, evaluated with free and with constrained decoding.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import torch

from cello1.grammar import ANSWER_SEP, render_completion
from cello1.puzzle import Puzzle, parse_user_msg
from cello1.solvers.constrained import ConstrainedAnswerProcessor

MAX_REGEX_PERMUTATIONS = 720
"""Up to this many orderings (N ≤ 6 with N candidates) the vLLM regex lists every permutation."""


def user_message(prompt: Any) -> str:
    """The last user message of a conversational TRL prompt."""
    if isinstance(prompt, str):
        raise ValueError("constrained rollouts need conversational prompts (cello1's GRPO dataset)")
    return next(m["content"] for m in reversed(prompt) if m.get("role") == "user")


def prompt_puzzle(prompt: Any) -> Puzzle:
    """The puzzle (context, cells, candidates; no answer) behind one TRL prompt."""
    context, cells, candidates = parse_user_msg(user_message(prompt))
    return Puzzle(id="", context=context, cells=cells, candidates=candidates)


class RecordingProcessor(ConstrainedAnswerProcessor):
    """The constrained processor that also records, per row and generated position, whether
    the token was forced (one allowed token) and ``log Z_t`` (the log of the unconstrained
    probability mass on the allowed tokens).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.forced: list[list[int]] = [[] for _ in self.rows]
        self.log_z: list[list[float]] = [[] for _ in self.rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """The constrained scores; records the forced flags and ``log Z_t`` of this position."""
        out = super().__call__(input_ids, scores)
        allowed = torch.isfinite(out).sum(dim=1).tolist()
        log_z = (torch.logsumexp(out.float(), dim=1) - torch.logsumexp(scores.float(), dim=1)).tolist()
        for r in range(len(self.rows)):
            self.forced[r].append(1 if allowed[r] == 1 else 0)
            self.log_z[r].append(log_z[r])
        return out

    def model_token_mask(self, completion_ids: list[list[int]]) -> list[list[int]]:
        """Per row, 1 where the model chose the token and 0 where the constraint forced it
        (TRL's ``tool_mask`` layout), cut or padded to each completion's length.
        """
        return [
            flags[: len(ids)] + [1] * max(0, len(ids) - len(flags))
            for flags, ids in zip(self.forced, completion_ids, strict=True)
        ]

    def statistics(self, completion_ids: list[list[int]]) -> dict[str, float]:
        """Means over rollouts of ``Σ log Z_t`` at choice and at forced positions, and of the
        share of forced tokens.
        """
        choice, forced, share = [], [], []
        for flags, log_z, ids in zip(self.forced, self.log_z, completion_ids, strict=True):
            n = len(ids)
            pairs = list(zip(flags[:n], log_z[:n], strict=True))
            choice.append(sum(z for f, z in pairs if not f))
            forced.append(sum(z for f, z in pairs if f))
            share.append(sum(flags[:n]) / max(1, n))
        rows = max(1, len(share))
        return {
            "constrained/log_Z": sum(choice) / rows,
            "constrained/log_Z_forced": sum(forced) / rows,
            "constrained/forced_token_share": sum(share) / rows,
        }


def longest_answer_chars(puzzle: Puzzle) -> int:
    """Characters of the longest completion without reasoning (tags, N longest candidates,
    separators) plus one for the end-of-sequence token: an upper bound on its tokens,
    since every token stands for at least one character.
    """
    names = sorted(len(c) for c in puzzle.candidates)[-puzzle.n :]
    return len(render_completion("", "")) + sum(names) + (puzzle.n - 1) * len(ANSWER_SEP) + 1


def _literal(text: str) -> str:
    # re.escape writes "\\ " for a space, which xgrammar (vLLM's regex engine) warns about
    return re.escape(text).replace("\\ ", " ")


def permutation_regex(puzzle: Puzzle, max_tokens: int | None = None) -> str:
    """A regex for vLLM structured outputs: free reasoning without ``<``, then a strict answer.

    Exact (a permutation of N distinct candidates) when there are at most
    :data:`MAX_REGEX_PERMUTATIONS` orderings; beyond, each slot is any candidate, so a repeat
    is possible (and scores −1 under the paper's reward). With ``max_tokens`` the reasoning
    is bounded in characters so that the answer always fits the budget (vLLM has no
    budget guard like the transformers path's): a rollout never ends cut off.
    """
    names = [_literal(c) for c in puzzle.candidates]
    sep = _literal(ANSWER_SEP)
    if math.perm(len(names), puzzle.n) <= MAX_REGEX_PERMUTATIONS:
        body = "|".join(sep.join(p) for p in itertools.permutations(names, puzzle.n))
    else:
        one = "(?:" + "|".join(names) + ")"
        body = one + "(?:" + sep + one + "){" + str(puzzle.n - 1) + "}"
    reasoning = "[^<]*"
    if max_tokens is not None:
        reasoning = f"[^<]{{0,{max(0, max_tokens - longest_answer_chars(puzzle))}}}"
    return r"<think>" + reasoning + r"</think>\n<answer>(?:" + body + r")</answer>"


def per_prompt_sampling_params(sampling_params: Any, prompts: list[Any], structured: Any) -> list[Any]:
    """One copy of vLLM ``sampling_params`` per rollout prompt, each with its puzzle's regex
    (``structured(regex=…)`` builds vLLM's ``StructuredOutputsParams``).
    """
    out = []
    for prompt in prompts:
        params = sampling_params.clone()
        regex = permutation_regex(prompt_puzzle(prompt), getattr(params, "max_tokens", None))
        params.structured_outputs = structured(regex=regex)
        out.append(params)
    return out


__all__ = [
    "MAX_REGEX_PERMUTATIONS",
    "longest_answer_chars",
    "RecordingProcessor",
    "per_prompt_sampling_params",
    "permutation_regex",
    "prompt_puzzle",
    "user_message",
]
