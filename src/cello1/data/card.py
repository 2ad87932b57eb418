"""Writing a build to its output folder, atomically, with a dataset card.

``DIR/train.jsonl``, ``DIR/test.jsonl`` (records = ``Puzzle.to_record()``),
``DIR/train.parquet``, ``DIR/test.parquet``, ``DIR/leakage.json``,
``DIR/build_config.json`` and ``DIR/README.md`` (the dataset card). Everything is
written to a temporary folder next to ``DIR`` and renamed at the end, so an error
never leaves a half-written folder (and a later build removes what a killed one left).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cello1.io import atomic_dir, write_jsonl
from cello1.puzzle import PROVENANCE_FIELDS, Puzzle

SPLIT_NAMES = ("train", "test")


def records(puzzles: Sequence[Puzzle]) -> list[dict[str, Any]]:
    """``to_record()`` of each puzzle with the same keys in every record (missing
    provenance as ``null``), so JSON and Parquet readers infer one schema.
    """
    rows = [p.to_record() for p in puzzles]
    keys = ["id", "system_msg", "user_msg", "assistant_msg", *[f for f in PROVENANCE_FIELDS if f != "n"], "n"]
    extra = sorted({k for r in rows for k in r} - set(keys))
    return [{k: r.get(k) for k in keys + extra} for r in rows]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write records as one Parquet file with the fixed record schema (inferred when rows carry extra keys)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("system_msg", pa.string()),
            ("user_msg", pa.string()),
            ("assistant_msg", pa.string()),
            ("source", pa.string()),
            ("donor", pa.string()),
            ("tissue", pa.string()),
            ("disease", pa.string()),
            ("cell_ids", pa.list_(pa.string())),
            ("n", pa.int64()),
        ]
    )
    known = set(schema.names)
    extra = [k for k in (rows[0] if rows else {}) if k not in known]
    table = pa.Table.from_pylist(rows, schema=schema) if not extra else pa.Table.from_pylist(rows)
    pq.write_table(table, path)


def _counts_table(title: str, train: Counter, test: Counter) -> str:
    keys = sorted(set(train) | set(test), key=lambda k: (str(type(k)), k))
    lines = [f"### By {title}", "", f"| {title} | train | test |", "|---|---:|---:|"]
    lines += [f"| {k if k is not None else '(none)'} | {train.get(k, 0)} | {test.get(k, 0)} |" for k in keys]
    lines.append(f"| **total** | {sum(train.values())} | {sum(test.values())} |")
    return "\n".join(lines) + "\n"


def hub_header(splits: dict[str, int], pretty_name: str = "CellPuzzles (cello1 build)") -> str:
    """The YAML header the Hugging Face Hub reads from a dataset card: configs and splits
    (``data_files`` → the Parquet file of each split) and tags, so the folder can
    be pushed as it is and loaded with ``datasets.load_dataset`` or ``hf://datasets/…:SPLIT``.
    """
    import yaml

    header = {
        "pretty_name": pretty_name,
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"{name}.parquet"} for name in splits],
            }
        ],
        # features are left to the Parquet schema (the record strings plus provenance columns)
        "dataset_info": {"splits": [{"name": name, "num_examples": count} for name, count in splits.items()]},
        "task_categories": ["text-generation"],
        "tags": ["biology", "single-cell", "cell-type-annotation", "cellpuzzles", "cello1"],
        "license": "other",  # the licence of the input data applies; state it when you publish
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n"


def dataset_card(result: Any, command: str | None = None) -> str:
    """The ``README.md`` of an output folder: what it is, counts, leakage, the command."""
    train, test, leak = result.train, result.test, result.leakage
    parts = [
        hub_header({"train": len(train), "test": len(test)}),
        "# CellPuzzles build",
        "",
        "Batch-level cell-type annotation puzzles in the official CellPuzzles record format "
        "(`system_msg`, `user_msg`, `assistant_msg`) plus `id` and provenance "
        "(`source`, `donor`, `tissue`, `disease`, `cell_ids`, `n`). Built with `cello1 build`.",
        "",
        f"- train: {len(train)} puzzles, test: {len(test)} puzzles",
        f"- split: `{result.split}` (requested `{result.config.split}`)",
        f"- test puzzles containing a train cell: {leak['test_puzzles_with_train_cell']} "
        f"({100 * leak['test_puzzles_with_train_cell_share']:.1f}%); with a gene list identical to a "
        f"train cell's: {leak['test_puzzles_with_train_gene_list']} "
        f"({100 * leak['test_puzzles_with_train_gene_list_share']:.1f}%); details in `leakage.json`",
        "",
        "## Command",
        "",
        "```",
        command or "cello1.data.build_puzzles(...)  # built from Python",
        "```",
        "",
        "## Files",
        "",
        "`train.jsonl`, `test.jsonl` (one record per line), `train.parquet`, `test.parquet` (same records), "
        "`leakage.json`, `build_config.json`. Load with "
        '`datasets.load_dataset("json", data_files={"train": "train.jsonl", "test": "test.jsonl"})` '
        'or `cello1.read_puzzles("test.jsonl")`.',
        "",
        "## Counts",
        "",
    ]
    for title, key in (
        ("N", "n"),
        ("tissue", "tissue"),
        ("disease", "disease"),
        ("donor", "donor"),
        ("source", "source"),
    ):
        tr = Counter(p.n if key == "n" else getattr(p, key) for p in train)
        te = Counter(p.n if key == "n" else getattr(p, key) for p in test)
        parts.append(_counts_table(title, tr, te))
    parts += ["## Inputs", "", "| source | cells | selected | kept |", "|---|---:|---:|---:|"]
    parts += [f"| {s} | {c['cells']} | {c['selected']} | {c['kept']} |" for s, c in result.sources.items()]
    if result.warnings:
        parts += ["", "## Notes", ""] + [f"- {w}" for w in result.warnings]
    parts += ["", "## Settings", "", "```json", json.dumps(asdict(result.config), indent=2), "```", ""]
    return "\n".join(parts)


def write_build(result: Any, out_dir: str | os.PathLike, command: str | None = None, overwrite: bool = False) -> Path:
    """Write a :class:`~cello1.data.build.BuildResult` to ``out_dir`` (atomically, see
    :func:`cello1.io.atomic_dir`).

    Refuses an existing non-empty ``out_dir`` unless ``overwrite``.
    """
    with atomic_dir(out_dir, overwrite) as tmp:
        for name, puzzles in zip(SPLIT_NAMES, (result.train, result.test), strict=True):
            rows = records(puzzles)
            write_jsonl(tmp / f"{name}.jsonl", rows)
            write_parquet(tmp / f"{name}.parquet", rows)
        (tmp / "leakage.json").write_text(json.dumps(result.leakage, indent=2) + "\n", encoding="utf-8")
        (tmp / "build_config.json").write_text(json.dumps(asdict(result.config), indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(dataset_card(result, command), encoding="utf-8")
    return Path(out_dir)
