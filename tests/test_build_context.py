"""The donor context sentence (docs/format.md §3)."""

from __future__ import annotations

import pytest

from cello1.data import context_sentence, is_missing

SPEC_EXAMPLE = (
    "The cell is from a female at the 73-year-old stage, originating from the lung. "
    "The patient has been diagnosed with chronic obstructive pulmonary disease. "
    "The patient is a smoker. There is no cancer present."
)


def test_spec_example_sentence_from_cellxgene_fields():
    row = {
        "sex": "female",
        "development_stage": "73-year-old human stage",
        "self_reported_ethnicity": "unknown",
        "tissue": "lung",
        "disease": "chronic obstructive pulmonary disease",
        "smoking_status": "smoker",
        "tumor_stage": "non-cancer",
    }
    assert context_sentence(row) == SPEC_EXAMPLE


def test_all_clauses_and_healthy_donor():
    row = {
        "sex": "male",
        "development_stage": "55-year-old human stage",
        "self_reported_ethnicity": "European",
        "tissue": "pleural effusion",
        "disease": "normal",
    }
    assert context_sentence(row) == (
        "The cell is from a male at the 55-year-old stage with European background, "
        "originating from the pleural effusion. The patient is healthy with no diagnosed disease."
    )


def test_official_advanced_stage_and_non_smoker_sentences():
    row = {"sex": "male", "disease": "lung adenocarcinoma", "smoking_status": "non-smoker", "tumor_stage": "advanced"}
    assert context_sentence(row) == (
        "The cell is from a male. The patient has been diagnosed with lung adenocarcinoma. "
        "The patient is a non-smoker. The patient has an advanced-stage tumor."
    )


@pytest.mark.parametrize(
    "missing", [None, float("nan"), "nan", "NaN", "unknown", "Unknown", "none", "", "  ", "na", "NA"]
)
def test_missing_values_drop_their_clause(missing):
    assert is_missing(missing)
    row = {"sex": missing, "development_stage": "adult", "tissue": "blood", "disease": missing}
    assert context_sentence(row) == "The cell is from a donor at the adult stage, originating from the blood."


def test_tissue_only_and_nothing():
    assert context_sentence({"tissue": "blood", "disease": "normal"}) == (
        "The cell originates from the blood. The patient is healthy with no diagnosed disease."
    )
    assert context_sentence({}) == ""
    assert context_sentence({"cell_type": "B cell"}) == ""


def test_extra_columns():
    row = {"disease": "normal", "bmi": "24.5", "hemisphere": "left", "genotype": "APOE4/APOE4"}
    text = context_sentence(row)
    assert text.startswith("The patient is healthy with no diagnosed disease. ")
    assert "The patient has a BMI of 24.5." in text
    assert "left hemisphere" in text and "APOE4/APOE4" in text


def test_not_missing():
    assert not is_missing("female")
    assert not is_missing(0)
    assert not is_missing(float("inf"))
