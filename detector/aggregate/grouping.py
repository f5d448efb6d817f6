"""Distinct integer codes and their counts, with a plain-Python path for a few codes.

A quiet window closes with a handful of codes (latency buckets, transactions,
log keys); `np.unique` with its inverse and `np.bincount` cost ~10-20 us each
whatever the size, a dict a fraction of that on ten codes. Both paths give the
same arrays: the distinct codes in increasing order (the input's dtype) and
their integer counts, or the sums of integer weights (int64), exactly as
`np.unique(..., return_counts=True)` and `np.bincount(inverse, weights)
.astype(np.int64)` do (the weights are counts: integer sums below 2**53 are
exact in the float64 bincount adds in).
"""

from __future__ import annotations

import numpy as np

# At most this many codes are grouped in plain Python.
SMALL_CODES = 128


def unique_counts(codes: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes ascending, dtype of `codes`; count of each, or sum of its integer `weights`, int64)."""
    if len(codes) > SMALL_CODES:
        if weights is None:
            uniq, counts = np.unique(codes, return_counts=True)
            return uniq, counts.astype(np.int64)
        uniq, inv = np.unique(codes, return_inverse=True)
        return uniq, np.bincount(inv, weights=weights, minlength=len(uniq)).astype(np.int64)
    acc: dict[int, int] = {}
    get = acc.get
    if weights is None:
        for c in codes.tolist():
            acc[c] = get(c, 0) + 1
    else:
        for c, w in zip(codes.tolist(), weights.tolist()):
            acc[c] = get(c, 0) + w
    keys = sorted(acc)
    return np.array(keys, dtype=codes.dtype), np.array([acc[k] for k in keys], dtype=np.int64)
