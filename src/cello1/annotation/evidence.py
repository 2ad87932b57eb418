"""Marker evidence that means something on its own: within-cell ranks, pooled per cluster.

For every cell, every gene expressed anywhere in the data gets its **within-cell
percentile** (its rank among the cell's genes / number of genes; ties share their mean
rank, so the undetected genes share the zeros' mid-rank). Ranks ignore library size and
any monotone transform, so counts, CPM and log data give the same evidence.

For a cluster ``k`` and a candidate ``c`` with markers ``m`` (weights ``w = sqrt(kb weight)``):

* ``P[k, c]`` — the mean over the cluster's cells of the weighted mean percentile of
  ``c``'s markers. **Absolute**: random genes score 0.5, a cell's top genes score near
  1.0. It never depends on the other candidates, so a candidate absent from the data
  cannot push a cluster around.
* ``z[k, c]`` — how far ``P`` sits above random gene sets of the same size *in this
  cluster's own cells*: ``(P − mean_g R_kg) / (sd_g R_kg · sqrt(Σw²)/Σw)`` with ``R_kg`` the
  cluster-mean percentile of gene ``g``. ``z_top`` is the same for the candidate's five
  highest-weighted markers present in the data.
* ``vote[k, c]`` — the share of the cluster's cells whose own best candidate is ``c``
  (CellTypist-style majority voting).

The label is the candidate with the highest ``P`` (types may repeat; one type per cluster
on request), or the majority of the cells' own calls (``per_cell``). It becomes
``unknown`` when its markers are not above random genes (``z < min_z``, default 1.645,
one-sided p = 0.05; or ``z_top < 0``) or, on request, when the confidence is below
``min_confidence``.

Confidence = logistic(a + b·log1p(margin) + c·log1p(z) + d·vote), where ``margin`` is the
lead of the label over the runner-up in standard errors (paired over the cluster's
cells). The coefficients were fitted by ``benchmarks/calibrate_annotate.py`` on four
real annotated datasets (leave-one-dataset-out AUROC 0.79); see BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cello1.genes import normalise_gene

UNKNOWN = "unknown"
CHUNK = 5000  # cells per block: within-cell ranks are row-wise and every later use is linear
TOP_MARKERS = 5  # markers in z_top
MIN_Z = 1.645  # one-sided p = 0.05 against random gene sets of the same size
MIN_Z_TOP = 0.0
SINGLE_CELL_SE = 0.02  # a typical per-cell SD of the paired difference when a cluster has one cell
# logistic model of "the top candidate is right"; refit with benchmarks/calibrate_annotate.py
CALIBRATION = {"intercept": -5.1335, "log1p_margin_se": 0.1465, "log1p_z": 0.8622, "vote": 4.6922}


@dataclass
class Evidence:
    """Groups (clusters) × candidates evidence, and per-cell best candidates.

    Attributes
    ----------
    groups
        Group names, in row order.
    candidates
        Candidate names, in column order.
    n_cells
        Cells per group.
    P, z, z_top, vote
        Groups × candidates matrices (NaN where a candidate has no marker in the data).
    cell_best
        Per cell: the column of its own best candidate (-1 when no candidate has markers).
    codes
        Per cell: its group's row (-1 for cells outside every group).
    marker_pct
        Per candidate: ``(gene, weight, per-group mean percentile array)`` for its markers in the data.
    """

    groups: list[str]
    candidates: list[str]
    n_cells: np.ndarray
    P: np.ndarray
    z: np.ndarray
    z_top: np.ndarray
    vote: np.ndarray
    cell_best: np.ndarray
    codes: np.ndarray
    P_cells: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    marker_pct: list[list[tuple[str, float, np.ndarray]]] = field(repr=False, default_factory=list)

    def frame(self, name: str) -> pd.DataFrame:
        """One matrix (``"P"``, ``"z"``, ``"z_top"``, ``"vote"``) as a groups × candidates frame."""
        return pd.DataFrame(getattr(self, name), index=self.groups, columns=self.candidates)

    def evidence_genes(self, group: int, candidate: int, n: int = 5) -> list[tuple[str, float]]:
        """The candidate's markers ranked by their mean percentile in the group: ``(gene, percentile)``."""
        rows = [(g, float(pct[group])) for g, _, pct in self.marker_pct[candidate]]
        return sorted(rows, key=lambda r: -r[1])[:n]

    def margin_se(self, group: int, best: int, other: int) -> float:
        """Lead of ``best`` over ``other`` in standard errors, paired over the group's cells."""
        diff = self.P_cells[self.codes == group, best] - self.P_cells[self.codes == group, other]
        diff = diff[np.isfinite(diff)]
        if diff.size == 0:
            return 0.0
        se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else np.nan
        if not np.isfinite(se) or se <= 0:
            se = SINGLE_CELL_SE
        return float(diff.mean() / se)


def marker_weights(marker_lists: list[list[tuple[str, float]]], genes: np.ndarray) -> np.ndarray:
    """Candidates × genes weights: sqrt of each marker's weight where the gene is in the data."""
    index: dict[str, int] = {}
    for j, g in enumerate(genes):
        index.setdefault(normalise_gene(str(g)), j)  # duplicated symbols: the first column counts
    W = np.zeros((len(marker_lists), len(genes)))
    for c, markers in enumerate(marker_lists):
        for gene, weight in markers:
            j = index.get(normalise_gene(gene))
            if j is not None and W[c, j] == 0:
                W[c, j] = np.sqrt(max(float(weight), 1e-6))
    return W


def cell_percentiles(X: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """Within-cell percentiles of a CSR block: ``(r0, D)``.

    ``r0[i]`` is the percentile shared by cell ``i``'s zeros (the mid-rank of the ties);
    ``D`` has ``X``'s sparsity pattern and holds ``percentile − r0`` for the stored values.
    One sort of all stored values; ties (same row, same value) get their mean rank.
    """
    X = sp.csr_matrix(X, copy=True)
    X.eliminate_zeros()
    n_cells, n_genes = X.shape
    per_row = np.diff(X.indptr)
    zeros = n_genes - per_row
    r0 = (zeros + 1) / 2.0 / n_genes
    if X.nnz == 0:
        return r0, X
    rows = np.repeat(np.arange(n_cells), per_row)
    # one float64 sort key (row + value scaled into [0, 0.5]) sorts by row, then value: 2-3x faster
    # than a two-key lexsort; values are non-negative (scaled data is refused upstream)
    top = float(X.data.max()) or 1.0
    order = np.argsort(rows + X.data.astype(np.float64) / (2.0 * top), kind="quicksort")
    values, row_of = X.data[order], rows[order]
    position = np.arange(X.nnz) - X.indptr[row_of]  # 0-based position among the row's stored values
    new_run = np.ones(X.nnz, dtype=bool)
    new_run[1:] = (row_of[1:] != row_of[:-1]) | (values[1:] != values[:-1])
    run = np.cumsum(new_run) - 1
    run_length = np.bincount(run)
    mean_position = position[new_run][run] + (run_length[run] - 1) / 2.0
    pct = np.empty(X.nnz)
    pct[order] = (zeros[row_of] + 1 + mean_position) / n_genes
    return r0, sp.csr_matrix((pct - r0[rows], X.indices, X.indptr), shape=X.shape)


def _group_sums(M, codes: np.ndarray, n_groups: int) -> np.ndarray:
    keep = codes >= 0
    indicator = sp.csr_matrix(
        (np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))), shape=(n_groups, len(codes))
    )
    out = indicator @ M
    return out.toarray() if sp.issparse(out) else np.asarray(out)


def compute_evidence(
    X, genes: np.ndarray, codes: np.ndarray, groups: list[str], candidates: list[str], marker_lists
) -> Evidence:
    """Evidence for every group × candidate (see the module docstring). ``codes[i]`` is cell ``i``'s
    group (-1: not in any group); ``marker_lists[c]`` holds candidate ``c``'s ``(gene, weight)``.
    """
    X = sp.csr_matrix(X)
    expressed = np.bincount(X.indices[X.data > 0], minlength=X.shape[1]) > 0
    every_gene = bool(expressed.all())
    W = marker_weights(marker_lists, np.asarray(genes)[expressed])
    n_groups, n_cand = len(groups), len(candidates)
    wsum = W.sum(axis=1)
    has = wsum > 0
    Wn = W / np.where(has, wsum, 1.0)[:, None]
    Wtop = _top_weights(W)
    tsum = Wtop.sum(axis=1)
    Wtop_n = Wtop / np.where(tsum > 0, tsum, 1.0)[:, None]
    marker_cols = np.flatnonzero(W.any(axis=0))
    n_cells = np.bincount(codes[codes >= 0], minlength=n_groups).astype(float)
    P_cells = np.empty((X.shape[0], n_cand))
    Ptop_cells = np.empty((X.shape[0], n_cand))
    gene_means = np.zeros((n_groups, int(expressed.sum())))
    for start in range(0, X.shape[0], CHUNK):
        stop = min(start + CHUNK, X.shape[0])
        block_X = X[start:stop] if every_gene else X[start:stop][:, expressed]
        r0, D = cell_percentiles(block_X)
        P_cells[start:stop] = r0[:, None] + np.asarray(D @ Wn.T)
        Ptop_cells[start:stop] = r0[:, None] + np.asarray(D @ Wtop_n.T)
        block = codes[start:stop]
        gene_means += _group_sums(D, block, n_groups) + _group_sums(r0[:, None], block, n_groups)
    safe = np.maximum(n_cells, 1)[:, None]
    gene_means /= safe
    P_cells[:, ~has] = np.nan
    Ptop_cells[:, tsum == 0] = np.nan
    P = _group_sums(np.nan_to_num(P_cells), codes, n_groups) / safe
    P_top = _group_sums(np.nan_to_num(Ptop_cells), codes, n_groups) / safe
    P[:, ~has] = np.nan
    P_top[:, tsum == 0] = np.nan
    # null: random gene sets in the cluster's own cells (mean and sd over its genes)
    mu, sd = gene_means.mean(axis=1), gene_means.std(axis=1)
    sd = np.where(sd > 0, sd, np.nan)
    scale = np.where(has, np.sqrt((W**2).sum(axis=1)) / np.where(has, wsum, 1.0), np.nan)
    z = (P - mu[:, None]) / (sd[:, None] * scale[None, :])
    z_top = (P_top - mu[:, None]) / (sd[:, None] / np.sqrt(np.where(tsum > 0, tsum, np.nan))[None, :])
    if has.any():
        cell_best = np.where(np.isfinite(P_cells), P_cells, -np.inf).argmax(axis=1)
    else:
        cell_best = np.full(X.shape[0], -1)
    vote = np.zeros((n_groups, n_cand))
    inside = (codes >= 0) & (cell_best >= 0)
    np.add.at(vote, (codes[inside], cell_best[inside]), 1.0)
    vote /= safe
    marker_pct = _marker_percentiles(W, gene_means, np.asarray(genes)[expressed], marker_cols)
    return Evidence(list(groups), list(candidates), n_cells.astype(int), P, z, z_top, vote, cell_best, codes,
                    P_cells, marker_pct)  # fmt: skip


def _top_weights(W: np.ndarray) -> np.ndarray:
    top = np.zeros_like(W)
    for c in range(W.shape[0]):
        nz = np.flatnonzero(W[c])
        if nz.size:
            top[c, nz[np.argsort(-W[c, nz], kind="stable")[:TOP_MARKERS]]] = 1.0
    return top


def _marker_percentiles(W, gene_means, genes, marker_cols) -> list[list[tuple[str, float, np.ndarray]]]:
    out = []
    for c in range(W.shape[0]):
        cols = [j for j in marker_cols if W[c, j] > 0]
        cols.sort(key=lambda j: -W[c, j])
        out.append([(str(genes[j]), float(W[c, j] ** 2), gene_means[:, j]) for j in cols])
    return out


# ---- decisions -----------------------------------------------------------------------------


@dataclass
class Call:
    """The decision for one group."""

    label: str
    best: int | None  # column of the chosen candidate (None: unassigned by the one-to-one rule)
    runner_up: int | None
    confidence: float
    margin_se: float
    reason: str  # why unknown / unassigned ("" for a normal call)


def confidence_of(margin_se: float, z: float, vote: float, calibration: dict[str, float] | None = None) -> float:
    """The calibrated probability that the chosen candidate is right (see the module docstring)."""
    cal = calibration or CALIBRATION
    x = (
        cal["intercept"]
        + cal["log1p_margin_se"] * float(np.log1p(np.clip(margin_se, 0.0, 100.0)))
        + cal["log1p_z"] * float(np.log1p(max(z, 0.0)))
        + cal["vote"] * float(vote)
    )
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0))))


def decide(
    ev: Evidence,
    *,
    allow_repeats: bool = True,
    per_cell: bool = False,
    min_z: float = MIN_Z,
    min_z_top: float = MIN_Z_TOP,
    min_confidence: float = 0.0,
    batches: list[np.ndarray] | None = None,
    calibration: dict[str, float] | None = None,
) -> list[Call]:
    """One :class:`Call` per group. ``batches``: row sets assigned one-to-one separately (samples)."""
    P = np.where(np.isfinite(ev.P), ev.P, -np.inf)
    choice = _choose(ev, P, allow_repeats, per_cell, batches)
    calls = []
    for k in range(len(ev.groups)):
        best = choice[k]
        if best is None or not np.isfinite(P[k, best]):
            calls.append(Call(_no_call(best), None, _first(P[k]), float("nan"), 0.0, _why_none(best)))
            continue
        others = [c for c in np.argsort(-P[k], kind="stable") if c != best and np.isfinite(P[k, c])]
        runner = int(others[0]) if others else None
        margin = ev.margin_se(k, best, runner) if runner is not None else 10.0
        z, z_top = _finite(ev.z[k, best]), _finite(ev.z_top[k, best])
        conf = confidence_of(margin, z, ev.vote[k, best], calibration)
        # lowering min_z lowers the top-marker gate too, so min_z=-inf forces a call
        reason = _weak(ev.candidates[best], z, z_top, conf, min_z, min(min_z_top, min_z), min_confidence)
        label = UNKNOWN if reason else ev.candidates[best]
        calls.append(Call(label, best, runner, conf, margin, reason))
    return calls


def _no_call(best) -> str:
    from cello1.vocabulary import UNASSIGNED

    return UNASSIGNED if best is None else UNKNOWN


def _why_none(best) -> str:
    if best is None:
        return "one type per cluster: every type went to a cluster that fits it better"
    return "no candidate has marker genes in the data"


def _first(row: np.ndarray) -> int | None:
    return int(np.argmax(row)) if np.isfinite(row).any() else None


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


def _weak(name, z, z_top, conf, min_z, min_z_top, min_confidence) -> str:
    if z < min_z:
        return f"weak evidence: the best type, {name}, has markers only {z:.2f} SD above random genes (< {min_z:g})"
    if z_top < min_z_top:
        return f"weak evidence: the top markers of the best type, {name}, are not above random genes (z {z_top:.2f})"
    if conf < min_confidence:
        return f"confidence {conf:.2f} below the threshold {min_confidence:g} (best type: {name})"
    return ""


def _choose(ev: Evidence, P: np.ndarray, allow_repeats: bool, per_cell: bool, batches) -> list[int | None]:
    n_groups = P.shape[0]
    if per_cell:  # majority of the cells' own calls; ties go to the higher P
        keyed = ev.vote + 1e-9 * np.where(np.isfinite(P), P, 0.0)
        base = [int(np.argmax(keyed[k])) if ev.vote[k].any() else _first(P[k]) for k in range(n_groups)]
    else:
        base = [_first(P[k]) for k in range(n_groups)]
    if allow_repeats:
        return base
    from cello1.assignment import optimal_assignment

    score = ev.vote if per_cell else P
    choice: list[int | None] = [None] * n_groups
    for rows in batches or [np.arange(n_groups)]:
        picked = optimal_assignment(np.where(np.isfinite(P[rows]), score[rows], -np.inf))
        for r, col in zip(rows, picked, strict=True):
            choice[int(r)] = col
    return choice


def not_detected(ev: Evidence, min_z: float = MIN_Z, min_z_top: float = MIN_Z_TOP) -> list[str]:
    """Candidates whose markers are above random genes (both gates) in no group: a hint they are absent."""
    with np.errstate(invalid="ignore"):
        passes = (ev.z >= min_z) & (ev.z_top >= min_z_top)
    return [c for j, c in enumerate(ev.candidates) if not passes[:, j].any()]


__all__ = [
    "CALIBRATION",
    "MIN_Z",
    "UNKNOWN",
    "Call",
    "Evidence",
    "cell_percentiles",
    "compute_evidence",
    "confidence_of",
    "decide",
    "marker_weights",
    "not_detected",
]
