"""``hf``: transformers generation, batched with left padding, chat template, optional
``--constrained`` answers.

    solver = HFSolver("HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8)
    solver = HFSolver("path/to/model.Q4_1.gguf", constrained=True, max_new_tokens=256)

``model`` is a hub id, a local folder (loaded offline), a ``.gguf`` file (transformers
de-quantises it via ``gguf_file=``), a folder holding one ``.gguf`` and no
``config.json``, or an already loaded model (then pass ``tokenizer=`` too).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.grammar import ANSWER_CLOSE, ANSWER_SEP, extract_answer, render_completion, split_labels, think_text
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle
from cello1.solvers.base import Ability, Completion, Solver
from cello1.solvers.llm_common import reject_unsupported, resolve_prompt_layout, resolve_temperature

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
    """Batched ``generate`` with a chat template; greedy (default) or sampling; ``n`` samples."""

    name = "hf"
    abilities = frozenset({Ability.CANDIDATE_SCORES})

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
        batch_size: int = 4,
        constrained: bool = False,
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
        if threads is not None:
            import torch

            if threads < 1:
                raise InputError(f"{{threads}} must be at least 1, not {threads}", params=["threads"])
            torch.set_num_threads(int(threads))  # CPU: fewer threads can be faster on a busy machine
        self.prompt_layout = resolve_prompt_layout(prompt_layout, model)
        self.n = int(n)
        self.temperature = resolve_temperature(temperature, self.n)
        self.top_p = top_p
        if max_new_tokens < 1 or batch_size < 1:
            raise InputError(
                "{max_new_tokens} and {batch_size} must be at least 1", params=["max_new_tokens", "batch_size"]
            )
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.constrained, self.seed = bool(constrained), int(seed)
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

    # ---- loading -------------------------------------------------------------------------
    def _load(self, model: str, tokenizer: Any, device: str | None, dtype: str | None, trust: bool) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, gguf_file = resolve_model_path(model)
        kwargs: dict[str, Any] = {"trust_remote_code": trust}
        if Path(source).exists():
            kwargs["local_files_only"] = True  # a local model must never hit the network
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
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

    def generation_config(self) -> Any:
        """The ``transformers.GenerationConfig`` for ``generate``: greedy at temperature 0,
        else sampling; ``n`` sequences per prompt.
        """
        from transformers import GenerationConfig

        sampling = self.temperature > 0
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sampling,
            temperature=self.temperature if sampling else None,
            top_p=self.top_p if sampling else None,
            top_k=None,
            num_return_sequences=self.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
        )

    def logits_processors(self, puzzles: list[Puzzle]) -> Any:
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
        )
        return LogitsProcessorList([processor])

    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """Generate ``n`` completions per puzzle in one padded ``generate`` call, seeded by the batch's ids."""
        import torch

        processors = self.logits_processors(puzzles)  # validates the budget before any work
        enc = self.tokenizer(
            [self.prompt(p) for p in puzzles], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.hf_model.device)
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
                samples.append(Completion(text=text, prompt_tokens=int(prompt_tokens[i]), completion_tokens=length))
            results.append(samples)
        return results

    # ---- likelihood scores for --repair -----------------------------------------------------
    def candidate_scores(self, puzzle: Puzzle, completion: Completion) -> list[list[float]]:
        """Cells × candidates log-likelihood matrix for ``--repair``.

        Entry ``[i][j]``: log p(candidate j, then ``" |"`` or ``</answer>`` | prompt, the
        model's reasoning, ``</think>\n<answer>`` and the labels it wrote for cells before
        ``i``). The prefix is run once and extended label by label; each cell's candidates
        share a copy of its KV cache.
        """
        import copy

        import torch

        labels = split_labels(extract_answer(completion.text))
        base = self.prompt(puzzle) + render_completion(think_text(completion.text), "").removesuffix(ANSWER_CLOSE)
        encode = lambda s: self.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        device, pad, m = self.hf_model.device, self.tokenizer.pad_token_id, len(puzzle.candidates)
        scores = []
        with torch.inference_mode():
            head = self.hf_model(torch.tensor([encode(base)], device=device), use_cache=True)
            cache, last = head.past_key_values, head.logits[:, -1:]
            for i in range(puzzle.n):
                if 0 < i <= len(labels):  # extend the prefix by the label written for cell i-1
                    step = self.hf_model(
                        torch.tensor([encode(labels[i - 1] + ANSWER_SEP)], device=device),
                        past_key_values=cache,
                        use_cache=True,
                    )
                    cache, last = step.past_key_values, step.logits[:, -1:]
                ending = ANSWER_SEP.rstrip() if i + 1 < puzzle.n else ANSWER_CLOSE
                conts = [encode(c + ending) for c in puzzle.candidates]
                width = max(len(c) for c in conts)
                # right padding is harmless: causal attention never lets a real token see it
                batch = torch.tensor([c + [pad] * (width - len(c)) for c in conts], device=device)
                branch = copy.deepcopy(cache)
                branch.batch_repeat_interleave(m)
                tail = self.hf_model(batch, past_key_values=branch).logits
                logits = torch.cat([last.expand(m, -1, -1), tail[:, :-1]], dim=1)
                logp = torch.log_softmax(logits.float(), dim=-1).gather(2, batch.unsqueeze(-1)).squeeze(-1)
                scores.append([float(logp[j, : len(c)].sum()) for j, c in enumerate(conts)])
        return scores

    def settings(self) -> dict[str, Any]:
        """The base settings plus the generation settings."""
        return {
            **super().settings(),
            "prompt_layout": self.prompt_layout,
            "n": self.n,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "constrained": self.constrained,
        }

    def close(self) -> None:
        """Drop the model and tokenizer so their memory can be freed."""
        self.hf_model = None
        self.tokenizer = None
