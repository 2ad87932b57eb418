"""The settings of a build (:class:`BuildConfig`), importable without numpy or AnnData.

Each field carries its default and the help text ``cello1 build --help`` shows, so a
default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cello1.errors import InputError

DEFAULT_DONOR_KEY = "donor_id"
DEFAULT_GENE_KEY = "feature_name"
DEFAULT_CHUNK_SIZE = 2048
ENGINES = ("auto", "numpy", "numba")
SPLITS = ("auto", "donor", "cell", "random")


def _setting(default: Any, help: str) -> Any:
    """A config field with a default and the help text the CLI shows for it."""
    return field(default=default, metadata={"help": help})


@dataclass
class BuildConfig:
    """Every setting of a build (defaults reproduce the official recipe, minus leakage)."""

    label_key: str = _setting("cell_type", "obs column with the cell type.")
    donor_key: str = _setting(DEFAULT_DONOR_KEY, "obs column with the donor; absent = one group per file.")
    gene_key: str = _setting(DEFAULT_GENE_KEY, "var column with gene symbols; absent = var_names.")
    batch_key: str | None = _setting("batch", "obs column that further splits donors into groups, when present.")
    suspension_key: str = _setting("suspension_type", "obs column with cell/nucleus.")
    suspension_type: str | None = _setting(
        "cell", "Keep only cells with this suspension type when the column exists; 'any' keeps all."
    )
    query: str | None = _setting(None, "Select cells with a pandas obs query, e.g. 'tissue == \"lung\"'.")
    tissue: str | None = _setting(
        None, "Tissue of the cells where obs has no tissue value (used in the context sentence), e.g. 'lung'."
    )
    donor: str | None = _setting(None, "Donor id of all cells when obs has no donor column (provenance only).")
    top_k: int = _setting(50, "Top expressed genes listed per cell.")
    n_min: int = _setting(8, "Smallest N (cells per puzzle).")
    n_max: int = _setting(15, "Largest N (cells per puzzle).")
    puzzles_per_n: int = _setting(40, "Target puzzles per N per group (donor/batch).")
    max_cells: int | None = _setting(20_000, "Subsample each file to at most this many cells (0 = all).")
    seed: int = _setting(0, "Random seed (same seed + inputs = same puzzles).")
    split: str = _setting(
        "auto",
        "auto (donor-disjoint with >= 2 donors, else cell-disjoint) | donor | cell | random (the original, leaky).",
    )
    test_fraction: float = _setting(0.15, "Share of puzzles (or cells) held out for test.")
    max_test: int | None = _setting(1_100, "Cap on test puzzles, stratified by N (0 = no cap).")
    strip_ensembl: bool = _setting(True, "Strip Ensembl suffixes ('CSF2RA_ENSG00000198223' -> 'CSF2RA').")
    backed: bool = _setting(False, "Read X from disk chunk by chunk (files larger than memory).")
    chunk_size: int = _setting(DEFAULT_CHUNK_SIZE, "Rows per chunk for the top-gene computation.")
    topk_engine: str = _setting(
        "auto", "Top-gene engine: auto (numba when installed) | numba | numpy; identical results."
    )
    require_donor: bool = _setting(False, "A missing donor column is an error, not a warning.")
    progress: bool = _setting(False, "Show a progress bar.")

    def validate(self) -> None:
        """Raise :class:`~cello1.errors.InputError` on settings that cannot work."""
        if self.split not in SPLITS:
            raise InputError(f"{{split}} must be one of {', '.join(SPLITS)}, not {self.split!r}", params=["split"])
        if self.n_min < 2:
            raise InputError(f"{{n_min}} must be at least 2 (got {self.n_min})", params=["n_min"])
        if self.n_max < self.n_min:
            raise InputError(f"{{n_max}} ({self.n_max}) must be >= {{n_min}} ({self.n_min})", params=["n_max", "n_min"])
        if self.top_k < 1:
            raise InputError(f"{{top_k}} must be at least 1 (got {self.top_k})", params=["top_k"])
        if self.puzzles_per_n < 1:
            raise InputError(
                f"{{puzzles_per_n}} must be at least 1 (got {self.puzzles_per_n})", params=["puzzles_per_n"]
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise InputError(
                f"{{test_fraction}} must be between 0 and 1 (got {self.test_fraction})", params=["test_fraction"]
            )
        if self.max_cells is not None and self.max_cells < 0:
            raise InputError(f"{{max_cells}} must be >= 0 (0 = no cap), got {self.max_cells}", params=["max_cells"])
        if self.max_test is not None and self.max_test < 0:
            raise InputError(f"{{max_test}} must be >= 0 (0 = no cap), got {self.max_test}", params=["max_test"])
        for name in ("tissue", "donor"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or any(c in value for c in "\n\r|")):
                raise InputError(f"{{{name}}} must be a non-empty one-line name, not {value!r}", params=[name])
        if self.chunk_size < 1:
            raise InputError(f"{{chunk_size}} must be at least 1 (got {self.chunk_size})", params=["chunk_size"])
        if self.topk_engine not in ENGINES:
            raise InputError(
                f"{{topk_engine}} must be one of {', '.join(ENGINES)}, not {self.topk_engine!r}", params=["topk_engine"]
            )
