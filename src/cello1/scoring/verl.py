"""verl adapter: ``compute_score(data_source, solution_str, ground_truth, extra_info=None)``.

Point verl's ``reward.custom_reward_function.path`` (verl < 0.7.1: the top-level
``custom_reward_function.path``) at this file (or its module ``cello1.scoring.verl``) and
``….name`` at ``compute_score``.

Unlike the released code we do not return −1 for data sources without "cell_data"
in their name: the exported parquet may name its source freely. ``extra_info`` may carry
``{"reward_variant": "ontology", "reward_options": {"coarse_credit": 0.25}}`` to pick a
variant (and its credits) per row; :func:`make_compute_score` binds a variant once, for
verl's ``reward.custom_reward_function.reward_kwargs``-style hooks that take a fixed function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cello1.scoring.reward import batch_reward, check_options


def _gold(ground_truth: Any) -> Any:
    # verl rows keep the gold under reward_model.ground_truth; accept that dict too.
    if isinstance(ground_truth, dict):
        return ground_truth.get("ground_truth", ground_truth.get("answer"))
    if hasattr(ground_truth, "tolist"):  # numpy array from a parquet list column
        return ground_truth.tolist()
    return ground_truth


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    reward_variant: str | None = None,
    reward_options: dict | None = None,
    **kwargs: Any,
) -> float:
    """The verl reward of one rollout: :func:`~cello1.scoring.reward.batch_reward` of ``solution_str``.

    The gold may be a string, a list or verl's ``reward_model`` dict. The variant comes from
    ``extra_info["reward_variant"]`` (per row), else ``reward_variant`` (verl passes a custom reward
    function's ``reward_kwargs`` as keyword arguments), else ``paper``; its credits likewise from
    ``extra_info["reward_options"]`` or ``reward_options`` (the latter only when the row keeps the
    bound variant). ``data_source`` and other keyword
    arguments verl may add are ignored.
    """
    info = extra_info if isinstance(extra_info, dict) else {}
    variant = str(info.get("reward_variant") or reward_variant or "paper")
    # the bound credits belong to the bound variant: a row that picks another variant brings its own
    bound = reward_options if variant == (reward_variant or "paper") else None
    options = info.get("reward_options") or bound or {}
    if hasattr(options, "items"):
        options = dict(options.items())
    return batch_reward(solution_str, _gold(ground_truth), variant, **check_options(variant, options))


def make_compute_score(variant: str = "paper", **options: float) -> Callable[..., float]:
    """:func:`compute_score` with a fixed variant and credits (a row's ``extra_info`` still wins)."""
    checked = check_options(variant, options)

    def score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kw: Any):
        return compute_score(data_source, solution_str, ground_truth, extra_info, variant, checked)

    score.__name__ = f"compute_score_{variant}"
    return score


__all__ = ["compute_score", "make_compute_score"]
