"""Exact speed-ups for small-model training on a CPU: compute a prompt (prefix) that several
rows share once.

* :func:`shared_prefill_cache` — GRPO generation: TRL repeats each prompt
  ``num_generations`` times; the prefill runs once per distinct prompt.
* :func:`shared_prompt_logps` — the GRPO training forward/backward: each distinct prompt runs
  once *with gradient*, its KV cache is indexed out to the rows.
* :func:`shared_prefix_forward` — SFT: the prefix every row of a batch shares (chat template +
  system message) runs once with gradient.
* :func:`shared_prefix_generation` — evaluation: a batch's common prefix is prefilled once.

All give the numbers of the plain computation up to float rounding (pinned in
``tests/test_train_grpo_constrained.py``: log-probabilities and entropies within 1e-5,
gradients within 1e-4 relative). Why it matters: at N 3–4 the prompt is ~300 of the ~370
tokens of a GRPO row, and TRL's batch repeats it ``num_generations`` times.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

MIN_SHARED_PREFIX = 16
"""Below this many shared tokens the bookkeeping costs more than it saves."""


@contextmanager
def generate_with(model: Any, processor: Any | None, share_prefill: bool = False) -> Iterator[None]:
    """Patch ``model.generate`` while the block runs: add ``logits_processor=[processor]`` and,
    with ``share_prefill``, run the prompt once per distinct prompt and hand ``generate`` a KV
    cache copied to every row.
    """
    from transformers import LogitsProcessorList

    original = model.generate

    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> Any:
        if processor is not None:
            extra = list(kwargs.pop("logits_processor", None) or [])
            kwargs["logits_processor"] = LogitsProcessorList([*extra, processor])
        if share_prefill and not args and kwargs.get("past_key_values") is None:
            cache = shared_prefill_cache(model, kwargs.get("input_ids"), kwargs.get("attention_mask"))
            if cache is not None:
                kwargs["past_key_values"] = cache
        return original(*args, **kwargs)

    model.generate = generate
    try:
        yield
    finally:
        del model.generate  # back to the class attribute


def _distinct_rows(rows: list[tuple]) -> tuple[list[int], list[int]]:
    """(for each row the index of its distinct value, the first row of each distinct value)."""
    first: dict[tuple, int] = {}
    index = [first.setdefault(row, len(first)) for row in rows]
    representatives = [0] * len(first)
    for i in reversed(range(len(rows))):
        representatives[index[i]] = i
    return index, representatives


def shared_prefill_cache(model: Any, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None) -> Any:
    """KV cache of ``input_ids[:, :-1]`` computed once per distinct (left-padded) row, with the
    position ids ``generate`` uses; ``None`` when every row is distinct.
    """
    if input_ids is None or attention_mask is None or input_ids.shape[1] < 2:
        return None
    rows = [tuple(r) for r in torch.cat([input_ids, attention_mask], dim=1).tolist()]
    index, unique = _distinct_rows(rows)
    if len(unique) == len(rows):
        return None
    ids, mask = input_ids[unique, :-1], attention_mask[unique, :-1]
    position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True)
    cache = out.past_key_values
    cache.batch_select_indices(torch.tensor(index, device=input_ids.device))
    return cache


def shared_prompt_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, compute_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """TRL's per-token completion log-probabilities (and entropies), each distinct prompt computed once.

    The prompt minus its last token runs once per distinct prompt *with* gradient; its KV cache
    is indexed out to every row (autograd sums the rows' gradients into the shared prompt
    activations, so the gradients equal those of the repeated batch); then the last prompt token
    and the completion run per row through TRL's fused LM head (``fused_lm_head=True``,
    temperature included). Position ids are absolute (0…L−1), as in TRL's own forward.
    """
    prompt_len = input_ids.shape[1] - logits_to_keep
    rows = [tuple(r) for r in torch.cat([input_ids[:, :prompt_len], attention_mask[:, :prompt_len]], 1).tolist()]
    index, unique = _distinct_rows(rows)
    device = input_ids.device
    head = prompt_len - 1
    out = model(
        input_ids=input_ids[unique, :head],
        attention_mask=attention_mask[unique, :head],
        position_ids=torch.arange(head, device=device).unsqueeze(0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    if cache is None:
        raise RuntimeError("shared_prompt_logps: the model returned no KV cache (is gradient checkpointing on?)")
    cache.batch_select_indices(torch.tensor(index, device=device))
    suffix = input_ids[:, head:]
    labels = suffix.masked_fill(attention_mask[:, head:] == 0, -100)
    labels[:, 0] = -100
    positions = torch.arange(head, input_ids.shape[1], device=device).unsqueeze(0)
    outputs = model(
        input_ids=suffix,
        attention_mask=attention_mask,
        position_ids=positions,
        past_key_values=cache,
        labels=labels,
        fused_lm_head=True,
    )
    logps = outputs.log_probs[:, -logits_to_keep:]
    entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
    return logps, entropies


def _common_prefix_len(rows: list[list[int]]) -> int:
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def common_prefix_inputs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int
) -> dict[str, Any] | None:
    """Inputs for ``generate`` that run the prompt prefix shared by every row once:
    ``[prefix][padding][rest of the row]`` with the prefix's KV cache copied to every row.

    Position ids (``cumsum(mask) − 1``) and attention are those of the usual left-padded batch,
    so the result is the same up to float rounding. ``None`` when the rows share fewer than
    :data:`MIN_SHARED_PREFIX` tokens.
    """
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
    if len(rows) < 2:
        return None
    # every row keeps at least one token of its own to feed generate
    prefix = min(_common_prefix_len(rows), min(len(r) for r in rows) - 1)
    if prefix < MIN_SHARED_PREFIX:
        return None
    width = max(len(r) for r in rows) - prefix
    new_ids = torch.full((len(rows), prefix + width), pad_id, dtype=input_ids.dtype)
    new_mask = torch.zeros((len(rows), prefix + width), dtype=attention_mask.dtype)
    for i, row in enumerate(rows):
        rest = row[prefix:]
        new_ids[i, :prefix] = torch.tensor(row[:prefix])
        new_ids[i, prefix + width - len(rest) :] = torch.tensor(rest)
        new_mask[i, :prefix] = 1
        new_mask[i, prefix + width - len(rest) :] = 1
    with torch.no_grad():
        head = torch.tensor([rows[0][:prefix]], device=input_ids.device)
        cache = model(input_ids=head, use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(rows))
    return {
        "input_ids": new_ids.to(input_ids.device),
        "attention_mask": new_mask.to(input_ids.device),
        "past_key_values": cache,
    }


@contextmanager
def shared_prefix_generation(model: Any, pad_id: int) -> Iterator[None]:
    """Patch ``model.generate`` so that a batch's common prompt prefix is computed once
    (:func:`common_prefix_inputs`); for evaluation on a CPU.
    """
    original = model.generate

    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if not args and ids is not None and mask is not None and kwargs.get("past_key_values") is None:
            inputs = common_prefix_inputs(model, ids, mask, pad_id)
            if inputs is not None:
                kwargs.update(inputs)
        return original(*args, **kwargs)

    model.generate = generate
    try:
        yield
    finally:
        del model.generate


@contextmanager
def shared_prefix_forward(model: Any, min_prefix: int = MIN_SHARED_PREFIX) -> Iterator[None]:
    """SFT: while the block runs, ``model(input_ids, attention_mask, labels, fused_lm_head=True)``
    on a right-padded batch whose rows start with the same unlabelled tokens (chat template +
    system message) runs that prefix once, with gradient, and only the rest per row.

    The outputs (``log_probs``, ``entropy``, ``is_top1``, ``label_mask``) cover the positions
    after the prefix; the prefix carries only ``-100`` labels, so TRL's sums are unchanged.
    """
    original = model.forward
    handled = {"input_ids", "attention_mask", "labels", "use_cache", "fused_lm_head"}

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        ids, mask, labels = kwargs.get("input_ids"), kwargs.get("attention_mask"), kwargs.get("labels")
        plain = args or not kwargs.get("fused_lm_head") or set(kwargs) - handled
        if plain or ids is None or labels is None or ids.shape[0] < 2:
            return original(*args, **kwargs)
        labelled = (labels != -100).any(dim=0).nonzero()
        first_label = int(labelled[0]) if len(labelled) else ids.shape[1]
        prefix = min(_common_prefix_len(ids.tolist()), first_label)
        if mask is not None:
            prefix = min(prefix, int(mask.all(dim=0).long().cumprod(0).sum()))
        head = prefix - 1
        if head < min_prefix:
            return original(*args, **kwargs)
        out = original(
            input_ids=ids[:1, :head],
            position_ids=torch.arange(head, device=ids.device).unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        if cache is None:
            raise RuntimeError("shared_prefix_forward: the model returned no KV cache (is gradient checkpointing on?)")
        cache.batch_repeat_interleave(ids.shape[0])
        rest_labels = labels[:, head:].clone()
        rest_labels[:, 0] = -100
        return original(
            input_ids=ids[:, head:],
            attention_mask=mask if mask is not None else torch.ones_like(ids),
            position_ids=torch.arange(head, ids.shape[1], device=ids.device).unsqueeze(0),
            past_key_values=cache,
            labels=rest_labels,
            fused_lm_head=True,
        )

    model.forward = forward
    try:
        yield
    finally:
        del model.forward


__all__ = [
    "common_prefix_inputs",
    "generate_with",
    "shared_prefill_cache",
    "shared_prefix_forward",
    "shared_prefix_generation",
    "shared_prompt_logps",
]
