"""``vllm serve`` for real (its OpenAI-compatible API server) + ``--solver openai``:
explicit greedy sampling, ``--constrained`` through cello1's logits processor (a
permutation) and through structured outputs (a regex, + ``--repair``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.io import write_puzzles
from cello1.solvers.run import solve

from .conftest import MODEL_NAME, constrained_budget, strict_items_are_candidates, strictly_valid_permutation

pytestmark = pytest.mark.engines
NEW_TOKENS = 48


def test_vllm_server_greedy_by_default_and_takes_extra_body(vllm_server, puzzles, tmp_path):
    assert vllm_server.models()["data"][0]["owned_by"] == "vllm"
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, puzzles)
    base = ["solve", str(path), "--solver", "openai", "--base-url", vllm_server.base_url, "--model", MODEL_NAME]
    # one request at a time: concurrent requests are batched (and prefix-cached) differently
    # from run to run, which can flip near-tied greedy choices of this small model
    base += ["--max-new-tokens", str(NEW_TOKENS), "--concurrency", "1", "--no-progress"]
    texts = []
    for name, extra in (("a", []), ("b", []), ("c", ["--extra-body", '{"max_tokens": 4}'])):
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(app, [*base, "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in out.read_text().splitlines()]
        texts.append([r["prediction"] for r in records])
        if name == "c":  # --extra-body goes into every request, last
            assert all(r["completion_tokens"] <= 4 for r in records)
    # no --temperature: greedy, so two runs give the same texts (the server would sample at 1.0)
    assert texts[0] == texts[1] and all(t.strip() for t in texts[0])
    assert texts[2] != texts[0]


def test_vllm_server_constrained_by_cellos_logits_processor(vllm_server, hf_folder, puzzles):
    from transformers import AutoTokenizer

    budget = constrained_budget(AutoTokenizer.from_pretrained(hf_folder), puzzles)
    records = solve(
        puzzles,
        "openai",
        model=MODEL_NAME,
        base_url=vllm_server.base_url,
        max_new_tokens=budget,
        constrained=True,
        constrain_via="logits-processor",
        progress=False,
    )
    for record, puzzle in zip(records, puzzles, strict=True):
        assert record.error is None
        assert strictly_valid_permutation(record.prediction, puzzle), record.prediction
        assert record.completion_tokens <= budget


def test_vllm_server_constrained_by_structured_outputs_plus_repair(vllm_server, puzzles):
    records = solve(
        puzzles,
        "openai",
        model=MODEL_NAME,
        base_url=vllm_server.base_url,
        max_new_tokens=288,
        constrained=True,  # constrain_via auto: the server says it is vLLM
        progress=False,
    )
    for record, puzzle in zip(records, puzzles, strict=True):
        assert record.error is None and record.options["constrain_via"] == "structured-outputs"
        assert strict_items_are_candidates(record.prediction, puzzle), record.prediction
        repaired = record.repaired_assignment
        assert len(set(repaired)) == puzzle.n and set(repaired) <= set(puzzle.candidates)
