"""Exact discrete tails in log space, vectorised in blocks (scipy's are per-element loops or lose
precision far in the tail), and argument checks shared by the measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

from detector.stats.logsumexp import logsumexp


# Terms per vectorised step: larger blocks waste evaluations past the cut-off,
# smaller ones pay Python overhead per step; 32 measured best on a mix of n.
_BLOCK = 32


_NEGLIGIBLE = math.log(1e-17)  # a term this small relative to the sum cannot change a float64


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct parameter tuples and the inverse map back to the input rows.

    Many series (and every null simulation) repeat the same (k, n, ...) tuple;
    the tail sums are the costly part, so each tuple is computed once.
    """
    cols = [c.ravel() for c in columns]
    if not cols[0].size:
        return cols, np.empty(0, np.intp)
    # lexsort on numeric keys is several times faster than np.unique(axis=0),
    # which sorts rows as opaque byte strings.
    order = np.lexsort(cols[::-1])
    srt = [c[order] for c in cols]
    new = np.zeros(len(order), bool)
    new[0] = True
    for c in srt:
        new[1:] |= c[1:] != c[:-1]
    inverse = np.empty(len(order), np.intp)
    inverse[order] = np.cumsum(new) - 1
    return [c[new] for c in srt], inverse


def _log_binom_coef(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return -np.log1p(n) - special.betaln(n - k + 1.0, k + 1.0)


def _betabinom_log_sf(k: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log P(K >= k) for K ~ BetaBinomial(n, a, b), elementwise."""
    k, n, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (k, n, a, b)))
    shape = k.shape
    (k, n, a, b), inverse = _unique_rows(k, n, a, b)

    def logpmf(j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        nn, aa, bb = n[idx, None], a[idx, None], b[idx, None]
        return _log_binom_coef(nn, j) + special.betaln(j + aa, nn - j + bb) - special.betaln(aa, bb)

    return _log_tail_ge(logpmf, k, np.zeros_like(n), n, n * a / (a + b))[inverse].reshape(shape)


def _fisher_log_p_greater(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """log of the one-sided Fisher exact p-value P(X >= k1), X ~ Hypergeom(n1 + n2, k1 + k2, n1)."""
    k1, n1, k2, n2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (k1, n1, k2, n2)))
    shape = k1.shape
    (k1, n1, k2, n2), inverse = _unique_rows(k1, n1, k2, n2)
    total = n1 + n2
    errs = k1 + k2
    ok = total - errs

    def logpmf(j: np.ndarray, idx: np.ndarray) -> np.ndarray:
        kk, nn, oo, tt = errs[idx, None], n1[idx, None], ok[idx, None], total[idx, None]
        return _log_binom_coef(kk, j) + _log_binom_coef(oo, nn - j) - _log_binom_coef(tt, nn)

    lo = np.maximum(0.0, n1 - ok)
    hi = np.minimum(n1, errs)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, n1 * errs / total, 0.0)
    return _log_tail_ge(logpmf, k1, lo, hi, mean)[inverse].reshape(shape)


def _log_tail_ge(
    logpmf: Callable[[np.ndarray, np.ndarray], np.ndarray],
    k: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    pivot: np.ndarray,
) -> np.ndarray:
    """log P(X >= k) for unimodal integer X on [lo, hi], many distributions at once.

    Above the pivot (the mean) the upper tail is summed upwards from k; at or
    below it the lower tail P(X <= k - 1) is summed downwards and subtracted
    from 1, which is precise there because that tail is not close to 1. Each
    sum runs in blocks of terms evaluated as one array and stops once the
    terms are falling and negligible against the running sum, so the work is
    a few standard deviations per element, not n.
    """
    out = np.zeros(k.shape)
    k = np.maximum(k, lo)
    empty = k > hi
    out[empty] = -np.inf
    live = ~empty & (k > lo)
    up = np.flatnonzero(live & (k > pivot))
    down = np.flatnonzero(live & (k <= pivot))
    if up.size:
        out[up] = _log_sum_run(logpmf, up, k[up], hi[up], +1)
    if down.size:
        log_cdf = _log_sum_run(logpmf, down, k[down] - 1.0, lo[down], -1)
        out[down] = np.log1p(-np.minimum(np.exp(log_cdf), 1.0))
    return out


def _log_sum_run(
    logpmf: Callable[[np.ndarray, np.ndarray], np.ndarray],
    idx: np.ndarray,
    start: np.ndarray,
    stop: np.ndarray,
    step: int,
) -> np.ndarray:
    """log sum of pmf(j) for j from start towards stop (inclusive) in direction step."""
    total = np.full(len(idx), -np.inf)
    active = np.arange(len(idx))
    pos = start.astype(np.float64).copy()
    offsets = np.arange(_BLOCK, dtype=np.float64) * step
    while active.size:
        j = pos[active, None] + offsets[None, :]
        beyond = (j > stop[active, None]) if step > 0 else (j < stop[active, None])
        terms = logpmf(np.where(beyond, pos[active, None], j), idx[active])
        terms = np.where(beyond, -np.inf, terms)
        total[active] = np.logaddexp(total[active], logsumexp(terms, axis=1))
        last, prev = terms[:, -1], terms[:, -2]
        done = beyond[:, -1] | ((last <= prev) & (last - total[active] < _NEGLIGIBLE))
        pos[active] += _BLOCK * step
        active = active[~done]
    return total


def _first_bad(values: np.ndarray, bad: np.ndarray) -> float:
    return float(np.asarray(values)[np.asarray(bad)].ravel()[0])


def _check_counts(k: np.ndarray, n: np.ndarray, k_name: str, n_name: str) -> None:
    bad_n = ~np.isfinite(n) | (n < 0) | (n != np.floor(n))
    if bad_n.any():
        raise ValueError(f"{n_name} must be integers >= 0 (got {_first_bad(n, bad_n)})")
    bad_k = ~np.isfinite(k) | (k < 0) | (k != np.floor(k)) | (k > n)
    if bad_k.any():
        i = np.flatnonzero(bad_k.ravel())[0]
        raise ValueError(
            f"{k_name} must be integers in [0, {n_name}] (got {k_name}={k.ravel()[i]} with "
            f"{n_name}={n.ravel()[i]}); errors are a subset of requests"
        )


def _check_rate(p: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(f"{name} must be a fraction in [0, 1] (got {_first_bad(p, bad)}); write 0.005, not 0.5 %")
