"""Training-time metrics: per-step accuracy/format logging and held-out evaluation.

* :func:`metric_reward_functions` — cell accuracy, batch accuracy and format rate as
  TRL reward callables. GRPO gets them with weight 0: they do not change the
  advantages, but TRL logs each one's mean per step (``rewards/cell_accuracy/mean``…).
* :func:`evaluate_model` — greedy generation on held-out puzzles scored by
  ``cello1.scoring.evaluate``, i.e. the same numbers as ``cello1 eval``.
* :class:`HeldOutEvalCallback` — runs :func:`evaluate_model` every ``eval_steps`` and at
  the end, logs ``heldout/*`` and writes the predictions to ``{output_dir}/eval/``.
* :class:`JsonlLogCallback` — appends every log line to ``{output_dir}/metrics.jsonl``
  (GRPO: reward mean/std, ``frac_reward_zero_std``, rollout cell/batch accuracy and format
  rate, reward by N, KL when ``beta`` > 0, completion length, loss; SFT: loss, token
  accuracy); ``cello1.training.plots`` draws them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cello1.prediction import Prediction
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle

if TYPE_CHECKING:
    from transformers import TrainerCallback

log = logging.getLogger("cello1.training")


def _named_metric(variant: str, name: str) -> Callable[..., list[float]]:
    from cello1.scoring import make_reward

    reward = make_reward(variant)

    def metric(prompts: Any = None, completions: Any = (), **columns: Any) -> list[float]:
        # the reward variants give -1 for an invalid completion; as a metric that is 0 (wrong)
        return [max(0.0, value) for value in reward(prompts, completions, **columns)]

    metric.__name__ = metric.__qualname__ = name  # TRL logs rewards/<name>/mean
    return metric


def metric_reward_functions() -> list[Callable[..., list[float]]]:
    """Cell accuracy, batch accuracy (exact match) and format rate as TRL reward callables
    (0 on a strictly invalid completion, as in ``cello1 eval``).
    """
    return [
        _named_metric("cell_accuracy", "cell_accuracy"),
        _named_metric("exact_match", "batch_accuracy"),
        _named_metric("format", "format_rate"),
    ]


# ---- held-out evaluation ----------------------------------------------------------------


def evaluate_model(
    model,
    tokenizer,
    puzzles: Sequence[Puzzle],
    prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    model_name: str = "model",
    progress: bool = False,
) -> tuple[Any, list[Prediction]]:
    """Greedy generation on ``puzzles`` through the ``hf`` solver, scored with
    ``cello1.scoring.evaluate``: (metrics, predictions). The model's training mode and the
    tokenizer's padding side are restored afterwards.
    """
    from cello1.scoring import evaluate
    from cello1.solvers.hf import HFSolver
    from cello1.solvers.run import solve

    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    try:
        solver = HFSolver(
            model,
            tokenizer=tokenizer,
            prompt_layout=prompt_layout,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        solver.model = model_name
        predictions = solve(list(puzzles), solver, progress=progress)
    finally:
        tokenizer.padding_side = padding_side
        if was_training:
            model.train()
    return evaluate(predictions), predictions


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def make_heldout_callback(
    tokenizer,
    puzzles: Sequence[Puzzle],
    output_dir: str | Path,
    prompt_layout: str,
    eval_steps: int,
    max_new_tokens: int,
    batch_size: int,
) -> TrainerCallback:
    """A ``TrainerCallback`` evaluating on held-out puzzles every ``eval_steps`` and at the end."""
    base = _trainer_callback_base()

    class HeldOutEvalCallback(base):
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []
            self._last_step = -1

        def _run(self, args, state, model) -> dict[str, float]:
            if state.global_step == self._last_step:
                return {}
            self._last_step = state.global_step
            start = time.perf_counter()
            metrics, records = evaluate_model(
                model, tokenizer, puzzles, prompt_layout, max_new_tokens, batch_size, model_name=str(output_dir)
            )
            logged = _scalars(metrics, "heldout/")
            logged["heldout/seconds"] = time.perf_counter() - start
            if state.is_world_process_zero:
                from cello1.io import write_jsonl

                eval_dir = Path(output_dir) / "eval"
                write_jsonl(eval_dir / f"step-{state.global_step}.jsonl", (r.to_record() for r in records))
                entry = {"step": state.global_step, **{k: v for k, v in metrics.to_dict().items() if _is_jsonable(v)}}
                self.history.append(entry)
                with (eval_dir / "history.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
                log.info("held-out eval at step %d: %s", state.global_step, logged)
            return logged

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if eval_steps > 0 and state.global_step % eval_steps == 0 and model is not None:
                logged = self._run(args, state, model)
                if logged:
                    state.log_history.append({**logged, "step": state.global_step})
                    _append_metrics(Path(output_dir), {**logged, "step": state.global_step})
            return control

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if model is not None:
                logged = self._run(args, state, model)
                if logged:
                    state.log_history.append({**logged, "step": state.global_step})
                    _append_metrics(Path(output_dir), {**logged, "step": state.global_step})
            return control

    return HeldOutEvalCallback()


def make_jsonl_log_callback(output_dir: str | Path) -> TrainerCallback:
    """A ``TrainerCallback`` appending every log dict to ``{output_dir}/metrics.jsonl``."""
    base = _trainer_callback_base()

    class JsonlLogCallback(base):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                _append_metrics(Path(output_dir), {"step": state.global_step, **logs})
            return control

    return JsonlLogCallback()


def _append_metrics(output_dir: Path, entry: dict[str, Any]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    # None/NaN mark "not measured this step" (e.g. the reward of an N absent from the batch): leave it out
    clean = {
        k: v
        for k, v in entry.items()
        if v is not None and _is_jsonable(v) and not (isinstance(v, float) and math.isnan(v))
    }
    with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(clean) + "\n")


def _is_jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def stage_callbacks(
    config: Any, tokenizer, eval_puzzles: Sequence[Puzzle] | None, output_dir: Path, extra=None
) -> tuple[list[Any], TrainerCallback | None]:
    """The callbacks every stage runs: the JSONL log, the caller's ``extra`` ones and, when
    held-out puzzles are given, the periodic evaluation. Returns ``(callbacks, heldout)``
    where ``heldout`` is that evaluation callback (its ``history`` has the results) or None.
    """
    callbacks = [make_jsonl_log_callback(output_dir), *(extra or [])]
    heldout = None
    if eval_puzzles:
        heldout = make_heldout_callback(
            tokenizer, eval_puzzles, output_dir, config.prompt_layout, config.eval_steps,
            config.eval_max_new_tokens, config.eval_batch_size,
        )  # fmt: skip
        callbacks.append(heldout)
    return callbacks, heldout
