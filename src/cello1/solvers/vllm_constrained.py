"""vLLM per-request logits processor: ``--constrained`` answers and forced continuations
(for ``--assignment likelihood``), in the offline engine and in ``vllm serve``.

vLLM registers logits processors per *engine*; requests switch them on with extra
arguments (``SamplingParams(extra_args=…)`` offline, the body field ``vllm_xargs`` for the
server). The offline ``vllm`` solver registers it itself; for a server, start it with::

    python -m vllm.entrypoints.openai.api_server --model MODEL \\
        --logits-processors cello1.solvers.vllm_constrained:AnswerLogitsProcessor

and solve with ``--solver openai --constrained --constrain-via logits-processor``.

Request arguments (all plain values, as ``vllm_xargs`` requires):

* ``cello1_candidates`` (list of names), ``cello1_cells`` (N), ``cello1_max_new_tokens``
  and ``cello1_open_think`` (0 when the chat template already opened ``<think>``): run
  :class:`~cello1.solvers.constrained.AnswerState` — strict format, a permutation;
* ``cello1_force`` (list of token ids): emit exactly these tokens (vLLM still reports
  the model's own log-probability of each, from the raw logits).

Requests without these arguments are left alone.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from cello1.solvers.constrained import (
    BUDGET,
    CANDIDATES,
    CELLS,
    FORCE,
    OPEN_THINK,
    AnswerState,
    candidate_pieces,
    constrained_args,
    think_banned_mask,
)


class AnswerLogitsProcessor(AdapterLogitsProcessor):
    """Per-request constrained answers / forced tokens (see the module docstring)."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        from vllm.tokenizers import cached_tokenizer_from_config

        self.tokenizer = cached_tokenizer_from_config(vllm_config.model_config)
        self.vocab_size = vllm_config.model_config.get_vocab_size()
        self.eos = self.tokenizer.eos_token_id
        self.device = device
        self._banned: torch.Tensor | None = None

    def is_argmax_invariant(self) -> bool:
        """It changes which token is the top one."""
        return False

    def banned(self) -> torch.Tensor:
        """The reasoning-phase mask (built on first use: it decodes the whole vocabulary)."""
        if self._banned is None:
            mask = think_banned_mask(self.tokenizer, self.vocab_size, [self.eos])
            self._banned = torch.from_numpy(mask).to(self.device)
        return self._banned

    def new_req_logits_processor(self, params: Any) -> Any:
        """A closure over the request's state, or ``None`` for requests it does not touch."""
        extra = params.extra_args or {}
        if FORCE in extra:
            return _forcing(list(extra[FORCE]), self.eos)
        if CANDIDATES not in extra:
            return None
        banned = self.banned()
        pieces = candidate_pieces(self.tokenizer, extra[CANDIDATES], int(extra[CELLS]))
        state = AnswerState(
            pieces,
            max_new_tokens=int(extra[BUDGET]),
            eos_token_id=self.eos,
            banned=banned.cpu().numpy(),
            open_think=bool(int(extra.get(OPEN_THINK, 1))),
        )

        def constrain(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            state.sync(output_ids)
            allowed = state.allowed(lambda: int(logits.argmax()))
            if allowed is None:
                return logits.masked_fill(banned, float("-inf"))
            return _only(logits, allowed)

        return constrain


def _forcing(tokens: list[int], eos: int) -> Any:
    def force(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        step = len(output_ids)
        return _only(logits, [tokens[step] if step < len(tokens) else eos])

    return force


def _only(logits: torch.Tensor, allowed: list[int]) -> torch.Tensor:
    out = torch.full_like(logits, float("-inf"))
    index = torch.tensor(allowed, dtype=torch.long, device=logits.device)
    out[index] = logits[index]
    return out


__all__ = ["AnswerLogitsProcessor", "constrained_args"]
