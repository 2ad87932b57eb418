"""The compiled top-K kernel (numba, which scanpy already depends on).

Imported lazily by :mod:`cello1.data.topgenes`; gives exactly the same result as the
vectorised numpy path (value descending, ties by lower gene index, values <= 0 skipped).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _sift_down(vals, cols, i, size, v, c):  # pragma: no cover - compiled
    """Place (v, c) at heap position ``i`` (min-heap on goodness, size ``size``)."""
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (vals[right] < vals[child] or (vals[right] == vals[child] and cols[right] > cols[child])):
            child = right  # the worse child
        if vals[child] < v or (vals[child] == v and cols[child] > c):
            vals[i] = vals[child]
            cols[i] = cols[child]
            i = child
        else:
            break
    vals[i] = v
    cols[i] = c


@numba.njit(cache=True, nogil=True)
def topk_rows(indptr, indices, data, rows, k, out, reject_negative):  # pragma: no cover - compiled
    """Top ``k`` of each listed row, written to ``out[i]`` for ``rows[i]``.

    Per row, a min-heap of the best ``k`` (value, column) pairs seen so far, its root
    the worst; most entries are rejected by one compare with the root. The heap is
    then sorted in place (value descending, column ascending). Returns the position
    ``r`` in ``rows`` of the first row holding NaN/inf, ``-2 - r`` for the first row
    holding a negative value when ``reject_negative`` (else negatives are skipped), or -1.
    """
    vals = np.empty(k, dtype=data.dtype)
    cols = np.empty(k, dtype=np.int64)
    for r in range(rows.size):
        row = rows[r]
        count = 0
        for p in range(indptr[row], indptr[row + 1]):
            v = data[p]
            if not v > 0:
                if v != v or v == -np.inf:
                    return r
                if reject_negative and v < 0:
                    return -2 - r
                continue
            if v == np.inf:
                return r
            c = indices[p]
            if count < k:  # fill: sift the new entry up past better parents
                i = count
                count += 1
                while i > 0:
                    parent = (i - 1) // 2
                    if vals[parent] > v or (vals[parent] == v and cols[parent] < c):
                        vals[i] = vals[parent]
                        cols[i] = cols[parent]
                        i = parent
                    else:
                        break
                vals[i] = v
                cols[i] = c
                continue
            if v < vals[0] or (v == vals[0] and c > cols[0]):
                continue  # not better than the worst kept entry
            _sift_down(vals, cols, 0, k, v, c)
        # heap sort: move the worst to the end repeatedly -> best first
        for end in range(count - 1, 0, -1):
            v, c = vals[end], cols[end]
            vals[end], cols[end] = vals[0], cols[0]
            _sift_down(vals, cols, 0, end, v, c)
        for j in range(count):
            out[r, j] = cols[j]
    return -1


@numba.njit(cache=True, nogil=True)
def _select_largest(a, n, k):  # pragma: no cover - compiled
    """Reorder ``a[:n]`` (distinct values) so ``a[:k]`` holds its ``k`` largest and
    ``a[k - 1]`` the k-th largest (Hoare/Wirth selection, median-of-three pivot)."""
    target = k - 1
    lo, hi = 0, n - 1
    while lo < hi:
        x, y, z = a[lo], a[target], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while a[i] > pivot:
                i += 1
            while a[j] < pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < target:
            lo = i
        if target < i:
            hi = j


@numba.njit(cache=True, nogil=True)
def topk_rows_float32(indptr, indices, bits, rows, k, out, width, reject_negative):  # pragma: no cover - compiled
    """Float32 fast path, same result as :func:`topk_rows`, with few unpredictable branches.

    ``bits`` is the float32 data viewed as int32: for positive floats the bit pattern
    orders like the value. Per row: (1) a histogram of the top 11 bits (exponent and 3
    mantissa bits) finds the bucket holding the k-th largest value; (2) only the entries
    in that bucket or above are packed as int64 keys ``(bits << 32) | (2**32 - 1 - column)``
    (distinct, ordered exactly as "value descending, column ascending"); (3) a
    selection keeps the ``k`` largest keys, which are insertion-sorted. ``width`` >= the
    longest row. Returns like :func:`topk_rows`.
    """
    hist = np.zeros(2048, dtype=np.int64)
    buf = np.empty(max(width, 1), dtype=np.int64)
    low32 = np.int64(0xFFFFFFFF)
    for r in range(rows.size):
        row = rows[r]
        start, stop = indptr[row], indptr[row + 1]
        top = 0
        for p in range(start, stop):
            b = bits[p]
            if (b & 0x7F800000) == 0x7F800000:  # exponent all ones: NaN or +-inf
                return r
            if reject_negative and b < 0 and b != -2147483648:  # sign bit set, not -0.0: negative
                return -2 - r
            bucket = max(b, 0) >> 20
            hist[bucket] += b > 0
            top = max(top, bucket)
        cut, seen = top, 0
        while cut > 0:
            seen += hist[cut]
            if seen >= k:
                break
            cut -= 1
        hist[:] = 0
        lowest = max(cut << 20, 1)  # smallest bit pattern in the cut bucket (and > 0)
        n = 0
        for p in range(start, stop):
            b = bits[p]
            if b >= lowest:  # rarely true: the branch predicts well
                buf[n] = (np.int64(b) << 32) | (low32 - np.int64(indices[p]))
                n += 1
        if n > k:
            _select_largest(buf, n, k)
            n = k
        for i in range(1, n):  # insertion sort of the k kept keys, descending
            x = buf[i]
            j = i - 1
            while j >= 0 and buf[j] < x:
                buf[j + 1] = buf[j]
                j -= 1
            buf[j + 1] = x
        for j in range(n):
            out[r, j] = low32 - (buf[j] & low32)
    return -1
