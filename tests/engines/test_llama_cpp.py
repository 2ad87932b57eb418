"""llama.cpp for real: llama-cpp-python in process (``--solver gguf``) and its
OpenAI-compatible server (``python -m llama_cpp.server`` + ``--solver openai``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.solvers.run import solve

from .conftest import (
    MODEL_NAME,
    constrained_budget,
    require,
    strict_items_are_candidates,
    strictly_valid_permutation,
)

pytestmark = pytest.mark.engines
NEW_TOKENS = 48


@pytest.fixture(scope="module")
def gguf_solver(gguf_model):
    require("llama_cpp")
    from cello1.solvers.gguf import GGUFSolver

    solver = GGUFSolver(str(gguf_model), max_new_tokens=NEW_TOKENS, max_model_len=4096, threads=1)
    yield solver
    solver.close()


@pytest.fixture(scope="module")
def gguf_texts(gguf_solver, puzzles) -> list[str]:
    """Greedy completions of the three puzzles in process."""
    return [gguf_solver.solve_one(p).text for p in puzzles]


def test_gguf_in_process_is_greedy_and_deterministic(gguf_solver, gguf_texts, puzzles):
    again = gguf_solver.solve_one(puzzles[0])
    assert again.text == gguf_texts[0] and again.text.strip()
    assert 0 < again.completion_tokens <= NEW_TOKENS and again.prompt_tokens > 100
    settings = gguf_solver.settings()
    assert settings["temperature"] == 0 and settings["repeat_penalty"] == 1.0
    # the repeat penalty reaches llama.cpp: 1.5 changes the greedy text
    gguf_solver.sampling = type(gguf_solver.sampling)(temperature=0.0, repeat_penalty=1.5)
    try:
        assert gguf_solver.solve_one(puzzles[0]).text != gguf_texts[0]
    finally:
        gguf_solver.sampling = type(gguf_solver.sampling)(temperature=0.0)


def test_gguf_constrained_answers_are_always_valid_permutations(gguf_solver, puzzles):
    budget = constrained_budget(gguf_solver.tokenizer, puzzles)
    gguf_solver.constrained, gguf_solver.max_new_tokens = True, budget
    try:
        completions = [gguf_solver.solve_one(p) for p in puzzles]
    finally:
        gguf_solver.constrained, gguf_solver.max_new_tokens = False, NEW_TOKENS
    for completion, puzzle in zip(completions, puzzles, strict=True):
        assert strictly_valid_permutation(completion.text, puzzle), completion.text
        assert completion.completion_tokens <= budget


def test_gguf_rejects_likelihood_and_a_too_long_prompt_in_one_line(gguf_model, puzzles):
    from cello1.solvers.gguf import GGUFSolver

    with pytest.raises(InputError, match="likelihood needs .*hf or vllm"):
        GGUFSolver(str(gguf_model), assignment="likelihood")
    small = GGUFSolver(str(gguf_model), max_model_len=256, max_new_tokens=8, threads=1)
    try:
        with pytest.raises(InputError, match="exceed the context of 256 tokens; raise max_model_len"):
            small.solve_one(puzzles[0])
    finally:
        small.close()


def test_llama_server_gives_the_in_process_greedy_text(llama_server, gguf_texts, puzzles, tmp_path):
    """The server's own defaults (temperature 0.8, repeat penalty 1.1) would change the
    text: cello1 sends every sampling setting, so the outputs are identical.
    """
    assert llama_server.models()["data"][0]["id"] == MODEL_NAME
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, puzzles)
    out = tmp_path / "pred.jsonl"
    args = ["solve", str(path), "-o", str(out), "--solver", "openai", "--base-url", llama_server.base_url]
    args += ["--model", MODEL_NAME, "--max-new-tokens", str(NEW_TOKENS), "--concurrency", "1", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prediction"] for r in records] == gguf_texts


def test_llama_server_constrained_by_grammar_plus_repair(llama_server, puzzles):
    """llama.cpp's server takes a GBNF grammar: strict format, every item a candidate; the
    runner adds the optimal-assignment repair for uniqueness. The grammar's budget counts
    characters (the server's tokenizer is unknown to cello1), so it needs more
    ``max_new_tokens`` than the answer takes: the text stays ~80 tokens.
    """
    budget = 288
    records = solve(
        puzzles,
        "openai",
        model=MODEL_NAME,
        base_url=llama_server.base_url,
        max_new_tokens=budget,
        constrained=True,
        concurrency=1,
        progress=False,
    )
    assert len(records) == len(puzzles)
    for record, puzzle in zip(records, puzzles, strict=True):
        assert record.error is None
        assert strict_items_are_candidates(record.prediction, puzzle), record.prediction
        repaired = record.repaired_assignment
        assert len(set(repaired)) == puzzle.n and set(repaired) <= set(puzzle.candidates)
        assert record.options["constrain_via"] == "grammar"
