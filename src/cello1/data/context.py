"""The donor context sentence of a puzzle (docs/format.md §3).

    The cell is from a {sex} at the {development_stage} with {self_reported_ethnicity}
    background, originating from the {tissue}. The patient is healthy with no diagnosed
    disease. / The patient has been diagnosed with {disease}.

Each clause appears only when its field has a value; optional dataset-specific
sentences (smoking, tumour stage, BMI, …) follow when those columns exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# Values that mean "no information" (compared case-insensitively after stripping).
MISSING_VALUES = frozenset({"", "nan", "none", "unknown", "na", "n/a", "null"})

# CELLxGENE schema column names used by the first sentence and the disease sentence.
CONTEXT_FIELDS = ("sex", "development_stage", "self_reported_ethnicity", "tissue", "disease")


def is_missing(value: Any) -> bool:
    """True for None, NaN and the placeholder strings of docs/format.md §3 ("unknown", "nan", "na", …)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_VALUES


def _value(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    return None if is_missing(value) else str(value).strip()


def stage_phrase(development_stage: str) -> str:
    """CELLxGENE ``"73-year-old human stage"`` → ``"73-year-old stage"`` (as in the
    official data); a value without "stage" gets it appended (``"adult"`` → ``"adult stage"``).
    """
    phrase = re.sub(r"\s+", " ", re.sub(r"\b(human|mouse)\b", " ", development_stage)).strip()
    if not phrase.lower().endswith("stage"):
        phrase += " stage"
    return phrase


def donor_sentence(row: Mapping[str, Any]) -> str:
    """The first sentence: sex, stage, ethnicity and tissue clauses, each only if present."""
    sex, stage, ethnicity, tissue = (_value(row, k) for k in CONTEXT_FIELDS[:4])
    if not (sex or stage or ethnicity):
        # the sentence hangs off "from a {sex}"; with tissue alone we say it plainly
        return f"The cell originates from the {tissue}." if tissue else ""
    text = f"The cell is from a {sex or 'donor'}"
    if stage:
        text += f" at the {stage_phrase(stage)}"
    if ethnicity:
        text += f" with {ethnicity} background"
    if tissue:
        text += f", originating from the {tissue}"
    return text + "."


def disease_sentence(row: Mapping[str, Any]) -> str:
    """The disease sentence of a cell's obs fields; ``""`` when there is no disease value."""
    disease = _value(row, "disease")
    if disease is None:
        return ""
    if disease.lower() in {"normal", "healthy", "control"}:
        return "The patient is healthy with no diagnosed disease."
    return f"The patient has been diagnosed with {disease}."


# ---- optional dataset-specific sentences -----------------------------------------------


def _smoking(value: str) -> str:
    v = value.lower()
    if "smoker" in v and not v.startswith(("non", "never")):
        return f"The patient is a {value}."  # e.g. "former smoker"
    if v.startswith(("non", "never", "no")) or v in {"false", "0"}:
        return "The patient is a non-smoker."
    if v in {"yes", "true", "1", "current", "smoking"}:
        return "The patient is a smoker."
    return f"The patient's smoking status is {value}."


def _tumour_stage(value: str) -> str:
    v = value.lower()
    if v in {"non-cancer", "non cancer", "no cancer", "normal", "healthy", "control", "no tumor", "no tumour"}:
        return "There is no cancer present."
    if "early" in v:
        return "The patient has an early-stage tumor."
    if "advanced" in v or "late" in v:
        return "The patient has an advanced-stage tumor."
    return f"The tumor stage is {value}."


# column name (as found in obs) -> sentence builder; first matching column per topic wins
EXTRA_SENTENCES: tuple[tuple[tuple[str, ...], Callable[[str], str]], ...] = (
    (("smoking_status", "smoking", "smoker"), _smoking),
    (("tumor_stage", "tumour_stage", "cancer_stage"), _tumour_stage),
    (("bmi", "BMI"), lambda v: f"The patient has a BMI of {v}."),
    (("treatment_time_point", "time_point", "timepoint"), lambda v: f"The sample was taken at the {v} time point."),
    (("hemisphere",), lambda v: f"The cell is from the {v} hemisphere."),
    (("activation_state", "activation"), lambda v: f"The cell is in the {v} activation state."),
    (("genotype",), lambda v: f"The donor's genotype is {v}."),
)


def extra_sentences(row: Mapping[str, Any]) -> list[str]:
    """One sentence per optional obs field present (smoking, tumour stage, BMI, …), in a fixed order."""
    sentences = []
    for columns, build in EXTRA_SENTENCES:
        for column in columns:
            value = _value(row, column)
            if value is not None:
                sentences.append(build(value))
                break
    return sentences


def context_sentence(obs_row: Mapping[str, Any]) -> str:
    """The puzzle's ``Context:`` text from one cell's obs fields (docs/format.md §3).

    >>> context_sentence({"sex": "female", "development_stage": "73-year-old human stage",
    ...                   "tissue": "lung", "disease": "normal"})  # doctest: +NORMALIZE_WHITESPACE
    'The cell is from a female at the 73-year-old stage, originating from the lung.
     The patient is healthy with no diagnosed disease.'
    """
    parts = [donor_sentence(obs_row), disease_sentence(obs_row), *extra_sentences(obs_row)]
    return " ".join(p for p in parts if p)


def context_columns(columns: list[str] | Any) -> list[str]:
    """The obs columns that :func:`context_sentence` reads, among ``columns``."""
    wanted = set(CONTEXT_FIELDS) | {c for cols, _ in EXTRA_SENTENCES for c in cols}
    return [c for c in columns if c in wanted]
