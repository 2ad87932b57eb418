"""Top-K expressed genes per cell, in row chunks, never densifying the matrix.

The original scripts densified one cell at a time and ran a Python loop per cell.
Here rows are handled a chunk at a time on their *stored (non-zero) values only*
(an in-memory CSR matrix is read in place; dense, CSC or backed on-disk matrices are
read as one CSR chunk of ``chunk_size`` rows at a time). Two engines, identical results:

``numpy`` (vectorised):
  pack every stored value with its column into one int64 key (for float32 data; the
  bit pattern of a positive float orders like its value), scatter the keys of a chunk
  into a ``rows × widest-row`` array, ``np.partition`` it per row and sort the K
  survivors; values not exactly float32 go through a threshold + ``np.lexsort`` path.
``numba`` (compiled; numba comes with scanpy):
  per row, a histogram of the values' top bits finds the bucket of the K-th largest,
  only entries from that bucket up are kept as keys, then a selection and a sort of K
  (float32); other dtypes use a bounded heap. ``auto`` picks numba when it imports.

Order: value descending, ties by the lower gene index (column), so the result is
deterministic. Entries ``== 0`` are never listed, so a cell may get fewer than K genes.
NaN/inf and negative values (a scaled, z-scored matrix: "top expressed" means nothing
there) raise :class:`BadValueError`, which names the first such cell's row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cello1.data.config import DEFAULT_CHUNK_SIZE, ENGINES
from cello1.errors import InputError
from cello1.genes import strip_ensembl_suffix


def gene_symbols(names: Sequence[Any], strip_ensembl: bool = True) -> np.ndarray:
    """Gene names as a numpy object array of ``str`` (optionally suffix-stripped)."""
    out = [str(n) for n in names]
    if strip_ensembl:
        out = [strip_ensembl_suffix(n) for n in out]
    return np.asarray(out, dtype=object)


def iter_row_chunks(X: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[int, sp.csr_matrix]]:
    """``(start, CSR chunk)`` over contiguous row blocks of a dense, sparse or backed matrix.

    Only one chunk is materialised at a time; for an AnnData opened with
    ``backed="r"`` this reads the rows from disk chunk by chunk.
    """
    n_rows = X.shape[0]
    for start in range(0, n_rows, chunk_size):
        block = X[start : min(start + chunk_size, n_rows)]
        yield start, as_csr(block)


def as_csr(block: Any) -> sp.csr_matrix:
    """A CSR matrix for a dense, sparse or array-like block (no copy when already CSR)."""
    if isinstance(block, sp.csr_matrix):
        return block
    if sp.issparse(block):
        return sp.csr_matrix(block)
    if hasattr(block, "toarray"):  # e.g. a backed dataset wrapper
        block = block.toarray()
    return sp.csr_matrix(np.asarray(block))


class BadValueError(InputError):
    """X holds NaN/inf (``kind="non-finite"``) or negative values (``kind="negative"``);
    ``row`` is the first such cell's row in X (``cell``: its obs name, ``source``: the
    input, when known).
    """

    def __init__(self, kind: str, row: int, cell: str | None = None, source: str | None = None) -> None:
        self.kind, self.row, self.cell, self.source = kind, int(row), cell, source
        where = f"cell row {row}" + ("" if cell is None else f" (obs name {cell!r})")
        if kind == "negative":
            text = (
                f"X has negative values, first in {where}: it looks scaled (z-scored), where "
                "'top expressed genes' mean nothing; put counts or log-normalised values in X "
                "(e.g. adata.X = adata.raw.X or adata.layers['counts']) before building"
            )
        else:
            text = (
                f"X has non-finite values (NaN or inf), first in {where}; "
                "clean the matrix (e.g. np.nan_to_num or drop those cells) before building"
            )
        super().__init__(text if source is None else f"{source}: {text}")

    def at(self, row: int, cell: str | None = None, source: str | None = None) -> BadValueError:
        """The same error for another row number (chunk-relative → row in X), cell name or input."""
        return BadValueError(self.kind, row, cell, source)


def check_values(chunk: sp.csr_matrix, rows: np.ndarray | None = None, allow_negative: bool = True) -> None:
    """Raise :class:`BadValueError` naming the first cell with NaN/inf values (or negative
    ones unless ``allow_negative``); ``rows`` maps the chunk's rows to rows of X (default:
    the chunk's own numbering).
    """
    data = chunk.data
    if data.size == 0:
        return
    low, high = data.min(), data.max()  # two fast reductions; NaN propagates into both
    if np.isfinite(low) and np.isfinite(high) and (allow_negative or low >= 0):
        return
    checks = [("non-finite", ~np.isfinite(data))] + ([] if allow_negative else [("negative", data < 0)])
    for kind, bad in checks:
        if bad.any():
            first = int(np.searchsorted(chunk.indptr, np.flatnonzero(bad)[0], side="right") - 1)
            raise BadValueError(kind, first if rows is None else int(rows[first]))


def _kernel_error(code: int) -> BadValueError | None:
    """The numba kernel's return code → error (chunk-relative row), ``None`` when fine."""
    if code >= 0:
        return BadValueError("non-finite", code)
    if code <= -2:
        return BadValueError("negative", -2 - code)
    return None


def _float_data(matrix: sp.csr_matrix) -> np.ndarray:
    data = matrix.data
    return data if np.issubdtype(data.dtype, np.floating) else data.astype(np.float64)


def topk_chunk(chunk: sp.csr_matrix, k: int, engine: str = "numpy", allow_negative: bool = True) -> np.ndarray:
    """Gene indices of the top ``k`` positive entries of every row of a CSR chunk.

    Returns an ``int32`` array ``(rows, k)`` padded with ``-1`` where a row has fewer
    than ``k`` positive entries. Descending by value, ties by lower column index.
    Negative entries are skipped, or raise :class:`BadValueError` unless ``allow_negative``.
    """
    n_rows = chunk.shape[0]
    out = np.full((n_rows, k), -1, dtype=np.int32)
    if n_rows == 0 or k <= 0:
        return out
    if resolve_engine(engine) == "numba":
        if not chunk.has_canonical_format:
            chunk = chunk.copy()
            chunk.sum_duplicates()
        kernel = _numba_kernel()
        rows = np.arange(n_rows)
        error = _kernel_error(kernel(chunk.indptr, chunk.indices, _float_data(chunk), rows, k, out, not allow_negative))
        if error is not None:
            raise error
        return out
    if not allow_negative:
        check_values(chunk, allow_negative=False)
    data, cols, row_nnz = _positive_entries(chunk)
    if data.size == 0:
        return out
    exact32 = _exact_float32(data)
    if exact32 is not None:
        return _topk_by_keys(exact32, cols, row_nnz, k, out)
    return _topk_by_lexsort(data, cols, row_nnz, k, out)


def _exact_float32(data: np.ndarray) -> np.ndarray | None:
    """``data`` as float32 when that loses nothing (always true for float32 input)."""
    if data.dtype == np.float32:
        return data
    as32 = data.astype(np.float32)
    return as32 if np.array_equal(as32, data) else None


def _topk_by_keys(data: np.ndarray, cols: np.ndarray, row_nnz: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """Fast path: pack (value, -column) into one int64 per entry, so every key in a row
    is distinct and ``np.partition`` + ``np.sort`` on the keys alone give the exact,
    tie-broken order. The bit pattern of a positive float32 orders like its value.
    """
    keys = data.view(np.int32).astype(np.int64)
    keys <<= 32
    keys |= 0xFFFFFFFF - cols.astype(np.int64)
    indptr = np.concatenate(([0], np.cumsum(row_nnz)))
    width = int(row_nnz.max())
    pos = np.arange(keys.size, dtype=np.int64) - np.repeat(indptr[:-1], row_nnz)
    # one row per cell, its keys left-aligned, 0 (= "no gene") as padding
    padded = sp.csr_matrix((keys, pos, indptr), shape=(row_nnz.size, width)).toarray()
    top = np.partition(padded, width - k, axis=1)[:, width - k :] if width > k else padded
    top.sort(axis=1)
    top = top[:, ::-1]
    genes = np.where(top > 0, 0xFFFFFFFF - (top & 0xFFFFFFFF), -1)
    out[:, : genes.shape[1]] = genes
    return out


def _topk_by_lexsort(data: np.ndarray, cols: np.ndarray, row_nnz: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """General path (values not exactly representable as float32): threshold each row
    at its K-th largest value, then lexsort the few survivors by (row, -value, column).
    """
    n_rows = row_nnz.size
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), row_nnz)
    width = int(row_nnz.max())
    if width > k:
        indptr = np.concatenate(([0], np.cumsum(row_nnz)))
        pos = np.arange(data.size, dtype=np.int64) - np.repeat(indptr[:-1], row_nnz)
        padded = np.full((n_rows, width), -np.inf)
        padded[rows, pos] = data
        threshold = np.partition(padded, width - k, axis=1)[:, width - k]
        keep = data >= threshold[rows]
        data, cols, rows = data[keep], cols[keep], rows[keep]
    order = np.lexsort((cols, -data, rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
    top = rank < k
    out[rows[top], rank[top]] = cols[top]
    return out


def resolve_engine(engine: str) -> str:
    """``auto`` → ``numba`` when it can be imported, else ``numpy``."""
    if engine not in ENGINES:
        raise InputError(f"top-gene engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "auto":
        return "numba" if _numba_kernel() is not None else "numpy"
    if engine == "numba" and _numba_kernel() is None:
        raise InputError("top-gene engine 'numba' needs the numba package (pip install numba), or use 'numpy'")
    return engine


_KERNEL: list[Any] = []


def _numba_kernel() -> Any:
    """The compiled per-chunk kernel (built once; ``None`` without numba)."""
    if not _KERNEL:
        try:
            from cello1.data._topk_numba import topk_rows, topk_rows_float32
        except ImportError:
            _KERNEL.append(None)
        else:

            def kernel(indptr, indices, data, rows, k, out, reject_negative=False):
                if data.dtype == np.float32:
                    width = int(np.max(indptr[rows + 1] - indptr[rows])) if rows.size else 0
                    bits = data.view(np.int32)
                    return topk_rows_float32(indptr, indices, bits, rows, k, out, width, reject_negative)
                return topk_rows(indptr, indices, data, rows, k, out, reject_negative)

            _KERNEL.append(kernel)
    return _KERNEL[0]


def _positive_entries(chunk: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored values > 0 with their column indices and per-row counts (duplicates summed)."""
    if not chunk.has_canonical_format:
        chunk = chunk.copy()
        chunk.sum_duplicates()
    data = chunk.data
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    cols = chunk.indices
    positive = data > 0
    row_nnz = np.diff(chunk.indptr)
    if not positive.all():
        rows = np.repeat(np.arange(chunk.shape[0]), row_nnz)
        row_nnz = np.bincount(rows[positive], minlength=chunk.shape[0])
        data, cols = data[positive], cols[positive]
    return data, cols, row_nnz


def top_gene_indices(
    X: Any,
    k: int = 50,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rows: np.ndarray | None = None,
    check: bool = True,
    progress: Any = None,
    engine: str = "auto",
    allow_negative: bool = True,
) -> np.ndarray:
    """Top-``k`` gene indices for the rows of ``X`` (``int32 (n, k)``, ``-1`` padded).

    ``rows`` (sorted row indices) restricts the work to those rows; chunks are still
    read contiguously, which is what a backed (on-disk) matrix needs. ``progress`` is
    an optional callable receiving the number of rows just read. ``engine``: ``auto``,
    ``numpy`` or ``numba`` (identical results). NaN/inf raise :class:`BadValueError`
    (with ``check``), so do negative values unless ``allow_negative`` (then never listed).
    """
    engine = resolve_engine(engine)
    n_rows = X.shape[0]
    wanted = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.full((wanted.size, k), -1, dtype=np.int32)
    if engine == "numba" and sp.issparse(X) and X.format == "csr" and X.has_canonical_format:
        return _numba_in_place(X, wanted, k, chunk_size, progress, out, not allow_negative)
    done = 0
    for start, chunk in iter_row_chunks(X, chunk_size):
        stop = start + chunk.shape[0]
        lo, hi = np.searchsorted(wanted, [start, stop])
        if hi > lo:
            sub = chunk if (hi - lo) == chunk.shape[0] else chunk[wanted[lo:hi] - start]
            if check:
                check_values(sub, wanted[lo:hi], allow_negative)
            try:
                out[done : done + (hi - lo)] = topk_chunk(sub, k, engine)  # values checked above
            except BadValueError as exc:  # the numba kernel's own check: map to rows of X
                raise exc.at(int(wanted[lo + exc.row])) from None
            done += hi - lo
        if progress is not None:
            progress(chunk.shape[0])
    return out


def _numba_in_place(
    X: Any, wanted: np.ndarray, k: int, chunk_size: int, progress: Any, out: np.ndarray, reject_negative: bool
) -> np.ndarray:
    """An in-memory CSR matrix needs no chunk copies: the kernel reads its arrays directly
    (chunks only pace the progress bar).
    """
    kernel, data, seen = _numba_kernel(), _float_data(X), 0
    for lo in range(0, wanted.size, chunk_size):
        rows = wanted[lo : lo + chunk_size]
        error = _kernel_error(kernel(X.indptr, X.indices, data, rows, k, out[lo : lo + chunk_size], reject_negative))
        if error is not None:
            raise error.at(int(rows[error.row]))
        if progress is not None:
            progress(int(rows[-1]) + 1 - seen)
            seen = int(rows[-1]) + 1
    if progress is not None and X.shape[0] > seen:
        progress(X.shape[0] - seen)
    return out


def indices_to_names(indices: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """``(n, k)`` index array (``-1`` padded) → ragged lists of gene names."""
    lookup = np.append(np.asarray(names, dtype=object), None)  # -1 -> None
    lists = lookup[indices].tolist()
    counts = (indices >= 0).sum(axis=1)
    for i in np.flatnonzero(counts < indices.shape[1]).tolist():  # only short rows need a cut
        lists[i] = lists[i][: counts[i]]
    return lists


def top_genes(
    X: Any,
    gene_names: Sequence[Any],
    k: int = 50,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    strip_ensembl: bool = False,
    engine: str = "auto",
) -> list[list[str]]:
    """The ``k`` highest-expressed genes of every cell (row of ``X``), descending.

    ``X`` may be a numpy array, any scipy sparse matrix or a backed AnnData ``X``;
    it is processed in chunks of ``chunk_size`` rows and never densified whole.
    Ties are broken by gene position; genes with a value ``<= 0`` are never listed,
    so a cell may get fewer than ``k`` genes.
    """
    if len(gene_names) != X.shape[1]:
        raise InputError(f"got {len(gene_names)} gene names for a matrix with {X.shape[1]} columns")
    names = gene_symbols(gene_names, strip_ensembl=strip_ensembl)
    return indices_to_names(top_gene_indices(X, k=k, chunk_size=chunk_size, engine=engine), names)
