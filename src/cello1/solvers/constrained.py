"""``--constrained``: answers that pass the strict check and are a permutation of the
candidates, by construction, within ``max_new_tokens`` — on every engine.

The engine-agnostic core is :class:`AnswerState`, one per generated sequence. The engine
tells it each token it generated and asks, before every step, which tokens are allowed;
it drives the sequence through these phases:

1. force ``<think>`` (skipped when the chat template already opened it, Qwen3-style:
   the prompt ends with ``<think>``);
2. free reasoning, except that tokens containing ``<`` (and EOS / special tokens) are
   masked, so no stray tag can break the strict format. When the model's top choice
   *is* such a token (it wants to write ``</think>`` or stop), or when the remaining
   budget is just enough for the closing text plus the longest possible answer (the
   *budget guard*), the state forces ``</think>\n<answer>``;
3. the answer: a walk over a token trie of the candidate names — only continuations of
   unused candidates are allowed, a finished name is followed by the forced separator
   ``" |"`` (the next name is tokenised with its leading space, ``" " + name``, as the
   model would write it) until exactly N names are written, then ``</answer>`` and EOS.

Adapters apply it as each engine's logits hook: :class:`ConstrainedAnswerProcessor`
(transformers ``generate``), :func:`cello1.solvers.gguf.GGUFSolver` (llama.cpp's
``logits_processor``) and :mod:`cello1.solvers.vllm_constrained` (vLLM's per-request
logits processors, offline or in ``vllm serve``).

Every piece is tokenised on its own and emitted through allowed-token masks, so tokens
that merge across piece boundaries (``" | T"`` → ``" |"``, ``" T"``) cannot derail the
walk; :func:`answer_pieces` checks that decoding the pieces gives back the exact text.

Servers that take only a grammar (llama.cpp's GBNF, vLLM's structured outputs) cannot
express "no repeats" (a permutation grammar has N! branches): :func:`answer_regex` and
:func:`answer_gbnf` guarantee the strict format with every item a candidate, and the
runner adds ``--repair`` for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    return candidate_pieces(tokenizer, puzzle.candidates, puzzle.n, puzzle.id)


def candidate_pieces(tokenizer: Any, candidates: Sequence[str], n_items: int, name: str = "puzzle") -> AnswerPieces:
    """:func:`answer_pieces` from the candidate names and the number of cells alone (what an
    engine's worker process receives with a request).

    ``tokenizer`` needs ``encode(text, add_special_tokens=False)`` and
    ``decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)`` (a
    transformers tokenizer or :class:`cello1.solvers.gguf.LlamaTokenizer`).
    """
    candidates = list(candidates)
    if n_items > len(candidates):
        raise InputError(f"puzzle {name}: {n_items} cells but only {len(candidates)} candidates")
    if n_items < 2:
        raise InputError(
            f"puzzle {name}: {{constrained}} needs N >= 2 (a one-item answer has no '|')", params=["constrained"]
        )
    bad = [c for c in candidates if any(ch in c for ch in "|<\n") or c != c.strip()]
    if bad:
        raise InputError(
            f"puzzle {name}: candidate {bad[0]!r} cannot appear in a strict answer ('|', '<', newline or edge spaces)"
        )
    common = {
        "think_open": _ids(tokenizer, THINK_OPEN),
        "think_close": _ids(tokenizer, THINK_TO_ANSWER),
        "answer_close": _ids(tokenizer, ANSWER_CLOSE),
        "first": [_ids(tokenizer, c) for c in candidates],
        "n_items": n_items,
    }
    # preferred: "A" + " |" + " B" (natural tokens); fallback: "A" + " | " + "B"
    schemes = [
        (_ids(tokenizer, ANSWER_SEP.rstrip()), [_ids(tokenizer, " " + c) for c in candidates]),
        (_ids(tokenizer, ANSWER_SEP), common["first"]),
    ]
    for separator, later in schemes:
        pieces = AnswerPieces(separator=separator, later=later, **common)
        if _decodes_exactly(tokenizer, pieces, candidates):
            return pieces
    raise InputError(
        f"{{constrained}}: the tokenizer cannot spell the candidates of puzzle {name} piece by piece "
        "(decoding changes spaces or characters); run without {constrained} (and use {repair})",
        params=["constrained", "repair"],
    )


def _decodes_exactly(tokenizer: Any, p: AnswerPieces, candidates: list[str]) -> bool:
    if any(len(s) == 0 for s in p.first + p.later) or not (p.separator and p.think_close and p.answer_close):
        return False
    m = len(candidates)
    order = list(range(m))[: p.n_items]
    ids = list(p.think_open) + list(p.think_close) + list(p.first[order[0]])
    for i in order[1:]:
        ids += list(p.separator) + list(p.later[i])
    ids += list(p.answer_close)
    expected = render_completion("", [candidates[i] for i in order])
    if _decode(tokenizer, ids) != expected:
        return False
    # every name as the first item, and every name after a separator
    for c in range(m):
        probe = list(p.think_close) + list(p.first[c]) + list(p.separator) + list(p.later[c]) + list(p.answer_close)
        name = candidates[c]
        if _decode(tokenizer, probe) != THINK_TO_ANSWER + render_answer([name, name]) + ANSWER_CLOSE:
            return False
    return True


# ---- the engine-agnostic state machine -----------------------------------------------------

_FORCE, _THINK, _ANSWER, _DONE = "force", "think", "answer", "done"


def think_banned_mask(tokenizer: Any, vocab_size: int, eos_ids: Sequence[int]) -> np.ndarray:
    """Tokens the free reasoning may not use (a boolean array over the model's vocabulary):
    any containing ``<`` (a tag could start), special tokens, EOS, and ids beyond the
    tokenizer's vocabulary.
    """
    n = min(len(tokenizer), vocab_size)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
    banned = np.zeros(vocab_size, dtype=bool)
    banned[[i for i, t in enumerate(texts) if "<" in t]] = True
    banned[n:] = True
    special = [i for i in list(tokenizer.all_special_ids) + list(eos_ids) if i is not None and 0 <= i < vocab_size]
    banned[special] = True
    return banned


class AnswerState:
    """The constraint for one generated sequence, independent of the engine.

    Call :meth:`feed` with every token the sequence generated (or :meth:`sync` with all of
    them) and :meth:`allowed` before each step: ``None`` means free reasoning (mask the
    :func:`think_banned_mask` tokens), a list means only those token ids.

    ``open_think=False`` when the chat template already opened ``<think>`` in the prompt.
    """

    def __init__(
        self,
        pieces: AnswerPieces,
        *,
        max_new_tokens: int,
        eos_token_id: int,
        banned: np.ndarray,
        open_think: bool = True,
    ) -> None:
        needed = pieces.closing_budget() + (len(pieces.think_open) if open_think else 0)
        if max_new_tokens < needed:
            raise InputError(
                f"{{max_new_tokens}}={max_new_tokens} is too small for {{constrained}}: this puzzle needs at "
                f"least {needed} tokens (<think></think> plus its longest possible answer)",
                params=["max_new_tokens", "constrained"],
            )
        self.pieces, self.max_new_tokens, self.eos, self.banned = pieces, int(max_new_tokens), eos_token_id, banned
        self.generated = 0
        self.phase, self.queue, self.after = _THINK, [], _THINK
        self.used: set[int] = set()
        self.items = 0
        self.node: Trie | None = None
        if open_think:
            self._force(pieces.think_open, then=_THINK)

    # ---- what the engine calls ----------------------------------------------------------
    def allowed(self, top_token: Callable[[], int]) -> list[int] | None:
        """Allowed next tokens, or ``None`` for free reasoning; ``top_token()`` gives the
        model's current top choice (only asked while reasoning).
        """
        if self.phase == _THINK:
            remaining = self.max_new_tokens - self.generated
            if self.banned[top_token()] or remaining <= self.pieces.closing_budget():
                self._force(self.pieces.think_close, then=_ANSWER)
            else:
                return None
        if self.phase == _FORCE:
            return [self.queue[0]]
        if self.phase == _DONE:
            return [self.eos]
        node = self.node
        allowed = [tok for tok, child in node.children.items() if child.through - self.used]
        if node.ends - self.used:
            allowed.append(self._terminator()[0])
        return allowed

    def feed(self, token: int) -> None:
        """Advance by one generated token."""
        self.generated += 1
        if self.phase == _FORCE:
            self.queue.pop(0)
            if not self.queue:
                self._enter(self.after)
        elif self.phase == _ANSWER:
            finishing = self.node.ends - self.used
            terminator = self._terminator()
            # a finished name followed by the separator's first token ends the item
            if finishing and token == terminator[0]:
                self.used.add(min(finishing))
                self.items += 1
                done = self.items == self.pieces.n_items
                self._force(terminator[1:], then=_DONE if done else _ANSWER)
            else:
                self.node = self.node.children[token]
        # _THINK: free text; _DONE: padding after EOS

    def sync(self, generated: Sequence[int]) -> None:
        """Feed the tokens of ``generated`` (all the sequence's tokens so far) not fed yet."""
        for token in generated[self.generated :]:
            self.feed(int(token))

    # ---- internals ----------------------------------------------------------------------
    def _force(self, ids: Sequence[int], then: str) -> None:
        self.phase, self.queue, self.after = _FORCE, list(ids), then
        if not self.queue:
            self._enter(then)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        if phase == _ANSWER:
            self.node = self.pieces.first_trie if self.items == 0 else self.pieces.later_trie

    def _terminator(self) -> list[int]:
        """What follows the current item: the separator, or ``</answer>`` + EOS."""
        p = self.pieces
        return list(p.separator) if self.items + 1 < p.n_items else list(p.answer_close) + [self.eos]


# ---- transformers ----------------------------------------------------------------------------


class ConstrainedAnswerProcessor:
    """transformers logits processor for one ``generate`` call (an :class:`AnswerState` per row).

    ``pieces[r]`` belongs to batch row ``r // num_return_sequences``. The prompt length is
    taken from the first call, so build a new processor for every ``generate`` call.
    """

    def __init__(
        self,
        pieces: list[AnswerPieces],
        *,
        max_new_tokens: int,
        eos_token_id: int,
        banned: Any,
        num_return_sequences: int = 1,
        open_think: bool = True,
    ) -> None:
        import torch

        mask = np.asarray(banned.cpu() if isinstance(banned, torch.Tensor) else banned, dtype=bool)
        self.rows = [
            AnswerState(p, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, banned=mask, open_think=open_think)
            for p in pieces
            for _ in range(num_return_sequences)
        ]
        self.banned = torch.from_numpy(mask)
        self.prompt_len: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Next-token scores of every row, ``-inf`` wherever the row's state forbids the token."""
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
                row.feed(token)
        out = scores.new_full(scores.shape, float("-inf"))
        banned = self.banned.to(scores.device)
        for r, row in enumerate(self.rows):
            allowed = row.allowed(lambda r=r: int(scores[r].argmax()))
            if allowed is None:
                out[r] = scores[r].masked_fill(banned, float("-inf"))
            else:
                out[r, allowed] = scores[r, allowed]
        return out


# ---- request arguments of vLLM's logits processor (cello1.solvers.vllm_constrained) ---------

# plain names and values, as vLLM's ``extra_args`` / the server's ``vllm_xargs`` require
CANDIDATES, CELLS, BUDGET, OPEN_THINK, FORCE = (
    "cello1_candidates",
    "cello1_cells",
    "cello1_max_new_tokens",
    "cello1_open_think",
    "cello1_force",
)


def constrained_args(candidates: Sequence[str], cells: int, max_new_tokens: int, open_think: bool) -> dict[str, Any]:
    """The extra request arguments that switch vLLM's constrained answer on."""
    return {CANDIDATES: list(candidates), CELLS: int(cells), BUDGET: int(max_new_tokens), OPEN_THINK: int(open_think)}


# ---- grammars for servers: strict format, every item a candidate -----------------------------


def grammar_think_chars(candidates: Sequence[str], n_items: int, max_new_tokens: int, open_think: bool) -> int:
    """How many characters of reasoning a grammar may allow so that the whole answer still
    fits in ``max_new_tokens``: every token of this ASCII text is at least one character,
    so the budget minus the longest possible closing text, in characters, is safe.
    """
    longest = sorted((len(c) for c in candidates), reverse=True)[:n_items]
    closing = len(THINK_TO_ANSWER) + sum(longest) + (n_items - 1) * len(ANSWER_SEP) + len(ANSWER_CLOSE)
    chars = max_new_tokens - closing - (0 if open_think else len(THINK_OPEN))
    if chars < 0:
        raise InputError(
            f"{{max_new_tokens}}={max_new_tokens} is too small for {{constrained}} through a grammar: the longest "
            f"answer needs {max_new_tokens - chars} tokens (counted as characters, the server's tokenizer being "
            "unknown here)",
            params=["max_new_tokens", "constrained"],
        )
    return chars


_REGEX_SPECIAL = set("\\.^$*+?()[]{}|/")


def _regex_literal(text: str) -> str:
    # only the characters special to regex engines; re.escape also escapes spaces and "-",
    # which some grammar engines (xgrammar) reject outside classes
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


def answer_regex(candidates: Sequence[str], n_items: int, think_chars: int, open_think: bool = False) -> str:
    """A regular expression for ``<think>…</think>\\n<answer>A | B | …</answer>`` with at most
    ``think_chars`` reasoning characters (no ``<``) and ``n_items`` items, each a candidate
    (vLLM's ``structured_outputs.regex``). ``open_think``: the prompt already opened ``<think>``.
    """
    item = "(" + "|".join(_regex_literal(c) for c in candidates) + ")"
    head = "" if open_think else _regex_literal(THINK_OPEN)
    close_think = _regex_literal(THINK_TO_ANSWER).replace("\n", "\\n")
    separator = _regex_literal(ANSWER_SEP)
    return (
        f"{head}[^<]{{0,{think_chars}}}{close_think}{item}({separator}{item}){{{n_items - 1}}}"
        f"{_regex_literal(ANSWER_CLOSE)}"
    )


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def answer_gbnf(candidates: Sequence[str], n_items: int, think_chars: int, open_think: bool = False) -> str:
    """The same language as :func:`answer_regex`, as a GBNF grammar (llama.cpp's ``grammar``)."""
    head = "" if open_think else _gbnf_literal(THINK_OPEN) + " "
    items = " ".join(["item"] + [f"{_gbnf_literal(ANSWER_SEP)} item"] * (n_items - 1))
    return (
        f"root ::= {head}think {_gbnf_literal(THINK_TO_ANSWER)} {items} {_gbnf_literal(ANSWER_CLOSE)}\n"
        f"think ::= [^<]{{0,{think_chars}}}\n"
        f"item ::= {' | '.join(_gbnf_literal(c) for c in candidates)}\n"
    )


__all__ = [
    "AnswerPieces",
    "AnswerState",
    "ConstrainedAnswerProcessor",
    "Trie",
    "answer_gbnf",
    "answer_pieces",
    "answer_regex",
    "candidate_pieces",
    "constrained_args",
    "grammar_think_chars",
    "think_banned_mask",
]
