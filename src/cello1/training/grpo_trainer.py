"""cello1's ``trl.GRPOTrainer`` subclass: constrained rollouts, a curriculum sampler and the
shared-prompt speed-ups, each off unless asked for.

It overrides a few of TRL's methods (checked against TRL 1.16) and copies none of their code:

* ``_generate(prompts)`` remembers the batch's chat prompts (one row per rollout, in the order
  of TRL's ``prompt_ids``) and, with ``mask_forced_tokens``, returns a ``tool_mask`` that
  leaves the tokens the constraint forced out of the loss (see :mod:`cello1.training.constrained_grpo`);
* ``_generate_single_turn(...)`` — transformers rollouts: for the duration of TRL's own
  ``generate`` call the unwrapped model's ``generate`` receives the batch's
  :class:`~cello1.training.constrained_grpo.RecordingProcessor` (``constrained``) and a KV
  cache of each distinct prompt computed once (``share_prompt_prefill``); vLLM rollouts
  (colocate mode) get one ``SamplingParams`` per prompt with its puzzle's structured-output
  regex instead;
* ``_get_per_token_logps_and_entropies`` — with ``share_prompt_prefill``, each distinct prompt
  of the training batch runs once, with gradient (:func:`~cello1.training.prefix_sharing.shared_prompt_logps`);
* ``_get_train_sampler`` — with a curriculum, :class:`~cello1.training.curriculum.CurriculumSampler`.
"""

from __future__ import annotations

import logging
from typing import Any

from cello1.errors import InputError
from cello1.training.constrained_grpo import RecordingProcessor, per_prompt_sampling_params, user_message
from cello1.training.curriculum import CurriculumSampler, CurriculumState

log = logging.getLogger("cello1.training")


def make_trainer_class(base: type | None = None) -> type:
    """A subclass of ``base`` (default ``trl.GRPOTrainer``) with cello1's rollout options.

    Its extra keyword arguments: ``constrained``, ``mask_forced_tokens``,
    ``share_prompt_prefill`` (bools), ``curriculum`` (``none`` | ``stage`` | ``adaptive``),
    ``curriculum_state`` (a :class:`~cello1.training.curriculum.CurriculumState`) and
    ``sizes`` (the N of every training row, for the curriculum).
    """
    if base is None:
        from trl import GRPOTrainer as base

    class CelloGRPOTrainer(base):
        def __init__(
            self,
            *args: Any,
            constrained: bool = False,
            mask_forced_tokens: bool = True,
            share_prompt_prefill: bool = False,
            curriculum: str = "none",
            curriculum_state: CurriculumState | None = None,
            sizes: list[int] | None = None,
            **kwargs: Any,
        ) -> None:
            self.constrained = bool(constrained)
            self.mask_forced_tokens = bool(mask_forced_tokens)
            self.share_prompt_prefill = bool(share_prompt_prefill)
            self.curriculum = curriculum
            self.curriculum_state = curriculum_state
            self.sizes = list(sizes or [])
            self._rollout_prompts: list[Any] | None = None
            self._processor: RecordingProcessor | None = None
            self._pieces: dict[str, Any] = {}
            self._banned = None
            super().__init__(*args, **kwargs)
            if self.use_vllm and self.constrained:
                self._install_vllm_constraints()

        # ---- which puzzle each rollout row is ---------------------------------------------
        def _row_pieces(self) -> list[Any]:
            from cello1.solvers.constrained import answer_pieces
            from cello1.training.constrained_grpo import prompt_puzzle

            if self._rollout_prompts is None:
                raise RuntimeError("constrained rollouts: generation was called outside _generate")
            pieces = []
            for prompt in self._rollout_prompts:
                key = user_message(prompt)
                if key not in self._pieces:
                    self._pieces[key] = answer_pieces(self._tokenizer, prompt_puzzle(prompt))
                pieces.append(self._pieces[key])
            return pieces

        def _generate(self, prompts: list) -> Any:
            self._rollout_prompts, self._processor = list(prompts), None
            try:
                result = super()._generate(prompts)
            finally:
                self._rollout_prompts = None
            prompt_ids, completion_ids, tool_mask, *rest = result
            if self.mask_forced_tokens and self._processor is not None and tool_mask is None:
                tool_mask = self._processor.model_token_mask(completion_ids)
            return (prompt_ids, completion_ids, tool_mask, *rest)

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            if self.curriculum != "none" and inputs and "n" in inputs[0]:
                mode = "train" if self.model.training else "eval"
                self._metrics[mode]["curriculum/n"].append(sum(int(x["n"]) for x in inputs) / len(inputs))
            return super()._generate_and_score_completions(inputs)

        # ---- transformers rollouts -----------------------------------------------------------
        def _generate_single_turn(
            self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
        ) -> Any:
            from cello1.training.prefix_sharing import generate_with

            def plain() -> Any:
                return super(CelloGRPOTrainer, self)._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )

            if self.use_vllm or self.use_transformers_continuous_batching:
                return plain()
            model = self.accelerator.unwrap_model(self.model_wrapped)
            processor = self._new_processor(model) if self.constrained else None
            with generate_with(model, processor, self.share_prompt_prefill):
                completion_ids, logprobs = plain()
            if processor is not None:
                self._processor = processor
                mode = "train" if self.model.training else "eval"
                for key, value in processor.statistics(completion_ids).items():
                    self._metrics[mode][key].append(value)
            return completion_ids, logprobs

        def _new_processor(self, model: Any) -> RecordingProcessor:
            from cello1.solvers.constrained import think_banned_mask

            if self._banned is None:
                vocab = model.get_output_embeddings().weight.shape[0]
                self._banned = think_banned_mask(self._tokenizer, vocab, list(self.eos_token_ids))
            return RecordingProcessor(
                self._row_pieces(),
                # one token less than TRL's limit: the processor's budget guard counts </answer>
                # but not the EOS after it, and TRL counts a completion without EOS as truncated
                max_new_tokens=self.max_completion_length - 1,
                eos_token_id=self.eos_token_ids[0],
                banned=self._banned,
            )

        # ---- training forward: each distinct prompt once ---------------------------------------
        def _get_per_token_logps_and_entropies(
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **multimodal,
        ) -> Any:
            from cello1.training.prefix_sharing import shared_prompt_logps

            sharable = not (
                compute_aux_loss or self.args.gradient_checkpointing or any(v is not None for v in multimodal.values())
            )
            if not (self.share_prompt_prefill and sharable):
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    compute_aux_loss,
                    **multimodal,
                )
            with self.accelerator.autocast():
                logps, entropies = shared_prompt_logps(
                    model, input_ids, attention_mask, logits_to_keep, compute_entropy
                )
            return logps, entropies, None

        # ---- curriculum ---------------------------------------------------------------------------
        def _get_train_sampler(self, dataset=None) -> Any:
            if self.curriculum == "none":
                return super()._get_train_sampler(dataset)
            return CurriculumSampler(
                self.sizes,
                self.curriculum,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                state=self.curriculum_state,
                seed=self.args.seed,
            )

        # ---- vLLM (colocate): one SamplingParams per rollout with a structured-output regex -----
        def _install_vllm_constraints(self) -> None:
            llm = getattr(getattr(self, "vllm_generation", None), "llm", None)
            if llm is None:
                raise InputError(
                    "{constrained} rollouts with vLLM need vllm_mode=colocate (server mode sends one "
                    "SamplingParams for all prompts); set use_vllm=false or vllm_mode=colocate",
                    params=["constrained"],
                )
            from vllm.sampling_params import StructuredOutputsParams

            constrain_vllm(llm, lambda: self._rollout_prompts, StructuredOutputsParams)

    CelloGRPOTrainer.__name__ = CelloGRPOTrainer.__qualname__ = "CelloGRPOTrainer"
    return CelloGRPOTrainer


def constrain_vllm(llm: Any, rollout_prompts: Any, structured: Any) -> None:
    """Wrap ``llm.generate`` (a colocated ``vllm.LLM``) so that every rollout gets its own
    ``SamplingParams`` with its puzzle's regex; ``rollout_prompts()`` returns the chat prompts of
    the current batch, one per row in the order of vLLM's prompts.
    """
    original = llm.generate

    def generate(prompts: list, sampling_params: Any = None, **kwargs: Any) -> Any:
        rows = rollout_prompts() or []
        if sampling_params is not None and not isinstance(sampling_params, list):
            if len(rows) != len(prompts):
                raise RuntimeError(
                    f"constrained vLLM rollouts: {len(prompts)} prompts but {len(rows)} known puzzles "
                    "(vllm_tensor_parallel_size > 1 is not supported with constrained rollouts)"
                )
            sampling_params = per_prompt_sampling_params(sampling_params, rows, structured)
        return original(prompts, sampling_params=sampling_params, **kwargs)

    llm.generate = generate


__all__ = ["constrain_vllm", "make_trainer_class"]
