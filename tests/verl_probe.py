"""Runs inside verl's own venv (``make verl-env``), in place of ``python3 -m verl.trainer.main_ppo``.

``run_verl_grpo.sh`` (written by ``cello1 export verl``) is executed with a ``python3`` on PATH
that runs this file instead, so the overrides reach verl exactly as bash passes them. Then:

1. ``verl.trainer.main_ppo.main()`` composes verl's Hydra config with the overrides and runs
   its own checks (``auto_set_device``, ``validate_config``); only the last step, launching Ray
   and the trainer (``run_ppo``), is replaced by capturing the config.
2. verl's ``RewardLoopWorker`` — the object that scores rollouts in training — is built from that
   config: it loads the tokenizer from ``actor_rollout_ref.model.path`` and the custom reward
   through ``load_reward_manager`` / ``get_custom_reward_fn``.
3. verl's ``RLHFDataset`` reads the exported train Parquet; each row gets a tokenised response
   from ``CELLO1_VERL_RESPONSES`` (a JSON list, cycled) and the worker scores the batch.

The outcome (the reward key verl read, the scores, or the error) is written as JSON to the file
named by ``CELLO1_VERL_PROBE_OUT``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def compose(argv: list[str]):
    import verl.trainer.main_ppo as main_ppo

    captured = {}

    def capture(config, task_runner_class) -> None:
        captured["config"] = config

    main_ppo.run_ppo = capture  # everything before launching Ray runs as in a real start
    sys.argv = ["main_ppo", *argv]
    main_ppo.main()
    return captured["config"]


def score(config, responses: list[str]) -> list[dict]:
    import numpy as np
    import torch
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.utils.dataset.rl_dataset import RLHFDataset

    worker = RewardLoopWorker(config)
    tokenizer = worker.input_tokenizer
    dataset = RLHFDataset(config.data.train_files, tokenizer, config.data)
    rows = [dataset[i] for i in range(len(responses))]
    texts = [
        tokenizer.apply_chat_template(list(r["raw_prompt"]), add_generation_prompt=True, tokenize=False) for r in rows
    ]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    answers = [tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for text in responses]
    width_p, width_r = max(map(len, prompts)), max(map(len, answers))
    pad = tokenizer.pad_token_id

    def left(ids):
        return [pad] * (width_p - len(ids)) + ids, [0] * (width_p - len(ids)) + [1] * len(ids)

    def right(ids):
        return ids + [pad] * (width_r - len(ids)), [1] * len(ids) + [0] * (width_r - len(ids))

    p_ids, p_mask = zip(*map(left, prompts), strict=True)
    r_ids, r_mask = zip(*map(right, answers), strict=True)
    data = DataProto.from_single_dict(
        {
            "prompts": torch.tensor(p_ids),
            "responses": torch.tensor(r_ids),
            "input_ids": torch.cat([torch.tensor(p_ids), torch.tensor(r_ids)], dim=1),
            "attention_mask": torch.cat([torch.tensor(p_mask), torch.tensor(r_mask)], dim=1),
            "data_source": np.array([r["data_source"] for r in rows], dtype=object),
            "reward_model": np.array([r["reward_model"] for r in rows], dtype=object),
            "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
        }
    )
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    return [
        {"score": float(o["reward_score"]), "gold": r["reward_model"]["ground_truth"], "response": text}
        for o, r, text in zip(outputs, rows, responses, strict=True)
    ]


def main() -> None:
    out = os.environ["CELLO1_VERL_PROBE_OUT"]
    responses = json.loads(os.environ.get("CELLO1_VERL_RESPONSES", "[]"))
    result: dict = {"argv": sys.argv[1:]}
    try:
        from omegaconf import OmegaConf

        config = compose(sys.argv[1:])
        result["composed"] = True
        result["reward.custom_reward_function"] = OmegaConf.to_container(config.reward.custom_reward_function)
        result["legacy custom_reward_function"] = OmegaConf.to_container(config.get("custom_reward_function") or {})
        result["rollout.n"] = config.actor_rollout_ref.rollout.n
        result["scores"] = score(config, responses)
    except BaseException as exc:  # report whatever verl raised, then fail
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, default=str)
    sys.exit(1 if "error" in result else 0)


if __name__ == "__main__":
    main()
