"""Leakage audit of a train/test pair of puzzle sets (``cello1 audit``, and the builder's report).

A test puzzle *leaks* when one of its cells has an exact ranked gene list that also
occurs in the train set (the same cell reused, as in the official split, which was drawn
by puzzle). Optionally a cell also counts as seen when a train cell's top genes are a
near-duplicate (Jaccard similarity of the top-``near_top_k`` gene sets at or above
``near_threshold``): candidate pairs come from MinHash banding, and every candidate is
verified exactly, so the count has no false positives.

The audit also counts cells repeated *within* the test set (several test puzzles share
a cell, so they are not independent), breaks the leak down by N, tissue and disease,
and returns the clean test subset (puzzles none of whose cells were seen in train).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cello1.errors import InputError
from cello1.io import atomic_dir, write_puzzles
from cello1.puzzle import Puzzle

GROUP_FIELDS = ("n", "tissue", "disease")
# MinHash: 16 bands of 4 hashes find pairs above ~0.5 Jaccard with high probability;
# candidates are then checked exactly against the threshold.
_BANDS, _ROWS = 16, 4
_PRIME = (1 << 61) - 1


@dataclass
class AuditResult:
    """The audit of one train/test pair; :meth:`to_dict` is ``audit.json``."""

    test_puzzles: int
    leaked_puzzles: int
    train_puzzles: int
    train_cells: int
    test_cells: int
    leaked_cells: int
    repeated_test_cells: int
    puzzles_with_repeated_cells: int
    clean: list[Puzzle]
    leaked_ids: list[str]
    near_duplicate: dict[str, Any] | None = None
    by: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def leaked_share(self) -> float:
        """Share of test puzzles holding a cell whose exact gene list is in train."""
        return self.leaked_puzzles / self.test_puzzles if self.test_puzzles else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (without the clean puzzles themselves)."""
        out = {
            "test_puzzles": self.test_puzzles,
            "leaked_puzzles": self.leaked_puzzles,
            "leaked_share": round(self.leaked_share, 6),
            "clean_puzzles": len(self.clean),
            "train_puzzles": self.train_puzzles,
            "train_cells": self.train_cells,
            "test_cells": self.test_cells,
            "leaked_cells": self.leaked_cells,
            "repeated_test_cells": self.repeated_test_cells,
            "puzzles_with_repeated_cells": self.puzzles_with_repeated_cells,
            "by": self.by,
            "leaked_ids": self.leaked_ids,
        }
        if self.near_duplicate is not None:
            out["near_duplicate"] = self.near_duplicate
        return out


def cell_key(genes: Sequence[str]) -> tuple[str, ...]:
    """The identity of a cell: its ranked gene list exactly as written."""
    return tuple(genes)


def audit(
    train: Iterable[Puzzle],
    test: Iterable[Puzzle],
    *,
    near_threshold: float | None = None,
    near_top_k: int = 20,
    seed: int = 0,
) -> AuditResult:
    """Audit ``test`` against ``train`` (see the module docstring).

    Parameters
    ----------
    train, test
        The two puzzle sets.
    near_threshold
        Also count a test cell as seen when a train cell's top ``near_top_k`` genes have a
        Jaccard similarity of at least this value with its own (``None``: exact only).
    near_top_k
        How many top genes of each cell the near-duplicate comparison uses.
    seed
        Seed of the MinHash functions (the result is exact whatever the seed, up to the
        rare near-duplicate pair that no band catches).
    """
    train, test = list(train), list(test)
    if near_threshold is not None and not 0.0 < near_threshold <= 1.0:
        raise InputError(f"{{near_threshold}} must be in (0, 1], not {near_threshold}", params=["near_threshold"])
    if near_top_k < 1:
        raise InputError(f"{{near_top_k}} must be at least 1, not {near_top_k}", params=["near_top_k"])
    train_keys = {cell_key(genes) for p in train for genes in p.cells}
    exact = [[cell_key(genes) in train_keys for genes in p.cells] for p in test]
    seen, near = exact, None
    if near_threshold is not None:
        close = _near_duplicates(train, test, near_threshold, near_top_k, seed)
        seen = [[a or b for a, b in zip(e, c, strict=True)] for e, c in zip(exact, close, strict=True)]
        near_leaked = sum(map(any, seen))
        near = {
            "threshold": near_threshold,
            "top_k": near_top_k,
            "leaked_puzzles": near_leaked,
            "leaked_share": round(near_leaked / len(test), 6) if test else 0.0,
            "near_only_cells": sum(map(sum, seen)) - sum(map(sum, exact)),
        }
    leaked = [any(cells) for cells in exact]
    dropped = [any(cells) for cells in seen]  # the clean subset excludes near-duplicates too
    repeats = _repeated_cells(test)
    return AuditResult(
        test_puzzles=len(test),
        leaked_puzzles=sum(leaked),
        train_puzzles=len(train),
        train_cells=sum(p.n for p in train),
        test_cells=sum(p.n for p in test),
        leaked_cells=sum(map(sum, exact)),
        repeated_test_cells=repeats[0],
        puzzles_with_repeated_cells=repeats[1],
        clean=[p for p, bad in zip(test, dropped, strict=True) if not bad],
        leaked_ids=[p.id for p, bad in zip(test, dropped, strict=True) if bad],
        near_duplicate=near,
        by=_breakdowns(test, leaked),
    )


def _repeated_cells(test: list[Puzzle]) -> tuple[int, int]:
    """(distinct cells found in more than one test puzzle, test puzzles holding one)."""
    puzzles_of: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for i, p in enumerate(test):
        for genes in p.cells:
            puzzles_of[cell_key(genes)].add(i)
    shared = {k for k, where in puzzles_of.items() if len(where) > 1}
    touched = {i for k in shared for i in puzzles_of[k]}
    return len(shared), len(touched)


def _breakdowns(test: list[Puzzle], leaked: list[bool]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group in GROUP_FIELDS:
        totals: Counter[str] = Counter()
        bad: Counter[str] = Counter()
        for p, is_leaked in zip(test, leaked, strict=True):
            value = p.n if group == "n" else getattr(p, group)
            if value is None or value == "":
                continue
            totals[str(value)] += 1
            bad[str(value)] += is_leaked
        if totals:
            keys = sorted(totals, key=lambda k: (int(k), k) if group == "n" else (0, k))
            out[group] = {
                k: {"test_puzzles": totals[k], "leaked_puzzles": bad[k], "leaked_share": round(bad[k] / totals[k], 6)}
                for k in keys
            }
    return out


# ---- near duplicates ---------------------------------------------------------------------


def _gene_sets(puzzles: list[Puzzle], top_k: int, vocab: dict[str, int]) -> list[frozenset[int]]:
    return [frozenset(vocab.setdefault(g, len(vocab)) for g in genes[:top_k]) for p in puzzles for genes in p.cells]


def _signatures(sets: list[frozenset[int]], n_genes: int, seed: int) -> np.ndarray:
    """MinHash signatures (cells × bands·rows) of gene-id sets."""
    rng = np.random.default_rng(seed)
    n_hash = _BANDS * _ROWS
    a = rng.integers(1, _PRIME, size=n_hash, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=n_hash, dtype=np.uint64)
    # hash of every gene id under every function (genes × hashes); uint64 wrap-around is fine for MinHash
    ids = np.arange(max(n_genes, 1), dtype=np.uint64)[:, None]
    gene_hash = ids * a[None, :] + b[None, :]
    sig = np.full((len(sets), n_hash), np.iinfo(np.uint64).max, dtype=np.uint64)
    chunk = 8192  # bounds the (genes of the chunk's cells) × hashes block to ~100 MB
    for lo in range(0, len(sets), chunk):
        part = sets[lo : lo + chunk]
        sizes = np.fromiter((len(s) for s in part), dtype=np.int64, count=len(part))
        filled = np.flatnonzero(sizes)
        if not len(filled):
            continue
        flat = np.fromiter((g for s in part for g in s), dtype=np.int64, count=int(sizes.sum()))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[filled]
        sig[lo + filled] = np.minimum.reduceat(gene_hash[flat], starts, axis=0)
    return sig


def _band_hashes(sig: np.ndarray) -> np.ndarray:
    """One uint64 per (cell, band): a mix of the band's MinHash values."""
    mix = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)
    bands = sig.reshape(len(sig), _BANDS, _ROWS)
    return (bands * mix[None, None, :_ROWS]).sum(axis=2, dtype=np.uint64)


def _near_duplicates(
    train: list[Puzzle], test: list[Puzzle], threshold: float, top_k: int, seed: int
) -> list[list[bool]]:
    """Per test cell: does a train cell's top-gene set reach ``threshold`` Jaccard with it?"""
    vocab: dict[str, int] = {}
    train_sets = _gene_sets(train, top_k, vocab)
    test_sets = _gene_sets(test, top_k, vocab)
    train_bands = _band_hashes(_signatures(train_sets, len(vocab), seed))
    test_bands = _band_hashes(_signatures(test_sets, len(vocab), seed))
    candidates: list[set[int]] = [set() for _ in test_sets]
    for band in range(_BANDS):
        order = np.argsort(train_bands[:, band], kind="stable")
        keys = train_bands[order, band]
        lo = np.searchsorted(keys, test_bands[:, band], side="left")
        hi = np.searchsorted(keys, test_bands[:, band], side="right")
        for i in np.flatnonzero(hi > lo):
            candidates[i].update(order[lo[i] : hi[i]].tolist())
    flags = [
        any(_jaccard(test_sets[i], train_sets[j]) >= threshold for j in cands) for i, cands in enumerate(candidates)
    ]
    out, pos = [], 0
    for p in test:
        out.append(flags[pos : pos + p.n])
        pos += p.n
    return out


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def audit_card(result: AuditResult, train_name: str, test_name: str, command: str | None = None) -> str:
    """The README of an audit folder: what was compared, how, and what came out."""
    d = result.to_dict()
    lines = [
        "# Leakage audit",
        "",
        f"Test puzzles `{test_name}` audited against train puzzles `{train_name}` with cello1.",
        "",
        "A test puzzle **leaks** when one of its cells has a ranked gene list that occurs exactly in the",
        "train set (the same cell reused)"
        + (
            f", or — near-duplicates — when a train cell's top {result.near_duplicate['top_k']} genes have a Jaccard"
            f" similarity of at least {result.near_duplicate['threshold']} with the cell's own."
            if result.near_duplicate
            else "."
        ),
        "`test_clean.jsonl` holds the test puzzles without any such cell, in the same record format.",
        "",
        "| | count | share |",
        "|---|---:|---:|",
        f"| test puzzles | {d['test_puzzles']} | |",
        f"| leaked test puzzles | {d['leaked_puzzles']} | {100 * d['leaked_share']:.1f}% |",
        f"| clean test puzzles (`test_clean.jsonl`) | {d['clean_puzzles']} | |",
        f"| test cells seen in train | {d['leaked_cells']} of {d['test_cells']} | |",
        f"| cells repeated across test puzzles | {d['repeated_test_cells']} "
        f"(in {d['puzzles_with_repeated_cells']} puzzles) | |",
        "",
    ]
    for group, rows in result.by.items():
        lines += [f"## By {group}", "", f"| {group} | test puzzles | leaked | share |", "|---|---:|---:|---:|"]
        lines += [
            f"| {key} | {r['test_puzzles']} | {r['leaked_puzzles']} | {100 * r['leaked_share']:.1f}% |"
            for key, r in rows.items()
        ]
        lines.append("")
    if command:
        lines += ["## How it was made", "", "```bash", command, "```", ""]
    lines += ["Details: `audit.json` (counts, breakdowns and the ids of the leaked puzzles)."]
    return "\n".join(lines) + "\n"


def write_audit(
    result: AuditResult,
    out_dir: str | os.PathLike,
    *,
    train_name: str,
    test_name: str,
    command: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``audit.json``, ``test_clean.jsonl`` and ``README.md`` into ``out_dir`` (atomically)."""
    with atomic_dir(out_dir, overwrite) as tmp:
        summary = {"train": train_name, "test": test_name, **result.to_dict()}
        (tmp / "audit.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_puzzles(tmp / "test_clean.jsonl", result.clean)
        (tmp / "README.md").write_text(audit_card(result, train_name, test_name, command), encoding="utf-8")
    return Path(out_dir)


def content_hash(puzzles: Iterable[Puzzle]) -> str:
    """A short hash of a puzzle set's cells, to name what an audit was run on."""
    digest = hashlib.sha1()
    for p in puzzles:
        for genes in p.cells:
            digest.update(("\x1f".join(genes) + "\x1e").encode("utf-8"))
    return digest.hexdigest()[:16]


__all__ = ["AuditResult", "audit", "audit_card", "cell_key", "content_hash", "write_audit"]
