"""``--constrained``: answers that pass the strict check and are a permutation of the
candidates, by construction, within ``max_new_tokens``.

A transformers ``LogitsProcessor`` drives each sequence through these phases:

1. force ``<think>``;
2. free reasoning, except that tokens containing ``<`` (and EOS / special tokens) are
   masked, so no stray tag can break the strict format. When the model's top choice
   *is* such a token (it wants to write ``</think>`` or stop), or when the remaining
   budget is just enough for the closing text plus the longest possible answer (the
   *budget guard*), the processor forces ``</think>\\n<answer>``;
3. the answer: a walk over a token trie of the candidate names — only continuations of
   unused candidates are allowed, a finished name is followed by the forced separator
   ``" |"`` (the next name is tokenised with its leading space, ``" " + name``, as the
   model would write it) until exactly N names are written, then ``</answer>`` and EOS.

Every piece is tokenised on its own and emitted through allowed-token masks, so tokens
that merge across piece boundaries (``" | T"`` → ``" |"``, ``" T"``) cannot derail the
walk; :func:`answer_pieces` checks that decoding the pieces gives back the exact text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from cello1.errors import InputError
from cello1.grammar import ANSWER_CLOSE, ANSWER_SEP, THINK_OPEN, THINK_TO_ANSWER, render_answer, render_completion
from cello1.puzzle import Puzzle

# ---- tokenised pieces ----------------------------------------------------------------------


@dataclass
class Trie:
    """Token trie over candidate names; ``through`` = candidates whose path passes here,
    ``ends`` = candidates whose name ends here.
    """

    children: dict[int, Trie] = field(default_factory=dict)
    through: set[int] = field(default_factory=set)
    ends: set[int] = field(default_factory=set)

    @classmethod
    def build(cls, sequences: list[tuple[int, ...]]) -> Trie:
        """The trie of token sequences; sequence ``i`` is candidate ``i``."""
        root = cls()
        for index, seq in enumerate(sequences):
            node = root
            node.through.add(index)
            for token in seq:
                node = node.children.setdefault(token, cls())
                node.through.add(index)
            node.ends.add(index)
        return root


@dataclass
class AnswerPieces:
    """Token ids of everything the processor may force for one puzzle."""

    think_open: tuple[int, ...]
    think_close: tuple[int, ...]  # "</think>\n<answer>"
    separator: tuple[int, ...]
    answer_close: tuple[int, ...]
    first: list[tuple[int, ...]]  # candidate names as the first item
    later: list[tuple[int, ...]]  # candidate names after a separator
    n_items: int

    def __post_init__(self) -> None:
        self.first_trie = Trie.build(self.first)
        self.later_trie = Trie.build(self.later)

    def longest_answer(self) -> int:
        """Most tokens any allowed answer can take, ``</answer>`` included."""
        rest = self.n_items - 1
        best = 0
        for c0, first in enumerate(self.first):
            others = sorted((len(s) for i, s in enumerate(self.later) if i != c0), reverse=True)
            best = max(best, len(first) + sum(others[:rest]))
        return best + rest * len(self.separator) + len(self.answer_close)

    def closing_budget(self) -> int:
        """Tokens needed to close the reasoning and write the longest answer."""
        return len(self.think_close) + self.longest_answer()

    def min_new_tokens(self) -> int:
        """The smallest ``max_new_tokens`` that still fits ``<think></think>`` + the answer."""
        return len(self.think_open) + self.closing_budget()


def _ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer.encode(text, add_special_tokens=False))


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def answer_pieces(tokenizer: Any, puzzle: Puzzle) -> AnswerPieces:
    """Tokenise the pieces of ``puzzle``'s answer and check they decode to the exact text."""
    if puzzle.n > len(puzzle.candidates):
        raise InputError(f"puzzle {puzzle.id}: {puzzle.n} cells but only {len(puzzle.candidates)} candidates")
    if puzzle.n < 2:
        raise InputError(
            f"puzzle {puzzle.id}: {{constrained}} needs N >= 2 (a one-item answer has no '|')", params=["constrained"]
        )
    bad = [c for c in puzzle.candidates if any(ch in c for ch in "|<\n") or c != c.strip()]
    if bad:
        raise InputError(
            f"puzzle {puzzle.id}: candidate {bad[0]!r} cannot appear in a strict answer "
            "('|', '<', newline or edge spaces)"
        )
    common = {
        "think_open": _ids(tokenizer, THINK_OPEN),
        "think_close": _ids(tokenizer, THINK_TO_ANSWER),
        "answer_close": _ids(tokenizer, ANSWER_CLOSE),
        "first": [_ids(tokenizer, c) for c in puzzle.candidates],
        "n_items": puzzle.n,
    }
    # preferred: "A" + " |" + " B" (natural tokens); fallback: "A" + " | " + "B"
    schemes = [
        (_ids(tokenizer, ANSWER_SEP.rstrip()), [_ids(tokenizer, " " + c) for c in puzzle.candidates]),
        (_ids(tokenizer, ANSWER_SEP), common["first"]),
    ]
    for separator, later in schemes:
        pieces = AnswerPieces(separator=separator, later=later, **common)
        if _decodes_exactly(tokenizer, pieces, puzzle):
            return pieces
    raise InputError(
        f"{{constrained}}: the tokenizer cannot spell the candidates of puzzle {puzzle.id} piece by piece "
        "(decoding changes spaces or characters); run without {constrained} (and use {repair})",
        params=["constrained", "repair"],
    )


def _decodes_exactly(tokenizer: Any, p: AnswerPieces, puzzle: Puzzle) -> bool:
    if any(len(s) == 0 for s in p.first + p.later) or not (p.separator and p.think_close and p.answer_close):
        return False
    m = len(puzzle.candidates)
    order = list(range(m))[: puzzle.n]
    ids = list(p.think_open) + list(p.think_close) + list(p.first[order[0]])
    for i in order[1:]:
        ids += list(p.separator) + list(p.later[i])
    ids += list(p.answer_close)
    expected = render_completion("", [puzzle.candidates[i] for i in order])
    if _decode(tokenizer, ids) != expected:
        return False
    # every name as the first item, and every name after a separator
    for c in range(m):
        probe = list(p.think_close) + list(p.first[c]) + list(p.separator) + list(p.later[c]) + list(p.answer_close)
        name = puzzle.candidates[c]
        if _decode(tokenizer, probe) != THINK_TO_ANSWER + render_answer([name, name]) + ANSWER_CLOSE:
            return False
    return True


# ---- the processor -------------------------------------------------------------------------

_FORCE, _THINK, _ANSWER, _DONE = "force", "think", "answer", "done"


@dataclass
class _Row:
    pieces: AnswerPieces
    phase: str = _FORCE
    queue: list[int] = field(default_factory=list)
    after: str = _THINK  # phase once the forced queue is written
    used: set[int] = field(default_factory=set)
    items: int = 0
    node: Trie | None = None


def think_banned_mask(tokenizer: Any, vocab_size: int, eos_ids: list[int]) -> torch.Tensor:
    """Tokens the free reasoning may not use: any containing ``<`` (a tag could start),
    special tokens, EOS, and ids beyond the tokenizer's vocabulary.
    """
    n = min(len(tokenizer), vocab_size)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
    banned = torch.zeros(vocab_size, dtype=torch.bool)
    banned[[i for i, t in enumerate(texts) if "<" in t]] = True
    banned[n:] = True
    special = [i for i in list(tokenizer.all_special_ids) + list(eos_ids) if i is not None and 0 <= i < vocab_size]
    banned[special] = True
    return banned


class ConstrainedAnswerProcessor(LogitsProcessor):
    """Logits processor for one ``generate`` call.

    ``pieces[r]`` belongs to batch row ``r // num_return_sequences``. The prompt length is
    taken from the first call, so build a new processor for every ``generate`` call.
    """

    def __init__(
        self,
        pieces: list[AnswerPieces],
        *,
        max_new_tokens: int,
        eos_token_id: int,
        banned: torch.Tensor,
        num_return_sequences: int = 1,
    ) -> None:
        for p in pieces:
            if max_new_tokens < p.min_new_tokens():
                raise InputError(
                    f"{{max_new_tokens}}={max_new_tokens} is too small for {{constrained}}: this puzzle needs at "
                    f"least {p.min_new_tokens()} tokens (<think></think> plus its longest possible answer)",
                    params=["max_new_tokens", "constrained"],
                )
        self.rows = [_Row(pieces=p, queue=list(p.think_open)) for p in pieces for _ in range(num_return_sequences)]
        self.max_new_tokens = max_new_tokens
        self.eos = eos_token_id
        self.banned = banned
        self.prompt_len: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Next-token scores of every row, ``-inf`` wherever the row's state forbids the token.

        While thinking, the banned tokens (any containing ``<``, special tokens, EOS) are masked; once the model's
        top token is a banned one or only the closing budget is left, ``</think>`` is forced, and
        from then on only tokens that spell unused candidate names, separators, ``</answer>`` and
        EOS are allowed.
        """
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
                self._advance(row, token)
        remaining = self.max_new_tokens - (input_ids.shape[1] - self.prompt_len)
        out = torch.full_like(scores, float("-inf"))
        banned = self.banned.to(scores.device)
        for r, row in enumerate(self.rows):
            if row.phase == _THINK:
                wants_tag = bool(banned[int(scores[r].argmax())])
                if wants_tag or remaining <= row.pieces.closing_budget():
                    self._force(row, row.pieces.think_close, then=_ANSWER)
                else:
                    out[r] = scores[r].masked_fill(banned, float("-inf"))
                    continue
            allowed = self._allowed(row)
            out[r, allowed] = scores[r, allowed]
        return out

    # ---- state machine -------------------------------------------------------------------
    def _force(self, row: _Row, ids: tuple[int, ...] | list[int], then: str) -> None:
        row.phase, row.queue, row.after = _FORCE, list(ids), then
        if not row.queue:
            self._enter(row, then)

    def _enter(self, row: _Row, phase: str) -> None:
        row.phase = phase
        if phase == _ANSWER:
            row.node = row.pieces.first_trie if row.items == 0 else row.pieces.later_trie

    def _terminator(self, row: _Row) -> list[int]:
        """What follows the current item: the separator, or ``</answer>`` + EOS."""
        p = row.pieces
        return list(p.separator) if row.items + 1 < p.n_items else list(p.answer_close) + [self.eos]

    def _allowed(self, row: _Row) -> list[int]:
        if row.phase == _FORCE:
            return [row.queue[0]]
        if row.phase == _DONE:
            return [self.eos]
        node = row.node
        allowed = [tok for tok, child in node.children.items() if child.through - row.used]
        if node.ends - row.used:
            allowed.append(self._terminator(row)[0])
        return allowed

    def _advance(self, row: _Row, token: int) -> None:
        if row.phase == _FORCE:
            row.queue.pop(0)
            if not row.queue:
                self._enter(row, row.after)
        elif row.phase == _ANSWER:
            node = row.node
            finishing = node.ends - row.used
            terminator = self._terminator(row)
            # a finished name followed by the separator's first token ends the item
            if finishing and token == terminator[0]:
                row.used.add(min(finishing))
                row.items += 1
                done = row.items == row.pieces.n_items
                self._force(row, terminator[1:], then=_DONE if done else _ANSWER)
            else:
                row.node = node.children[token]
        # _THINK: free text; _DONE: padding after EOS


__all__ = ["AnswerPieces", "ConstrainedAnswerProcessor", "Trie", "answer_pieces", "think_banned_mask"]
