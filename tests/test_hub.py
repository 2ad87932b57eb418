"""Puzzles from the Hugging Face Hub (``hf://datasets/OWNER/NAME:SPLIT``), tested offline.

The test lays out a dataset repository as the hub does (Parquet shards under ``data/``
and a dataset card whose YAML names the splits) inside a Hugging Face cache folder, then
reads it with ``HF_HUB_OFFLINE=1``: the same path a user takes after the first download.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cello1.cli import app
from cello1.errors import InputError
from cello1.hub import parse_reference
from cello1.io import read_puzzles

REPO = "ncbi/CellPuzzles"
CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# CellPuzzles (test copy)
"""


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, official_records):
    cache = tmp_path / "hf-cache"
    repo = cache / f"datasets--{REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    (snap / "data").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "README.md").write_text(CARD)
    rows = [{k: r[k] for k in ("system_msg", "user_msg", "assistant_msg")} for r in official_records]
    pq.write_table(pa.Table.from_pylist(rows[:2]), snap / "data" / "test-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), snap / "data" / "test-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1]), snap / "data" / "train-00000-of-00001.parquet")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return official_records


def test_reads_a_split_from_the_cache_offline(hub_cache):
    test = read_puzzles(f"hf://datasets/{REPO}:test")
    assert [p.user_msg for p in test] == [r["user_msg"] for r in hub_cache]  # both shards, in order
    assert len(read_puzzles(f"hf://datasets/{REPO}:train")) == 1
    with pytest.raises(InputError, match="name a split.*splits: test, train"):
        read_puzzles(f"hf://datasets/{REPO}")
    with pytest.raises(InputError, match="no split 'reasoning'"):
        read_puzzles(f"hf://datasets/{REPO}:reasoning")


def test_offline_without_the_cache_is_one_clear_error(hub_cache):
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        read_puzzles("hf://datasets/someone/NotDownloaded:test")


def test_references_parse_and_bad_ones_are_named():
    ref = parse_reference("hf://datasets/ncbi/CellPuzzles@v1.0:test")
    assert (ref.repo_id, ref.revision, ref.split) == ("ncbi/CellPuzzles", "v1.0", "test")
    assert str(ref) == "hf://datasets/ncbi/CellPuzzles@v1.0:test"
    with pytest.raises(InputError, match="not a hub dataset reference"):
        parse_reference("hf://datasets/only-one-part")


def test_every_puzzle_reading_command_accepts_a_reference(hub_cache, tmp_path):
    ref = f"hf://datasets/{REPO}:test"
    out = tmp_path / "pred.jsonl"
    solved = CliRunner().invoke(app, ["solve", ref, "-o", str(out), "--solver", "random", "--no-progress"])
    assert solved.exit_code == 0, solved.output
    assert len(out.read_text().splitlines()) == 3
    audited = CliRunner().invoke(app, ["audit", f"hf://datasets/{REPO}:train", ref])
    assert audited.exit_code == 0 and "1 of 3 test puzzles" in audited.output, audited.output
    exported = CliRunner().invoke(app, ["export", "verl", ref, "-o", str(tmp_path / "verl")])
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "verl" / "reward_function.json").read_text())
    assert manifest["counts"] == {"test": 3}
    distilled = CliRunner().invoke(app, ["distill", ref, "-o", str(tmp_path / "sft.jsonl"), "--no-progress"])
    assert distilled.exit_code == 0, distilled.output
    kept = read_puzzles(tmp_path / "sft.jsonl")
    assert kept and all(p.reasoning for p in kept)  # the markers teacher solves some official puzzles perfectly
    assert (tmp_path / "sft.traces.jsonl").exists() and len(
        (tmp_path / "sft.traces.jsonl").read_text().splitlines()
    ) == 3
    from cello1.training.config import SFTStageConfig

    SFTStageConfig(train_file=ref, eval_file=ref).check()  # no "no such file" for hub references


def test_a_build_folder_is_hub_ready(tmp_path, monkeypatch):
    """The card `build` writes carries the hub's YAML header: `datasets` loads the folder as it
    is, and the same folder in a hub cache reads as hf://datasets/…:SPLIT."""
    import datasets
    import yaml

    from cello1.data import build_puzzles, pbmc68k_reduced, write_build

    built = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4, puzzles_per_n=3)
    out = write_build(built, tmp_path / "build")
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "train.parquet"},
        {"split": "test", "path": "test.parquet"},
    ]
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == {
        "train": len(built.train),
        "test": len(built.test),
    }
    loaded = datasets.load_dataset(str(out), split="test", cache_dir=str(tmp_path / "datasets-cache"))
    assert len(loaded) == len(built.test) and loaded[0]["user_msg"] == built.test[0].user_msg

    cache = tmp_path / "cache"
    repo = cache / "datasets--me--mine"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c" * 40)
    (repo / "snapshots").mkdir()
    out.rename(repo / "snapshots" / ("c" * 40))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert [p.id for p in read_puzzles("hf://datasets/me/mine:test")] == [p.id for p in built.test]
