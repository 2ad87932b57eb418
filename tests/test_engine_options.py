"""Engine options shared by the LLM backends (no engine needed): sampling defaults sent
explicitly, request bodies for each server's constraint, ``--extra-body``, CPU threads,
templates that open ``<think>`` themselves, and their one-line errors."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.puzzle import parse_record
from cello1.solvers.llm_common import cpu_threads, resolve_sampling, template_think_prefix
from cello1.solvers.openai_api import OpenAISolver


@pytest.fixture()
def puzzle(official_records):
    return parse_record(official_records[1])


def local(**options) -> OpenAISolver:
    return OpenAISolver(model="m", base_url="http://127.0.0.1:9/v1", max_new_tokens=300, **options)


def test_a_server_gets_every_sampling_setting_explicitly_greedy_by_default(puzzle):
    body = local().request_body(puzzle)
    assert body["temperature"] == 0 and body["top_p"] == 1 and body["top_k"] == 0 and body["min_p"] == 0
    assert body["repeat_penalty"] == 1 and body["repetition_penalty"] == 1  # llama.cpp's and vLLM's names
    body = local(temperature=0.5, repeat_penalty=1.2, extra_body={"top_k": 20, "x": 1}).request_body(puzzle)
    assert body["temperature"] == 0.5 and body["repetition_penalty"] == 1.2 and body["top_k"] == 20 and body["x"] == 1


def test_api_openai_com_gets_only_what_it_takes(puzzle, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    body = OpenAISolver(model="gpt", top_p=0.9).request_body(puzzle)
    assert body["temperature"] == 0 and body["top_p"] == 0.9
    assert not {"top_k", "min_p", "repeat_penalty", "repetition_penalty"} & set(body)
    reasoning = OpenAISolver(model="o", reasoning_effort="low").request_body(puzzle)
    assert "temperature" not in reasoning  # reasoning models reject it


def test_each_server_constraint_is_sent_as_that_server_takes_it(puzzle):
    regex = local(constrained=True, constrain_via="structured-outputs").request_body(puzzle)
    pattern = regex["structured_outputs"]["regex"]
    good = "<think>ok</think>\n<answer>" + " | ".join(puzzle.candidates[: puzzle.n]) + "</answer>"
    assert re.fullmatch(pattern, good) and not re.fullmatch(pattern, good.replace("</answer>", " | x</answer>"))
    gbnf = local(constrained=True, constrain_via="grammar").request_body(puzzle)["grammar"]
    assert gbnf.startswith("root ::= ") and all(f'"{c}"' in gbnf for c in puzzle.candidates)
    xargs = local(constrained=True, constrain_via="logits-processor").request_body(puzzle)["vllm_xargs"]
    assert xargs["cello1_candidates"] == puzzle.candidates and xargs["cello1_cells"] == puzzle.n
    assert local(constrained=True, constrain_via="grammar").settings()["constrained"] == "format"
    assert local(constrained=True, constrain_via="logits-processor").settings()["constrained"] == "permutation"


def test_engine_option_errors_are_one_line(puzzle):
    with pytest.raises(InputError, match="constrain_via.*must be one of"):
        local(constrained=True, constrain_via="magic")
    with pytest.raises(InputError, match=r"cannot ask http://127.0.0.1:9/v1/models which server it is"):
        local(constrained=True)  # auto asks the (unreachable) server
    with pytest.raises(InputError, match="too small for constrained through a grammar"):
        OpenAISolver(
            model="m", base_url="http://127.0.0.1:9/v1", max_new_tokens=20, constrained=True, constrain_via="grammar"
        ).request_body(puzzle)
    for bad, param in (({"top_p": 0}, "top_p"), ({"repeat_penalty": 0}, "repeat_penalty"), ({"min_p": 1}, "min_p")):
        with pytest.raises(InputError, match=param):
            resolve_sampling(1, **bad)
    result = CliRunner().invoke(app, ["solve", "x.jsonl", "-o", "p.jsonl", "--solver", "openai", "--extra-body", "{x"])
    assert result.exit_code != 0 and "--extra-body is not valid JSON" in result.output


def test_cpu_threads_default_to_the_idle_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (2.6, 0, 0))
    assert cpu_threads(None) == 1 and cpu_threads(3) == 3
    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0, 0))
    assert cpu_threads(None) == 4
    with pytest.raises(InputError, match="threads"):
        cpu_threads(0)


def test_a_template_that_opens_think_itself_is_recognised():
    assert template_think_prefix("<|im_start|>assistant\n<think>\n") == "<think>\n"
    assert template_think_prefix("<|im_start|>assistant\n") == ""
