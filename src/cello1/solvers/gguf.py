"""``gguf``: llama-cpp-python in-process (optional extra: ``pip install 'cello1[gguf]'``).

    solver = GGUFSolver("SmolLM2-135M-Instruct.Q4_1.gguf", max_new_tokens=512)
    solver = GGUFSolver("model.gguf", constrained=True)   # always a valid permutation

The prompt is rendered with the chat template from the GGUF metadata (the same Jinja
template transformers uses) and sent as token ids, so ``hf``, ``vllm`` and ``gguf`` see
the same prompt. One puzzle at a time (llama.cpp keeps its own threads busy and reuses
the KV cache of the previous prompt's shared beginning); ``n`` samples are ``n`` calls
with consecutive seeds. ``--constrained`` runs :class:`~cello1.solvers.constrained.AnswerState`
as llama.cpp's ``logits_processor``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Completion, Solver
from cello1.solvers.hf import DEFAULT_MAX_NEW_TOKENS, PLAIN_TEMPLATE
from cello1.solvers.llm_common import (
    cpu_threads,
    import_extra,
    reject_unsupported,
    resolve_assignment,
    resolve_prompt_layout,
    resolve_sampling,
    template_think_prefix,
)

DEFAULT_CONTEXT = 8192


class LlamaTokenizer:
    """The few transformers-tokenizer methods :mod:`cello1.solvers.constrained` uses, on a
    ``llama_cpp.Llama`` model.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.eos_token_id = llm.token_eos()
        self.all_special_ids = [i for i in (llm.token_bos(), llm.token_eos()) if i is not None and i >= 0]

    def __len__(self) -> int:
        return self.llm.n_vocab()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids; added tokens written in ``text`` (e.g. ``<think>`` in Qwen3) are recognised."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def decode(self, ids: list[int], skip_special_tokens: bool = True, **_: Any) -> str:
        """Text of ``ids``; control tokens are left out with ``skip_special_tokens``."""
        return self.llm.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")

    def batch_decode(self, sequences: list[list[int]], skip_special_tokens: bool = True, **_: Any) -> list[str]:
        """:meth:`decode` of each sequence."""
        return [self.decode(ids, skip_special_tokens) for ids in sequences]


class GGUFSolver(Solver):
    """Completions from a local GGUF model with llama-cpp-python, one puzzle at a time."""

    name = "gguf"

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        seed: int = 0,
        constrained: bool = False,
        assignment: str | None = None,
        chat_template: str | None = None,
        max_model_len: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        batch_size: int = 1,
        **unsupported: Any,
    ) -> None:
        reject_unsupported(self.name, unsupported)
        if resolve_assignment(self.name, assignment, constrained) != "generate":
            raise InputError(
                "{assignment}=likelihood needs {solver}=hf or vllm (llama.cpp gives no prompt log-probabilities "
                "cheaply); or use the markers solver",
                params=["assignment", "solver"],
            )
        llama_cpp = import_extra("gguf")
        if not model or not Path(model).is_file() or Path(model).suffix.lower() != ".gguf":
            raise InputError(f"the 'gguf' solver needs {{model}}=PATH.gguf (got {model!r})", params=["model"])
        self.model, self.prompt_layout = model, resolve_prompt_layout(prompt_layout, model)
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.sampling = resolve_sampling(self.n, temperature, top_p, top_k, min_p, repeat_penalty, seed)
        self.max_new_tokens, self.constrained = int(max_new_tokens), bool(constrained)
        self.threads = cpu_threads(threads)
        self.n_ctx = int(max_model_len or DEFAULT_CONTEXT)
        self.llm = llama_cpp.Llama(
            model_path=model,
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            n_gpu_layers=gpu_layers(llama_cpp, device),
            seed=seed,
            verbose=False,
        )
        self.tokenizer = LlamaTokenizer(self.llm)
        self._formatter = self._chat_formatter(chat_template)
        self._banned: np.ndarray | None = None

    def _chat_formatter(self, chat_template: str | None) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if chat_template == "plain":
            template = PLAIN_TEMPLATE
        elif chat_template:
            path = Path(chat_template)
            template = path.read_text(encoding="utf-8") if path.is_file() else chat_template
        else:
            template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise InputError(
                f"{self.model} holds no chat template; pass {{chat_template}} FILE (a Jinja template) or "
                "{chat_template} plain",
                params=["chat_template"],
            )
        model = self.llm._model  # token texts, as llama-cpp-python's own chat handlers read them
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos >= 0 else "",
            bos_token=model.token_get_text(bos) if bos >= 0 else "",
        )

    def prompt(self, puzzle: Puzzle) -> str:
        """The puzzle's chat-formatted prompt text, with the generation prompt appended."""
        return self._formatter(messages=puzzle.messages(self.prompt_layout)).prompt

    def _processor(self, puzzle: Puzzle, prompt_len: int, open_think: bool) -> Any:
        """llama.cpp ``logits_processor`` running the constrained-answer state machine."""
        from cello1.solvers.constrained import AnswerState, answer_pieces, think_banned_mask

        if self._banned is None:
            self._banned = think_banned_mask(self.tokenizer, self.llm.n_vocab(), [self.tokenizer.eos_token_id])
        banned = self._banned
        state = AnswerState(
            answer_pieces(self.tokenizer, puzzle),
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            banned=banned,
            open_think=open_think,
        )

        def constrain(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            state.sync(input_ids[prompt_len:])
            allowed = state.allowed(lambda: int(np.argmax(scores)))
            if allowed is None:
                return np.where(banned, -np.inf, scores).astype(scores.dtype)
            out = np.full_like(scores, -np.inf)
            out[allowed] = scores[allowed]
            return out

        return constrain

    def solve_one(self, puzzle: Puzzle, sample: int = 0) -> Completion:
        """One completion; sample ``s`` uses seed ``seed + s``."""
        from llama_cpp import LogitsProcessorList

        start = time.perf_counter()
        prompt = self.prompt(puzzle)
        think_prefix = template_think_prefix(prompt)
        ids = self.tokenizer.encode(prompt)
        processors = None
        if self.constrained:
            processors = LogitsProcessorList([self._processor(puzzle, len(ids), open_think=not think_prefix)])
        if len(ids) + self.max_new_tokens > self.n_ctx:
            raise InputError(
                f"puzzle {puzzle.id}: {len(ids)} prompt tokens + {{max_new_tokens}}={self.max_new_tokens} exceed the "
                f"context of {self.n_ctx} tokens; raise {{max_model_len}} or lower {{max_new_tokens}}",
                params=["max_new_tokens", "max_model_len"],
            )
        s = self.sampling
        response = self.llm.create_completion(
            prompt=ids,
            max_tokens=self.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,  # 0 = off in llama.cpp
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            seed=self.seed + sample,
            logits_processor=processors,
        )
        usage = response.get("usage") or {}
        return Completion(
            text=think_prefix + (response["choices"][0].get("text") or ""),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            info={"seconds": time.perf_counter() - start, "finish_reason": response["choices"][0].get("finish_reason")},
        )

    def settings(self) -> dict[str, Any]:
        """The base settings plus the generation settings."""
        return {
            **super().settings(),
            "prompt_layout": self.prompt_layout,
            "n": self.n,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.sampling.temperature,
            "repeat_penalty": self.sampling.repeat_penalty,
            "constrained": self.constrained,
            "threads": self.threads,
            "max_model_len": self.n_ctx,
        }

    def close(self) -> None:
        """Free the model."""
        if getattr(self, "llm", None) is not None:
            self.llm.close()
        self.llm = None


def gpu_layers(llama_cpp: Any, device: str | None) -> int:
    """llama.cpp's ``n_gpu_layers`` for ``device``: 0 on ``cpu`` (default), all on ``cuda``."""
    if device in (None, "cpu"):
        return 0
    if not device.startswith("cuda"):
        raise InputError(f"{{device}} for the gguf solver is cpu or cuda, not {device!r}", params=["device"])
    if not llama_cpp.llama_supports_gpu_offload():
        raise InputError(
            "{device}=cuda: this llama-cpp-python was built without GPU support; rebuild it with "
            'CMAKE_ARGS="-DGGML_CUDA=on" or use {device}=cpu',
            params=["device"],
        )
    return -1


__all__ = ["GGUFSolver", "LlamaTokenizer", "gpu_layers"]
