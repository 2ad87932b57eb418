"""``hf``: transformers generation, batched with left padding, chat template, optional
``--constrained`` answers.

    solver = HFSolver("HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8)
    solver = HFSolver("path/to/model.Q4_1.gguf", constrained=True, max_new_tokens=256)

``model`` is a hub id, a local folder (loaded offline), a ``.gguf`` file (transformers
de-quantises it via ``gguf_file=``), a folder holding one ``.gguf`` and no
``config.json``, or an already loaded model (then pass ``tokenizer=`` too).
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from cello1.errors import InputError
from cello1.grammar import ANSWER_CLOSE, ANSWER_SEP, extract_answer, render_completion, split_labels, think_text
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Ability, Completion, Solver
from cello1.solvers.llm_common import (
    LIKELIHOOD,
    cpu_threads,
    reject_unsupported,
    resolve_assignment,
    resolve_prompt_layout,
    resolve_sampling,
    template_think_prefix,
)

if "torch" not in sys.modules:
    # OpenMP threads that spin while waiting for work burn the cores other threads (or
    # other users) need: on a shared 2-core machine a decode step of a small model was
    # many times slower. Passive waiting only takes effect before torch loads OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_MAX_NEW_TOKENS = 2048  # the paper's test script used 3,500 (GPU); CPU users want less
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def resolve_model_path(model: str) -> tuple[str, str | None]:
    """``model`` → (what ``from_pretrained`` gets, ``gguf_file`` or None)."""
    path = Path(model).expanduser()
    if model.startswith(("/", ".", "~")) and not path.exists():
        raise InputError(f"{model}: no such file or folder; check the {{model}} path", params=["model"])
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise InputError(f"{model}: no such .gguf file; check the path")
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name
        if not ggufs:
            raise InputError(
                f"{model}: folder has no config.json and no .gguf file; is it a transformers model folder?"
            )
        raise InputError(f"{model}: folder holds several .gguf files; pass one file with {{model}}", params=["model"])
    return model, None


def auto_device(device: str | None) -> str:
    """``device`` itself (checked when it asks for CUDA), else ``cuda`` when a GPU is available, else ``cpu``."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(
                f"{{device}}={device}: no CUDA GPU is available here; use {{device}}=cpu", params=["device"]
            )
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_dtype(dtype: str | None, device: str) -> Any:
    """bf16 on GPUs that support it, fp16 on other GPUs, float32 on CPU."""
    import torch

    if dtype:
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            raise InputError(
                f"{{dtype}} {dtype!r} is not a torch dtype; use float32, bfloat16 or float16", params=["dtype"]
            )
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class HFSolver(Solver):
    """Batched ``generate`` with a chat template; greedy (default) or sampling; ``n`` samples.

    ``assignment="likelihood"``: no generation; every (cell, candidate) pair is scored by
    the model's log-probability and the best one-to-one assignment is the answer
    (:mod:`cello1.solvers.likelihood`). The score matrix is also what an ``ensemble``
    member gives.
    """

    name = "hf"
    abilities = frozenset({Ability.CANDIDATE_SCORES, Ability.SCORE_MATRIX})

    def __init__(
        self,
        model: Any = None,
        *,
        tokenizer: Any = None,
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        batch_size: int = 4,
        constrained: bool = False,
        assignment: str | None = None,
        chat_template: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        seed: int = 0,
        threads: int | None = None,
        trust_remote_code: bool = False,
        **unsupported: Any,
    ) -> None:
        reject_unsupported(self.name, unsupported)
        if model is None:
            raise InputError(
                "the 'hf' solver needs {model} (a hub id, a local folder or a .gguf file)", params=["model"]
            )
        self.threads = set_cpu_threads(threads)
        self.prompt_layout = resolve_prompt_layout(prompt_layout, model)
        self.n = int(n)
        self.sampling = resolve_sampling(self.n, temperature, top_p, top_k, min_p, repeat_penalty, seed)
        if max_new_tokens < 1 or batch_size < 1:
            raise InputError(
                "{max_new_tokens} and {batch_size} must be at least 1", params=["max_new_tokens", "batch_size"]
            )
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.constrained, self.seed = bool(constrained), int(seed)
        self.assignment = resolve_assignment(self.name, assignment, self.constrained)
        self._banned = None
        if isinstance(model, str):
            self.model = model
            self.hf_model, self.tokenizer = self._load(model, tokenizer, device, dtype, trust_remote_code)
        else:
            if tokenizer is None:
                raise InputError("pass tokenizer= together with a loaded model")
            self.hf_model, self.tokenizer = model, tokenizer
            self.model = getattr(model, "name_or_path", None) or type(model).__name__
        self._prepare_tokenizer(chat_template)
        self._assigner = None

    @property
    def temperature(self) -> float:
        """The sampling temperature (0 = greedy)."""
        return self.sampling.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.sampling = replace(self.sampling, temperature=float(value))

    # ---- loading -------------------------------------------------------------------------
    def _load(self, model: str, tokenizer: Any, device: str | None, dtype: str | None, trust: bool) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, gguf_file = resolve_model_path(model)
        if gguf_file:
            # de-quantised once and cached (a plain folder loads in a second, a .gguf in ~30 s)
            from cello1.solvers.model_files import transformers_folder

            source, gguf_file = transformers_folder(str(Path(source) / gguf_file)), None
        kwargs: dict[str, Any] = {"trust_remote_code": trust}
        if Path(source).exists():
            kwargs["local_files_only"] = True  # a local model must never hit the network
        device = auto_device(device)
        try:
            tok = tokenizer or AutoTokenizer.from_pretrained(source, **kwargs)
            hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=auto_dtype(dtype, device), **kwargs)
        except OSError as exc:
            raise InputError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
        return hf_model.to(device).eval(), tok

    def _prepare_tokenizer(self, chat_template: str | None) -> None:
        tok = self.tokenizer
        tok.padding_side = "left"  # decoder-only batches must be left-padded
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if chat_template == "plain":
            tok.chat_template = PLAIN_TEMPLATE
        elif chat_template:
            path = Path(chat_template)
            tok.chat_template = path.read_text(encoding="utf-8") if path.is_file() else chat_template
        if not getattr(tok, "chat_template", None):
            raise InputError(
                f"the tokenizer of {self.model!r} has no chat template; use an instruct/chat model, or pass "
                "{chat_template} FILE (a Jinja template) or {chat_template} plain",
                params=["chat_template"],
            )

    # ---- generation ----------------------------------------------------------------------
    @property
    def eos_ids(self) -> list[int]:
        """Token ids that end generation: the generation config's EOS ids plus the tokenizer's."""
        ids = self.hf_model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def prompt(self, puzzle: Puzzle) -> str:
        """The puzzle's chat-formatted prompt text, with the generation prompt appended."""
        return self.tokenizer.apply_chat_template(
            puzzle.messages(self.prompt_layout), tokenize=False, add_generation_prompt=True
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added (the chat template wrote them)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def generation_config(self) -> Any:
        """The ``transformers.GenerationConfig`` for ``generate``: greedy at temperature 0,
        else sampling; ``n`` sequences per prompt; every other knob off unless set.
        """
        from transformers import GenerationConfig

        s = self.sampling
        sampling = not s.greedy
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sampling,
            temperature=s.temperature if sampling else None,
            top_p=s.top_p if sampling and s.top_p < 1 else None,
            top_k=s.top_k if sampling and s.top_k else None,
            min_p=s.min_p if sampling and s.min_p else None,
            repetition_penalty=s.repeat_penalty if s.repeat_penalty != 1 else None,
            num_return_sequences=self.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
        )

    def logits_processors(self, puzzles: list[Puzzle], open_think: bool = True) -> Any:
        """The ``LogitsProcessorList`` for a batch: empty, or the constrained-answer processor
        when ``constrained`` is set.
        """
        from transformers import LogitsProcessorList

        if not self.constrained:
            return LogitsProcessorList()
        from cello1.solvers.constrained import ConstrainedAnswerProcessor, answer_pieces, think_banned_mask

        vocab = self.hf_model.get_output_embeddings().weight.shape[0]
        if self._banned is None:
            self._banned = think_banned_mask(self.tokenizer, vocab, self.eos_ids)
        pieces = [answer_pieces(self.tokenizer, p) for p in puzzles]
        processor = ConstrainedAnswerProcessor(
            pieces,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.eos_ids[0],
            banned=self._banned,
            num_return_sequences=self.n,
            open_think=open_think,
        )
        return LogitsProcessorList([processor])

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """Generate ``n`` completions per puzzle in one padded ``generate`` call, seeded by the
        batch's ids (with ``assignment="likelihood"``: score and assign instead).
        """
        if self.assignment == LIKELIHOOD:
            return [[self.likelihood_completion(p)] * self.n for p in puzzles]
        import torch

        prompts = [self.prompt(p) for p in puzzles]
        # a template that opened <think> itself (Qwen3-style) is not given a second one
        think_prefixes = [template_think_prefix(p) for p in prompts]
        processors = self.logits_processors(puzzles, open_think=not any(think_prefixes))
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.hf_model.device
        )
        torch.manual_seed(self.seed + zlib.crc32("\x00".join(p.id for p in puzzles).encode()))
        with torch.inference_mode():
            out = self.hf_model.generate(**enc, generation_config=self.generation_config(), logits_processor=processors)
        generated = out[:, enc["input_ids"].shape[1] :].tolist()
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        eos = set(self.eos_ids)
        results: list[list[Completion]] = []
        for i, _ in enumerate(puzzles):
            samples = []
            for row in generated[i * self.n : (i + 1) * self.n]:
                length = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
                text = self.tokenizer.decode(row[:length], skip_special_tokens=True, clean_up_tokenization_spaces=False)
                samples.append(
                    Completion(
                        text=think_prefixes[i] + text, prompt_tokens=int(prompt_tokens[i]), completion_tokens=length
                    )
                )
            results.append(samples)
        return results

    # ---- likelihood scores ------------------------------------------------------------------
    def score_matrix(self, puzzle: Puzzle) -> np.ndarray:
        """Cells × candidates log-probabilities (:mod:`cello1.solvers.likelihood`)."""
        return self.likelihood_scores(puzzle)[0]

    def likelihood_scores(self, puzzle: Puzzle) -> tuple[np.ndarray, dict[str, Any]]:
        """The likelihood matrix and its cost: the prompt is run once, then every
        (cell, candidate) continuation in one tree-attention pass over its KV cache.
        """
        import torch

        from cello1.solvers.likelihood import as_matrix, scoring_layout, scoring_prefix

        prompt = self.prompt(puzzle)
        layout = scoring_layout(puzzle, scoring_prefix(prompt, template_think_prefix(prompt)), self.encode)
        start = time.perf_counter()
        with torch.inference_mode():
            head = self.hf_model(torch.tensor([layout.prefix], device=self.hf_model.device), use_cache=True)
            # the cue's own probability is the same for every candidate of a cell: not summed
            skip = [len(cue) for cue in layout.cues for _ in layout.candidates]
            scores, passes = tree_logprobs(
                self.hf_model, head.past_key_values, head.logits[0, -1], len(layout.prefix), layout.sequences(), skip
            )
        info = {
            "forward_passes": 1 + passes,
            "prompt_tokens": len(layout.prefix),
            "scored_tokens": layout.scored_tokens(),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return as_matrix(puzzle, scores), info

    def likelihood_completion(self, puzzle: Puzzle) -> Completion:
        """The Hungarian assignment over :meth:`likelihood_scores`, as a completion."""
        from cello1.solvers.likelihood import likelihood_completion

        return likelihood_completion(self, puzzle)

    def candidate_scores(self, puzzle: Puzzle, completion: Completion) -> list[list[float]]:
        """Cells × candidates log-likelihood matrix for ``--repair``.

        Entry ``[i][j]``: log p(candidate j, then ``" |"`` or ``</answer>`` | prompt, the
        model's reasoning, ``</think>\\n<answer>`` and the labels it wrote for cells before
        ``i``). The prefix is run once and extended label by label; each cell's candidates
        are scored together in one tree-attention pass over its KV cache.
        """
        import torch

        labels = split_labels(extract_answer(completion.text))
        prompt = self.prompt(puzzle)
        reasoning = render_completion(think_text(completion.text), "").removesuffix(ANSWER_CLOSE)
        if template_think_prefix(prompt):
            reasoning = reasoning.removeprefix("<think>")
        base = self.encode(prompt + reasoning)
        device = self.hf_model.device
        scores = []
        with torch.inference_mode():
            head = self.hf_model(torch.tensor([base], device=device), use_cache=True)
            cache, last, length = head.past_key_values, head.logits[0, -1], len(base)
            for i in range(puzzle.n):
                if 0 < i <= len(labels):  # extend the prefix by the label written for cell i-1
                    ids = self.encode(labels[i - 1] + ANSWER_SEP)
                    step = self.hf_model(torch.tensor([ids], device=device), past_key_values=cache, use_cache=True)
                    cache, last, length = step.past_key_values, step.logits[0, -1], length + len(ids)
                ending = ANSWER_SEP.rstrip() if i + 1 < puzzle.n else ANSWER_CLOSE
                conts = [self.encode(c + ending) for c in puzzle.candidates]
                row, _ = tree_logprobs(self.hf_model, cache, last, length, conts)
                scores.append(row)
        return scores

    def settings(self) -> dict[str, Any]:
        """The base settings plus the generation settings."""
        return {
            **super().settings(),
            "prompt_layout": self.prompt_layout,
            "n": self.n,
            "max_new_tokens": self.max_new_tokens,
            **{k: v for k, v in asdict(self.sampling).items() if k != "seed"},
            "constrained": self.constrained,
            "assignment": self.assignment,
            "threads": self.threads,
        }

    def close(self) -> None:
        """Drop the model and tokenizer so their memory can be freed."""
        self.hf_model = None
        self.tokenizer = None


# ---- CPU threads ---------------------------------------------------------------------------


def set_cpu_threads(threads: int | None) -> int:
    """Set torch's CPU threads to :func:`~cello1.solvers.llm_common.cpu_threads` (``threads``,
    or one per idle core); returns the number set.
    """
    import torch

    n = cpu_threads(threads)
    torch.set_num_threads(n)
    return n


# ---- tree attention: many continuations of one cached prefix in one pass ---------------------


def token_tree(sequences: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """The trie of ``sequences``: per node its token, parent node (-1 = the prefix) and
    depth (1 = right after the prefix), and per sequence its node path.
    """
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    index: dict[tuple[int, int], int] = {}
    paths = []
    for seq in sequences:
        node, path = -1, []
        for token in seq:
            key = (node, int(token))
            if key not in index:
                index[key] = len(tokens)
                tokens.append(int(token))
                depths.append(depths[node] + 1 if node >= 0 else 1)
                parents.append(node)
            node = index[key]
            path.append(node)
        paths.append(path)
    return tokens, parents, depths, paths


def tree_logprobs(
    model: Any,
    cache: Any,
    last_logits: Any,
    prefix_len: int,
    sequences: Sequence[Sequence[int]],
    skip: Sequence[int] | None = None,
    max_nodes: int = 1024,
) -> tuple[list[float], int]:
    """Summed log-probabilities of each of ``sequences`` as a continuation of the cached
    prefix (``cache`` holds ``prefix_len`` tokens, ``last_logits`` the prefix's last
    logits), leaving out the first ``skip[k]`` tokens of sequence ``k``; and the number of
    forward passes used.

    The sequences' token trie is packed into one input: each node attends to the whole
    prefix and to its own ancestors only (a 4-D attention mask) at position
    ``prefix_len + depth - 1``, so shared beginnings are computed once and no KV cache is
    copied. Groups of at most ``max_nodes`` nodes go in one pass; the cache is cropped
    back to the prefix after each.
    """
    import torch

    scores: list[float] = []
    passes = 0
    skip = list(skip or [0] * len(sequences))
    for group in _groups(sequences, max_nodes):
        tokens, parents, depths, paths = token_tree(group)
        q = len(tokens)
        device, dtype = last_logits.device, model.dtype
        ancestors = np.zeros((q, q), dtype=bool)
        for k, parent in enumerate(parents):  # parents come before their children
            if parent >= 0:
                ancestors[k] = ancestors[parent]
            ancestors[k, k] = True
        mask = torch.zeros((1, 1, q, prefix_len + q), dtype=dtype, device=device)
        mask[0, 0, :, prefix_len:].masked_fill_(torch.from_numpy(~ancestors).to(device), torch.finfo(dtype).min)
        out = model(
            input_ids=torch.tensor([tokens], device=device),
            position_ids=torch.tensor([[prefix_len + d - 1 for d in depths]], device=device),
            attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
        )
        cache.crop(-q)  # back to the prefix (a negative count: the form every transformers 5.x takes)
        passes += 1
        # row 0: the prefix's last logits (predicts depth-1 nodes); row k+1: node k's
        logits = torch.cat([last_logits[None].float(), out.logits[0].float()])
        rows = torch.tensor([p + 1 for p in parents], device=device)
        token_ids = torch.tensor(tokens, device=device)
        logp = logits[rows].gather(1, token_ids[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)[rows]
        node_logp = logp.tolist()
        first = len(scores)
        scores += [sum(node_logp[k] for k in path[skip[first + i] :]) for i, path in enumerate(paths)]
    return scores, passes


def _groups(sequences: Sequence[Sequence[int]], max_nodes: int) -> list[list[Sequence[int]]]:
    """Consecutive runs of sequences whose tries have at most ``max_nodes`` nodes (a
    longer single sequence gets a group of its own).
    """
    groups: list[list[Sequence[int]]] = [[]]
    for seq in sequences:
        trial = groups[-1] + [seq]
        if groups[-1] and len(token_tree(trial)[0]) > max_nodes:
            groups.append([seq])
        else:
            groups[-1] = trial
    return [g for g in groups if g]
