"""verl adapter: ``compute_score(data_source, solution_str, ground_truth, extra_info=None)``.

Point verl's ``reward.custom_reward_function.path`` (verl < 0.7.1: the top-level
``custom_reward_function.path``) at this file (or its module ``cello1.scoring.verl``) and
``….name`` at ``compute_score``.

Unlike the released code we do not return −1 for data sources without "cell_data"
in their name: the exported parquet may name its source freely. ``extra_info`` may carry
``{"reward_variant": "exact_match"}`` to pick a variant per row.
"""

from __future__ import annotations

from typing import Any

from cello1.scoring.reward import batch_reward


def _gold(ground_truth: Any) -> Any:
    # verl rows keep the gold under reward_model.ground_truth; accept that dict too.
    if isinstance(ground_truth, dict):
        return ground_truth.get("ground_truth", ground_truth.get("answer"))
    if hasattr(ground_truth, "tolist"):  # numpy array from a parquet list column
        return ground_truth.tolist()
    return ground_truth


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
    """The verl reward of one rollout: :func:`~cello1.scoring.reward.batch_reward` of ``solution_str``.

    The gold may be a string, a list or verl's ``reward_model`` dict; ``extra_info["reward_variant"]``
    picks the variant (default ``paper``). ``data_source`` is ignored.
    """
    variant = "paper"
    if isinstance(extra_info, dict) and extra_info.get("reward_variant"):
        variant = str(extra_info["reward_variant"])
    return batch_reward(solution_str, _gold(ground_truth), variant=variant)


__all__ = ["compute_score"]
