"""Shared fixtures: the official examples, the embedded data, small CELLxGENE-schema AnnData."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
OFFICIAL_EXAMPLES = SHARED_DATA / "cellpuzzles_official_test_examples.jsonl"
MODEL_CARD_EXAMPLE = SHARED_DATA / "model_card_example.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def official_records() -> list[dict]:
    path = OFFICIAL_EXAMPLES if OFFICIAL_EXAMPLES.exists() else FIXTURES / OFFICIAL_EXAMPLES.name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def model_card_record() -> dict:
    path = MODEL_CARD_EXAMPLE if MODEL_CARD_EXAMPLE.exists() else FIXTURES / MODEL_CARD_EXAMPLE.name
    return json.loads(path.read_text(encoding="utf-8"))
