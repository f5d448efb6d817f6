"""Latency quantiles from grouped sketches: is a quantile of one population above another's
(exact binomial test on counts above the reference quantile).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from detector.aggregate import sketch as sk
from detector.stats.results import LatencyShift, LatencyShiftArray, _deviations
from detector.stats.tails import _fisher_log_p_greater


def latency_shift_grouped(
    new: sk.GroupedSketch,
    ref: sk.GroupedSketch,
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99),
    *,
    min_requests: int = 10,
    min_tail: int = 5,
) -> LatencyShiftArray:
    """Is series s of ``new`` slower than series s of ``ref``? All series at once.

    Per quantile q: the ratio of sketch quantiles, and an exact one-sided
    Fisher test of "more of new than of ref lies above the pooled q-quantile".
    Pooling makes the threshold a function of the pooled multiset only, so
    under equal distributions the split of above-threshold requests is
    hypergeometric and the test is exact. enough_data: both sides have at
    least ``min_tail`` requests expected above q, i.e. n * (1 - q) >= min_tail
    (500 requests for p99 with the default).

    Whole distribution: Mann-Whitney U from the two bucket histograms on their
    merged grid, tie-corrected normal approximation with continuity
    correction (identical to scipy's ``mannwhitneyu(method="asymptotic")`` on
    the bucket representatives), one-sided "new slower". enough_data: both
    sides have >= min_requests.

    Quantile ratios floor both sides at sketch.MIN_VALUE_MS so a zero bucket
    gives a finite ratio; empty series give NaN ratios and p = 1.
    """
    if new.n_series != ref.n_series:
        raise ValueError(
            f"new and ref must hold the same series (n_series {new.n_series} vs {ref.n_series}); "
            "build both with the same series numbering"
        )
    qs = tuple(float(q) for q in quantiles)
    sk.check_quantiles(np.asarray(qs))
    n_s = new.n_series
    n1 = sk.counts_grouped(new).astype(np.float64)
    n2 = sk.counts_grouped(ref).astype(np.float64)

    # Both histograms on one merged grid of (series, bucket) codes.
    code1 = sk.encode(sk.entry_series(new), new.buckets)
    code2 = sk.encode(sk.entry_series(ref), ref.buckets)
    # Both code arrays are sorted (CSR order), so a stable sort of their
    # concatenation is a linear merge.
    both = np.sort(np.concatenate((code1, code2)), kind="stable")
    grid = both[np.concatenate(([True], both[1:] != both[:-1]))] if both.size else both
    c1 = np.zeros(len(grid))
    c2 = np.zeros(len(grid))
    c1[np.searchsorted(grid, code1)] = new.counts
    c2[np.searchsorted(grid, code2)] = ref.counts
    series = grid // sk.NBUCKETS
    bucket = (grid - series * sk.NBUCKETS).astype(np.int32)
    starts = np.searchsorted(series, np.arange(n_s + 1))

    # U_new = sum over new's requests of (#ref strictly faster + #ref tied / 2).
    cum2 = np.concatenate(([0.0], np.cumsum(c2)))
    below2 = cum2[:-1] - cum2[starts[series]]
    u1 = np.bincount(series, weights=c1 * (below2 + 0.5 * c2), minlength=n_s)
    t = c1 + c2
    ties = np.bincount(series, weights=t**3 - t, minlength=n_s)
    total = n1 + n2
    with np.errstate(invalid="ignore", divide="ignore"):
        var = n1 * n2 / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)))
        z = (u1 - n1 * n2 / 2.0 - 0.5) / np.sqrt(var)
        superiority = u1 / (n1 * n2)
    log_p_rank = np.where(var > 0, stats.norm.logsf(np.where(var > 0, z, 0.0)), 0.0)
    n_min = np.minimum(n1, n2)
    rank = _deviations(superiority, np.full(n_s, 0.5), superiority - 0.5, log_p_rank, n_min,
                       n_min >= min_requests)

    pooled = sk.GroupedSketch(starts.astype(np.int64), bucket, (c1 + c2).astype(np.int64))
    thresholds = sk.quantile_buckets_grouped(pooled, np.asarray(qs))
    q_new = sk.quantiles_grouped(new, np.asarray(qs))
    q_ref = sk.quantiles_grouped(ref, np.asarray(qs))
    by_q = []
    for i, q in enumerate(qs):
        above = bucket > thresholds[series, i]
        e1 = np.bincount(series, weights=c1 * above, minlength=n_s)
        e2 = np.bincount(series, weights=c2 * above, minlength=n_s)
        log_p = _fisher_log_p_greater(e1, n1, e2, n2)
        ratio = np.maximum(q_new[:, i], sk.MIN_VALUE_MS) / np.maximum(q_ref[:, i], sk.MIN_VALUE_MS)
        enough = n_min * (1.0 - q) >= min_tail
        by_q.append(_deviations(q_new[:, i], q_ref[:, i], ratio, log_p, n1, enough))
    return LatencyShiftArray(qs, tuple(by_q), rank)


def latency_shift(
    new: sk.Sketch,
    ref: sk.Sketch,
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99),
    *,
    min_requests: int = 10,
    min_tail: int = 5,
) -> LatencyShift:
    """Scalar form of `latency_shift_grouped` for two single sketches."""
    return latency_shift_grouped(sk.stack([new]), sk.stack([ref]), quantiles,
                                 min_requests=min_requests, min_tail=min_tail)[0]
