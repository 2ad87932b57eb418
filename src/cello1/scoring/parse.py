"""Answer extraction and the strict format check (spec §5), exactly as the paper's code.

Two functions define everything downstream:

* :func:`extract_answer` — *tolerant*: the first line containing ``<answer>`` → the
  text after it on that line (a trailing ``</answer>`` removed); if that gives nothing,
  the first line containing ``|``, stripped; else ``""``.
* :func:`is_valid_format` — *strict*: exactly one of each of ``<think>``, ``</think>``,
  ``<answer>``, ``</answer>``; the whole completion matches
  ``^<think>.*?</think>\\n<answer>.*?</answer>$`` (DOTALL, Python ``re.match``
  semantics); and the extracted answer contains ``|``.

Subtleties that follow from the released code and are pinned by tests:

* "Lines" are ``str.splitlines()`` lines (``\\n``, ``\\r\\n``, ``\\r``, ``\\u2028`` …).
* The ``|`` fallback also applies when the ``<answer>`` line holds nothing after the tag,
  so ``<answer>\\nA | B\\n</answer>`` extracts ``A | B``. An answer that starts on the tag
  line and continues on the next lines is cut to its first line.
* Python's ``$`` also matches before one final ``\\n``: a completion ending in
  ``</answer>\\n`` is valid; ``</answer>\\r\\n`` or ``</answer> `` is not.
* An N=1 answer holds no ``|``, so it never passes the strict check (reward −1). The
  paper's puzzles have N ≥ 8; our builders must not make N=1 puzzles for RL.

Pure Python, no imports beyond the standard library. The strict check is done with
plain string operations (checked against the regex by property tests) because it
runs once per rollout in RL and must stay cheap on multi-kilobyte reasoning.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# The spec's regex, kept as the reference definition (tests compare against it).
STRICT_RE = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)
# Every line boundary that str.splitlines() knows.
_LINE_END = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def extract_answer(text: str) -> str:
    """The answer string of a completion (tolerant; see module docstring)."""
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


_MIDDLE = THINK_CLOSE + "\n" + ANSWER_OPEN
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
# Scanning "<" with str.find (memchr) beats four full str.count passes when the text has
# few "<"; beyond this many we fall back to str.count/str.find.
_MAX_ANGLE_SCAN = 32


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
    if any(text.count(tag) != 1 for tag in _TAGS):
        return None
    return text.find(THINK_OPEN), text.find(THINK_CLOSE), text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)


def _single_line(text: str) -> bool:
    """True if ``text`` holds no str.splitlines() boundary (cheap check for ASCII text;
    non-ASCII text goes through the general regex search)."""
    if text.isascii():
        return not (
            "\n" in text or "\r" in text or "\x0b" in text or "\x0c" in text
            or "\x1c" in text or "\x1d" in text or "\x1e" in text
        )
    return _LINE_END.search(text) is None


def strict_answer(text: str) -> str | None:
    """The extracted answer if ``text`` passes the strict check, else ``None``.

    Equivalent to ``STRICT_RE.match`` + the four tag counts + :func:`extract_answer`
    (property tests compare them), done with string operations for speed.
    """
    if not isinstance(text, str):
        return None
    if text.count("<") == 4:
        # The common case: the four "<" can only be the four tags, in this order.
        if not text.startswith(THINK_OPEN):
            return None
        think_close = text.find("<", len(THINK_OPEN))
        if not text.startswith(_MIDDLE, think_close):
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
        if think_open != 0 or not text.startswith(_MIDDLE, think_close):
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
    """The paper's strict format check (see module docstring)."""
    return strict_answer(text) is not None


def split_labels(answer: str) -> list[str]:
    """Answer string → labels: split on ``|``, stripped, empties dropped."""
    return [part for part in map(str.strip, answer.split("|")) if part]


def parse_prediction(text: str) -> list[str] | None:
    """The predicted labels if the strict format check passes, else ``None``."""
    answer = strict_answer(text)
    return None if answer is None else split_labels(answer)


def gold_labels(gold: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Gold answer → labels. Accepts ``"A | B | C"``, a list of labels, or a full
    ``<think>…</think>\\n<answer>…</answer>`` completion (the reasoning split's
    ``assistant_msg``)."""
    if gold is None:
        return []
    if isinstance(gold, str):
        return split_labels(extract_answer(gold) if ANSWER_OPEN in gold else gold)
    return [str(label).strip() for label in gold if str(label).strip()]
