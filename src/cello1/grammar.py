"""The answer grammar: tags, rendering, extraction, the strict check, splitting, gold parsing.

Every part of cello1 that writes or reads an answer goes through this module (see
``docs/format.md`` for the rules in prose). A completion is::

    <think>REASONING</think>\\n<answer>T1 | T2 | … | TN</answer>

* :func:`render_completion` / :func:`render_answer` write it;
* :func:`extract_answer` reads the answer *tolerantly*, as the original reward code: the
  first line containing ``<answer>`` → the text after it on that line (a trailing
  ``</answer>`` removed); if that gives nothing, the first line containing ``|``,
  stripped; else ``""``;
* :func:`strict_answer` / :func:`is_valid_format` apply the *strict* check: exactly one
  of each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>``; the whole completion
  matches ``^<think>.*?</think>\\n<answer>.*?</answer>$`` (DOTALL, Python ``re.match``
  semantics); and the extracted answer contains ``|``;
* :func:`split_labels` splits an answer on ``|`` (stripped, empties dropped);
  :func:`parse_prediction` = strict check + split; :func:`parse_gold` reads a gold
  answer (``"A | B"``, a list, or a full completion);
* :func:`answer_block`, :func:`loose_labels` and :func:`think_text` read an answer the
  forgiving way (for lenient scoring, repair and annotation): the whole last
  ``<answer>`` block, split on ``|`` and newlines, list prefixes removed.

Subtleties that follow from the released code and are pinned by tests:

* "Lines" are ``str.splitlines()`` lines (``\\n``, ``\\r\\n``, ``\\r``, ``\\u2028`` …).
* The ``|`` fallback also applies when the ``<answer>`` line holds nothing after the tag,
  so ``<answer>\\nA | B\\n</answer>`` extracts ``A | B``. An answer that starts on the tag
  line and continues on the next lines is cut to its first line.
* Python's ``$`` also matches before one final ``\\n``: a completion ending in
  ``</answer>\\n`` is valid; ``</answer>\\r\\n`` or ``</answer> `` is not.
* An N=1 answer holds no ``|``, so it never passes the strict check.

Pure Python, standard library only. The strict check is done with plain string
operations (property tests check it against the regex) because it runs once per rollout
in RL and must stay cheap on multi-kilobyte reasoning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ANSWER_SEP = " | "
THINK_TO_ANSWER = THINK_CLOSE + "\n" + ANSWER_OPEN
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# Every line boundary that str.splitlines() knows.
_LINE_END = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# A whole completion whose reasoning and answer can be taken apart exactly.
_COMPLETION_RE = re.compile(r"\A<think>(?P<think>.*?)</think>\n<answer>(?P<answer>.*?)</answer>\Z", re.DOTALL)
# "Cell 3:", "Type 2)", "3.", "4 -" at the start of a loosely written label.
_LIST_PREFIX = re.compile(r"^\s*(?:(?:cell|type)\s*\d+\s*[:.)\-]|\d+\s*[:.)\-])\s*", re.IGNORECASE)
# Scanning "<" with str.find (memchr) beats four full str.count passes when the text has
# few "<"; beyond this many we fall back to str.count/str.find.
_MAX_ANGLE_SCAN = 32


# ---- writing ---------------------------------------------------------------------------


def render_answer(labels: Sequence[str]) -> str:
    """Labels → ``"A | B | C"``."""
    return ANSWER_SEP.join(labels)


def render_completion(reasoning: str, labels: Sequence[str] | str) -> str:
    """``<think>{reasoning}</think>\\n<answer>{labels joined by ' | '}</answer>``."""
    answer = labels if isinstance(labels, str) else render_answer(labels)
    return f"{THINK_OPEN}{reasoning}{THINK_TO_ANSWER}{answer}{ANSWER_CLOSE}"


# ---- tolerant extraction (the reward's and the metrics') -------------------------------


def extract_answer(text: str) -> str:
    """The answer string of a completion, read tolerantly (see the module docstring)."""
    if not isinstance(text, str):
        return ""
    start = text.find(ANSWER_OPEN)
    if start >= 0:
        # The first line containing "<answer>" is the line of its first occurrence.
        start += len(ANSWER_OPEN)
        end = _LINE_END.search(text, start)
        candidate = text[start : end.start() if end else len(text)].strip()
        if candidate.endswith(ANSWER_CLOSE):
            # The released code removes every "</answer>" on the line, not just the last.
            candidate = candidate.replace(ANSWER_CLOSE, "").strip()
        if candidate:
            return candidate
    if "|" in text:
        for line in text.splitlines():
            if "|" in line:
                return line.strip()
    return ""


def split_labels(answer: str) -> list[str]:
    """Answer string → labels: split on ``|``, stripped, empties dropped."""
    return [part for part in map(str.strip, answer.split("|")) if part]


# ---- the strict check ------------------------------------------------------------------


def _tag_positions(text: str) -> tuple[int, int, int, int] | None:
    """Positions of <think>, </think>, <answer>, </answer> if each occurs exactly once."""
    t_open = t_close = a_open = a_close = -1
    find, starts = text.find, text.startswith
    pos = find("<")
    seen = 0
    while pos >= 0:
        seen += 1
        if seen > _MAX_ANGLE_SCAN:
            return _tag_positions_by_count(text)
        if starts(THINK_OPEN, pos):
            if t_open >= 0:
                return None
            t_open = pos
        elif starts(THINK_CLOSE, pos):
            if t_close >= 0:
                return None
            t_close = pos
        elif starts(ANSWER_OPEN, pos):
            if a_open >= 0:
                return None
            a_open = pos
        elif starts(ANSWER_CLOSE, pos):
            if a_close >= 0:
                return None
            a_close = pos
        pos = find("<", pos + 1)
    if t_open < 0 or t_close < 0 or a_open < 0 or a_close < 0:
        return None
    return t_open, t_close, a_open, a_close


def _tag_positions_by_count(text: str) -> tuple[int, int, int, int] | None:
    if any(text.count(tag) != 1 for tag in TAGS):
        return None
    return text.find(THINK_OPEN), text.find(THINK_CLOSE), text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)


def _single_line(text: str) -> bool:
    """True if ``text`` holds no str.splitlines() boundary (cheap check for ASCII text;
    non-ASCII text goes through the general regex search).
    """
    if text.isascii():
        return not any(ch in text for ch in "\n\r\x0b\x0c\x1c\x1d\x1e")
    return _LINE_END.search(text) is None


def strict_answer(text: str) -> str | None:
    """The extracted answer if ``text`` passes the strict check, else ``None``.

    Equivalent to the regex + the four tag counts + :func:`extract_answer` (property
    tests compare them), done with string operations for speed.
    """
    if not isinstance(text, str):
        return None
    if text.count("<") == 4:
        # The common case: the four "<" can only be the four tags, in this order.
        if not text.startswith(THINK_OPEN):
            return None
        think_close = text.find("<", len(THINK_OPEN))
        if not text.startswith(THINK_TO_ANSWER, think_close):
            return None
        answer_open = think_close + len(THINK_CLOSE) + 1
        answer_close = text.find("<", answer_open + 1)
        if not text.startswith(ANSWER_CLOSE, answer_close):
            return None
    else:
        tags = _tag_positions(text)
        if tags is None:
            return None
        think_open, think_close, answer_open, answer_close = tags
        # Each tag occurs once, so the regex holds iff the text starts with <think>,
        # "</think>\n<answer>" is contiguous and </answer> ends the text (checked below;
        # Python's ``$`` also allows one final "\n").
        if think_open != 0 or not text.startswith(THINK_TO_ANSWER, think_close):
            return None
    tail = len(text) - answer_close - len(ANSWER_CLOSE)
    if tail != 0 and not (tail == 1 and text[-1] == "\n"):
        return None
    inner = text[answer_open + len(ANSWER_OPEN) : answer_close]
    # Fast path: the answer sits on the tag line -> the tolerant extraction gives
    # exactly the stripped inner text.
    answer = inner.strip() if _single_line(inner) else ""
    if not answer:
        answer = extract_answer(text)
    return answer if "|" in answer else None


def is_valid_format(text: str) -> bool:
    """The strict format check (see the module docstring)."""
    return strict_answer(text) is not None


def parse_prediction(text: str) -> list[str] | None:
    """The predicted labels if the strict format check passes, else ``None``."""
    answer = strict_answer(text)
    return None if answer is None else split_labels(answer)


def parse_gold(gold: str | Sequence[str] | None) -> list[str]:
    """Gold answer → labels.

    Accepts ``"A | B | C"``, a list of labels, or a full
    ``<think>…</think>\\n<answer>…</answer>`` completion (a reasoning record's gold).
    """
    if gold is None:
        return []
    if isinstance(gold, str):
        return split_labels(extract_answer(gold) if ANSWER_OPEN in gold else gold)
    return [str(label).strip() for label in gold if str(label).strip()]


def split_completion(text: str) -> tuple[str | None, list[str]]:
    """``(reasoning, labels)`` of a gold or teacher record's text.

    A strict ``<think>…</think>\\n<answer>…</answer>`` is taken apart exactly (the
    reasoning as written); anything else is an answer string with no reasoning.
    """
    match = _COMPLETION_RE.match(text)
    if match is not None:
        return match["think"], split_labels(match["answer"])
    return None, parse_gold(text)


# ---- forgiving reading (lenient scoring, repair, annotation) ---------------------------


def answer_block(text: str) -> str:
    """The whole last ``<answer>`` block (all its lines; a missing ``</answer>`` is fine),
    else the tolerant :func:`extract_answer`.
    """
    if not isinstance(text, str):
        return ""
    start = text.rfind(ANSWER_OPEN)
    if start < 0:
        return extract_answer(text)
    start += len(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE, start)
    return text[start : end if end >= 0 else len(text)]


def loose_labels(text: str) -> list[str]:
    """Labels written loosely: :func:`answer_block` split on ``|`` and newlines, list
    prefixes such as ``Cell 3:`` or ``3.`` removed.
    """
    parts = re.split(r"\||\r\n|\n|\r", answer_block(text))
    return [p for p in (_LIST_PREFIX.sub("", part).strip() for part in parts) if p]


def think_text(text: str) -> str:
    """The reasoning of a completion: between ``<think>`` and ``</think>`` (or up to
    ``<answer>`` / the end when ``</think>`` is missing), stripped.
    """
    if not isinstance(text, str):
        return ""
    start = text.find(THINK_OPEN)
    body = text[start + len(THINK_OPEN) :] if start >= 0 else text
    for stop in (THINK_CLOSE, ANSWER_OPEN):
        cut = body.find(stop)
        if cut >= 0:
            return body[:cut].strip()
    return body.strip() if start >= 0 else ""


__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "ANSWER_SEP",
    "TAGS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "THINK_TO_ANSWER",
    "answer_block",
    "extract_answer",
    "is_valid_format",
    "loose_labels",
    "parse_gold",
    "parse_prediction",
    "render_answer",
    "render_completion",
    "split_completion",
    "split_labels",
    "strict_answer",
    "think_text",
]
