"""Export puzzles for verl (the framework the paper's 8-GPU GRPO run used).

``export_verl(["train.jsonl", "test.jsonl"], "verl_data")`` writes, per input, a Parquet
file in verl's RL schema::

    data_source   "cellpuzzles"
    prompt        [{"role": …, "content": …}, …]       (chat messages, same prompt mode as inference)
    ability       "cell_type_annotation"
    reward_model  {"style": "rule", "ground_truth": "A | B | C"}
    extra_info    {"split", "index", "id", "n", "tissue", "disease", "source", "donor"}

plus ``reward.py`` (a two-line shim re-exporting ``cello1.scoring.verl.compute_score``;
verl's ``custom_reward_function.path`` must be a *file*), ``reward_function.json``
(module path, function name, shim path) and ``run_verl_grpo.sh`` with the paper's
Hydra overrides. Only pyarrow is needed (no torch).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cello1.errors import InputError
from cello1.hub import is_hub_reference, parse_reference
from cello1.io import (
    atomic_dir,
    atomic_path,
    check_output_dir,
    default_mode,
    inside,
    read_puzzles,
    same_path,
    temp_dir_beside,
)
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle, check_prompt_layout
from cello1.training import recipe

DATA_SOURCE = "cellpuzzles"
ABILITY = "cell_type_annotation"
REWARD_MODULE = "cello1.scoring.verl"
REWARD_FUNCTION = "compute_score"
SPLIT_WORDS = ("train", "test", "val", "validation", "dev", "eval")

REWARD_SHIM = f'''"""verl custom reward: the Cell-o1 batch-level reward from cello1 (written by `cello1 export verl`).

verl loads this file via ``custom_reward_function.path``; cello1 must be installed in
verl's Python environment (``pip install cello1``).
"""

from {REWARD_MODULE} import {REWARD_FUNCTION}

__all__ = ["{REWARD_FUNCTION}"]
'''


@dataclass
class VerlRunSettings:
    """The paper's GRPO run on one 8-GPU node (docs/format.md §7) as verl Hydra overrides."""

    model: str = field(default=recipe.BASE_MODEL, metadata={"help": "Policy model written into run_verl_grpo.sh."})
    train_batch_size: int = recipe.GRPO_TRAIN_BATCH_PROMPTS
    rollouts: int = recipe.GRPO_ROLLOUTS
    lr: float = recipe.GRPO_LEARNING_RATE
    kl_loss_coef: float = recipe.GRPO_KL_COEF
    entropy_coeff: float = recipe.GRPO_ENTROPY_COEF
    max_prompt_length: int = recipe.GRPO_MAX_PROMPT_LENGTH
    max_response_length: int = recipe.GRPO_MAX_RESPONSE_LENGTH
    total_epochs: int = recipe.GRPO_EPOCHS
    n_gpus_per_node: int = field(default=recipe.GRPO_GPUS, metadata={"help": "GPUs per node in run_verl_grpo.sh."})
    nnodes: int = field(default=1, metadata={"help": "Nodes in run_verl_grpo.sh."})
    tensor_parallel: int = recipe.GRPO_ROLLOUT_TENSOR_PARALLEL
    ppo_mini_batch_size: int = 32
    micro_batch_size_per_gpu: int = 2
    gpu_memory_utilization: float = 0.6
    save_freq: int = 100
    test_freq: int = 50
    project_name: str = "cello1"
    experiment_name: str = "cell-o1-grpo"
    extra: list[str] = field(default_factory=list)


@dataclass
class VerlExport:
    """What ``cello1 export verl`` wrote: the folder, the Parquet file and row count per split,
    the reward shim and the run script.
    """

    out_dir: Path
    files: dict[str, Path]
    counts: dict[str, int]
    reward_path: Path
    script: Path


def verl_rows(
    puzzles: Sequence[Puzzle], split: str, prompt_layout: str = DEFAULT_PROMPT_LAYOUT
) -> list[dict[str, Any]]:
    """One verl row per puzzle: prompt messages, a rule reward holding the gold answer, and extra info
    (split, index, id, N, provenance). Raises for a puzzle without a gold answer.
    """
    rows = []
    for index, p in enumerate(puzzles):
        if p.answer is None:
            raise InputError(f"puzzle {p.id} has no gold answer; verl's rule reward needs labelled puzzles")
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": p.messages(prompt_layout),
                "ability": ABILITY,
                "reward_model": {"style": "rule", "ground_truth": p.answer_str},
                "extra_info": {
                    "split": split,
                    "index": index,
                    "id": p.id,
                    "n": p.n,
                    "tissue": p.tissue or "",
                    "disease": p.disease or "",
                    "source": p.source or "",
                    "donor": p.donor or "",
                },
            }
        )
    return rows


def split_name(path: Path | str, total: int) -> str:
    """``…train….jsonl`` → ``train``; ``…test…`` → ``test``; a lone unnamed input → ``train``;
    a hub reference ``hf://datasets/…:SPLIT`` → its split.
    """
    if is_hub_reference(path):
        path = Path(parse_reference(str(path)).split or "train")
    words = re.split(r"[^a-z]+", path.stem.lower())
    for word in SPLIT_WORDS:
        if word in words:
            return {"validation": "val", "dev": "val", "eval": "val"}.get(word, word)
    return "train" if total == 1 else path.stem


# In a folder holding one split in several formats (as `cello1 build` writes), the first of these is read.
FORMAT_PREFERENCE = (".jsonl", ".parquet", ".json")


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path | str]:
    """A folder holding per-split files (``train.jsonl``, ``test.jsonl``…) counts as those
    files; when a split is there in several formats (``train.jsonl`` and ``train.parquet``,
    as ``cello1 build`` writes them) one is read, by :data:`FORMAT_PREFERENCE`; hub
    references stay as they are.
    """
    paths: list[Path | str] = []
    for item in inputs:
        if is_hub_reference(item):
            paths.append(str(item))
            continue
        path = Path(item)
        if not path.is_dir():
            paths.append(path)
            continue
        chosen: dict[str, Path] = {}  # file stem -> the file read for it
        candidates = sorted(
            (p for p in path.iterdir() if p.suffix in FORMAT_PREFERENCE and not p.name.startswith(".")),
            key=lambda p: (FORMAT_PREFERENCE.index(p.suffix), p.name),
        )
        for file in candidates:
            if split_name(file, 2) in ("train", "test", "val"):
                chosen.setdefault(file.stem, file)
        paths.extend(sorted(chosen.values()) or [path])
    return paths


def export_verl(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
    run: VerlRunSettings | None = None,
) -> VerlExport:
    """Write verl Parquet files, the reward shim and a ready GRPO launch script.

    Every input is read and checked before anything is written; the files are then
    written to a temporary folder and moved into ``out_dir`` together, so an error never
    leaves a folder with some of them.
    """
    check_prompt_layout(prompt_layout)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not inputs:
        raise InputError("no input puzzles; pass one or more puzzle files")
    paths = expand_inputs(inputs)
    out = Path(out_dir)
    _check_export_dir(out, inputs)
    tables: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, Path] = {}
    for path in paths:
        split = split_name(path, len(paths))
        if split in tables:
            raise InputError(
                f"two inputs map to the split {split!r} ({sources[split]} and {path}); give each input a distinct name"
            )
        tables[split], sources[split] = verl_rows(read_puzzles(path), split, prompt_layout), path
    files = {split: out / f"{split}.parquet" for split in tables}
    counts = {split: len(rows) for split, rows in tables.items()}
    reward_path = out / "reward.py"
    with _staging(out) as stage:
        for split, rows in tables.items():
            _write_table(stage / files[split].name, rows)
        write_reward_shim(stage)
        script = write_run_script(stage, files, reward_path, run or VerlRunSettings())
        manifest = {
            "reward_module": REWARD_MODULE,
            "reward_function": REWARD_FUNCTION,
            "custom_reward_function.path": str(reward_path.resolve()),
            "custom_reward_function.name": REWARD_FUNCTION,
            "data_source": DATA_SOURCE,
            "prompt_layout": prompt_layout,
            "files": {k: str(v.resolve()) for k, v in files.items()},
            "counts": counts,
        }
        (stage / "reward_function.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return VerlExport(out, files, counts, reward_path, out / script.name)


def _check_export_dir(out: Path, inputs: Sequence[str | os.PathLike]) -> None:
    """The output must be a folder (or a new path) that holds none of the inputs."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{{out}}={out} is an existing file; give a folder name", params=["out"])
    for item in inputs:
        if inside(item, out) or (Path(item).is_dir() and same_path(item, out)):
            raise InputError(
                f"{{out}}={out} holds the input {item}; exporting there could overwrite the inputs "
                "(e.g. a build's train.parquet) — choose another {out}",
                params=["out"],
            )
    check_output_dir(out, overwrite=True)


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder whose files are moved into ``out`` at the end (``out`` created
    then, or the whole folder renamed when it does not exist yet).
    """
    if not out.exists():
        with atomic_dir(out) as tmp:
            yield tmp
        return
    with temp_dir_beside(out) as stage:
        yield stage
        for file in sorted(stage.iterdir()):
            os.replace(file, out / file.name)


def write_reward_shim(out: Path) -> Path:
    """Write ``reward.py``, which re-exports cello1's verl reward function; returns its path."""
    path = out / "reward.py"
    with atomic_path(path) as tmp:
        tmp.write_text(REWARD_SHIM, encoding="utf-8")
    return path


def verl_overrides(files: dict[str, Path], reward_path: Path, run: VerlRunSettings) -> list[str]:
    """Hydra overrides for ``python -m verl.trainer.main_ppo`` (the paper's recipe)."""
    train = files.get("train") or next(iter(files.values()))
    val = files.get("test") or files.get("val") or train
    return [
        "algorithm.adv_estimator=grpo",
        f"data.train_files={train.resolve()}",
        f"data.val_files={val.resolve()}",
        "data.prompt_key=prompt",
        f"data.train_batch_size={run.train_batch_size}",
        f"data.max_prompt_length={run.max_prompt_length}",
        f"data.max_response_length={run.max_response_length}",
        "data.filter_overlong_prompts=True",
        "data.truncation=error",
        f"actor_rollout_ref.model.path={run.model}",
        "actor_rollout_ref.model.use_remove_padding=True",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        f"actor_rollout_ref.actor.optim.lr={run.lr}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={run.ppo_mini_batch_size}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={run.micro_batch_size_per_gpu}",
        "actor_rollout_ref.actor.use_kl_loss=True",
        f"actor_rollout_ref.actor.kl_loss_coef={run.kl_loss_coef}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        f"actor_rollout_ref.actor.entropy_coeff={run.entropy_coeff:g}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={run.rollouts}",
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={run.tensor_parallel}",
        f"actor_rollout_ref.rollout.gpu_memory_utilization={run.gpu_memory_utilization}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={run.micro_batch_size_per_gpu}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={run.micro_batch_size_per_gpu}",
        "algorithm.use_kl_in_reward=False",
        f"custom_reward_function.path={reward_path.resolve()}",
        f"custom_reward_function.name={REWARD_FUNCTION}",
        "trainer.critic_warmup=0",
        "trainer.logger=['console']",
        f"trainer.project_name={run.project_name}",
        f"trainer.experiment_name={run.experiment_name}",
        f"trainer.n_gpus_per_node={run.n_gpus_per_node}",
        f"trainer.nnodes={run.nnodes}",
        f"trainer.save_freq={run.save_freq}",
        f"trainer.test_freq={run.test_freq}",
        f"trainer.total_epochs={run.total_epochs}",
        *run.extra,
    ]


def write_run_script(out: Path, files: dict[str, Path], reward_path: Path, run: VerlRunSettings) -> Path:
    """Write the executable ``run_verl_grpo.sh`` that launches the paper's GRPO run; returns its path."""
    lines = verl_overrides(files, reward_path, run)
    body = " \\\n    ".join(shlex.quote(x) for x in lines)
    script = (
        "#!/usr/bin/env bash\n"
        "# The paper's GRPO run (docs/format.md §7) with verl, written by `cello1 export verl`.\n"
        "# Needs: verl + vLLM + cello1 installed in one environment, 8 GPUs.\n"
        "# Extra Hydra overrides on the command line win, e.g. actor_rollout_ref.model.path=/my/sft/merged\n"
        "set -euo pipefail\n"
        f'python3 -m verl.trainer.main_ppo \\\n    {body} \\\n    "$@"\n'
    )
    path = out / "run_verl_grpo.sh"
    with atomic_path(path) as tmp:
        tmp.write_text(script, encoding="utf-8")
    path.chmod(default_mode(directory=True))  # an executable: rwx where the umask allows
    return path
