"""Deviation measures: how far, and how surely, a window departs from what was expected.

This module owns the statistics the judge reads. Every measure answers with a
`Deviation` (one series) or a `DeviationArray` (many series at once, same
fields as arrays); the scalar form is the array form applied to one element,
so the two cannot disagree.

Fields, in every measure:

``observed`` / ``expected``
    The value seen and the value it is held against (a rate, a latency in ms,
    a count, a metric value).
``effect``
    Signed size in natural units: percentage points for rates, the ratio
    observed/expected for latency quantiles, the relative change for counts,
    the robust z for metric samples.
``p_value`` / ``score``
    Significance in the "worse" direction (one-sided unless a function says
    otherwise); ``score = -log10(p_value)``, computed from log p so a score
    stays finite and exact when p underflows. Higher is more anomalous.
``n`` / ``enough_data``
    How much data the measure rests on, and whether that meets the measure's
    minimum (each function documents its rule). A measure without enough data
    still reports its p-value, which is valid at any n; the judge uses the
    flag and `min_detectable_effect` to say ``inconclusive`` rather than
    ``confirmed``.

Every p-value here is valid (its false-positive rate is at most its nominal
level, up to Monte-Carlo noise in the tests) down to a single request per
window: exact discrete tails for rates and counts, exact conditional tests
for two populations and latency quantiles, a tie-corrected normal
approximation for the rank test (conservative at small n, where it cannot
reach small p), and a conservative t reference for robust z on near-normal
metrics. The
discrete tails are summed in log space in vectorised blocks (see
`_log_tail_ge`) because scipy's beta-binomial and hypergeometric tails are
either per-element Python loops or lose precision far in the tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from detector import sketch as sk

__all__ = [
    "Deviation",
    "DeviationArray",
    "LatencyShift",
    "LatencyShiftArray",
    "concentration_from_variance",
    "count_deviation",
    "count_deviation_array",
    "error_rate_two_sample",
    "error_rate_two_sample_array",
    "error_rate_vs_expected",
    "error_rate_vs_expected_array",
    "latency_shift",
    "latency_shift_grouped",
    "min_detectable_drop",
    "min_detectable_effect",
    "robust_z",
    "robust_z_array",
]

LN10 = math.log(10.0)
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution is 0.6745 sigma

# Jeffreys prior for an error rate: half a pseudo-error, half a pseudo-success.
# It keeps a zero-error baseline from making a single error infinitely
# significant, and is the prior with the best frequentist coverage for a rate.
PRIOR_ERRORS = 0.5
PRIOR_OK = 0.5

DIRECTIONS = ("surge", "drop", "both")
METRIC_DIRECTIONS = ("up", "down", "both")


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Deviation:
    """One series' deviation (see module docstring for the meaning of each field)."""

    observed: float
    expected: float
    effect: float
    score: float
    p_value: float
    n: float
    enough_data: bool


@dataclass(frozen=True)
class DeviationArray:
    """Deviations of many series: every field is a 1-D array of the same length."""

    observed: np.ndarray
    expected: np.ndarray
    effect: np.ndarray
    score: np.ndarray
    p_value: np.ndarray
    n: np.ndarray
    enough_data: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: int) -> Deviation:
        return Deviation(
            observed=float(self.observed[i]),
            expected=float(self.expected[i]),
            effect=float(self.effect[i]),
            score=float(self.score[i]),
            p_value=float(self.p_value[i]),
            n=float(self.n[i]),
            enough_data=bool(self.enough_data[i]),
        )


@dataclass(frozen=True)
class LatencyShift:
    """Latency of one series against a reference.

    ``by_quantile[i]`` compares quantile ``quantiles[i]``: observed/expected in
    ms, effect = ratio, p from an exact test on how many requests of each side
    lie above the pooled quantile. ``rank`` is the Mann-Whitney test on the
    whole distribution: observed = P(new slower) + P(tie)/2, expected 0.5,
    effect = observed - 0.5. n is the new side's request count for the
    quantiles and the smaller side's for the rank test.
    """

    quantiles: tuple[float, ...]
    by_quantile: tuple[Deviation, ...]
    rank: Deviation


@dataclass(frozen=True)
class LatencyShiftArray:
    """`LatencyShift` for many series; ``by_quantile[i]`` is a `DeviationArray`."""

    quantiles: tuple[float, ...]
    by_quantile: tuple[DeviationArray, ...]
    rank: DeviationArray

    def __len__(self) -> int:
        return len(self.rank)

    def __getitem__(self, i: int) -> LatencyShift:
        return LatencyShift(self.quantiles, tuple(d[i] for d in self.by_quantile), self.rank[i])


def _deviations(observed, expected, effect, log_p, n, enough) -> DeviationArray:
    log_p = np.minimum(np.asarray(log_p, dtype=np.float64), 0.0)
    score = -log_p / LN10 + 0.0  # + 0.0 turns -0.0 into 0.0
    return DeviationArray(
        observed=np.asarray(observed, dtype=np.float64),
        expected=np.asarray(expected, dtype=np.float64),
        effect=np.asarray(effect, dtype=np.float64),
        score=score,
        p_value=np.exp(log_p),
        n=np.asarray(n, dtype=np.float64),
        enough_data=np.asarray(enough, dtype=bool),
    )


def _one(array_fn: Callable[..., DeviationArray], *args, **kwargs) -> Deviation:
    return array_fn(*(np.atleast_1d(a) for a in args), **kwargs)[0]


# --------------------------------------------------------------------------- error rate vs expectation


def error_rate_vs_expected_array(
    errors: np.ndarray,
    requests: np.ndarray,
    expected_rate: np.ndarray,
    baseline_requests: np.ndarray,
    *,
    min_requests: int = 30,
) -> DeviationArray:
    """Errors k of n against an expected rate p0 known from ``baseline_requests`` requests.

    The rate is uncertain: it is Beta(p0 * m + 0.5, (1 - p0) * m + 0.5) with m
    = baseline_requests (Jeffreys prior), so k is beta-binomial and p =
    P(K >= k). A zero-error baseline therefore still admits about 0.5/m errors
    per request: one error in one request scores log10(2 m + 2), not infinity.
    Pass the number of requests the expectation was estimated from (or an
    effective number, see `concentration_from_variance`).

    effect = (k/n - p0) in percentage points; n = requests;
    enough_data = requests >= min_requests.
    """
    k, n, p0, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                        (errors, requests, expected_rate, baseline_requests)))
    _check_counts(k, n, "errors", "requests")
    _check_rate(p0, "expected_rate")
    if np.any(~np.isfinite(m) | (m < 0)):
        raise ValueError(
            f"baseline_requests must be finite and >= 0 (got {_first_bad(m, ~np.isfinite(m) | (m < 0))}); "
            "pass the number of requests the expected rate was estimated from"
        )
    a = p0 * m + PRIOR_ERRORS
    b = (1.0 - p0) * m + PRIOR_OK
    log_p = _betabinom_log_sf(k, n, a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = k / n
    return _deviations(rate, p0, (rate - p0) * 100.0, log_p, n, n >= min_requests)


def error_rate_vs_expected(
    errors: int, requests: int, expected_rate: float, baseline_requests: float, *, min_requests: int = 30
) -> Deviation:
    """Scalar form of `error_rate_vs_expected_array`."""
    return _one(error_rate_vs_expected_array, errors, requests, expected_rate, baseline_requests,
                min_requests=min_requests)


def concentration_from_variance(rate: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Effective baseline requests m of a Beta rate with this mean and variance.

    For a seasonal baseline whose rate varies between periods, var = p(1-p)/(m+1);
    a noisier baseline is worth fewer requests. Zero variance gives +inf: cap
    it by the requests actually observed before using it.
    """
    p = np.asarray(rate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = p * (1.0 - p) / v - 1.0
    return np.where(v > 0, np.maximum(m, 0.0), np.inf)


# --------------------------------------------------------------------------- two populations


def error_rate_two_sample_array(
    errors_new: np.ndarray,
    requests_new: np.ndarray,
    errors_ref: np.ndarray,
    requests_ref: np.ndarray,
    *,
    min_requests: int = 30,
) -> DeviationArray:
    """Is population "new" (canary, after) worse than "ref" (stable, before)?

    One-sided Fisher exact test: given the total errors, the number landing in
    "new" is hypergeometric under equal rates, p = P(X >= k_new). Exact (and
    conservative) at any size, including 1 request per side; at large n it
    agrees with the two-proportion z test.

    effect = (k_new/n_new - k_ref/n_ref) in percentage points;
    n = min(n_new, n_ref), the side that limits what can be said;
    enough_data = both sides have >= min_requests.
    """
    k1, n1, k2, n2 = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                           (errors_new, requests_new, errors_ref, requests_ref)))
    _check_counts(k1, n1, "errors_new", "requests_new")
    _check_counts(k2, n2, "errors_ref", "requests_ref")
    log_p = _fisher_log_p_greater(k1, n1, k2, n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r1, r2 = k1 / n1, k2 / n2
    n = np.minimum(n1, n2)
    return _deviations(r1, r2, (r1 - r2) * 100.0, log_p, n, n >= min_requests)


def error_rate_two_sample(
    errors_new: int, requests_new: int, errors_ref: int, requests_ref: int, *, min_requests: int = 30
) -> Deviation:
    """Scalar form of `error_rate_two_sample_array`."""
    return _one(error_rate_two_sample_array, errors_new, requests_new, errors_ref, requests_ref,
                min_requests=min_requests)


# --------------------------------------------------------------------------- latency


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


# --------------------------------------------------------------------------- counts


def count_deviation_array(
    observed: np.ndarray,
    expected: np.ndarray,
    variance: np.ndarray,
    *,
    direction: str = "both",
    min_expected: float = 10.0,
    expected_floor: float = 0.5,
) -> DeviationArray:
    """Observed count (volume, transactions) against a seasonal expectation mu.

    The count is negative binomial with the baseline's overdispersion, var =
    mu + mu^2 / r, so r = mu^2 / (var - mu); when var <= mu it is Poisson.
    ``direction``: "surge" p = P(X >= x), "drop" p = P(X <= x), "both"
    two-sided p = min(1, 2 * min(both tails)). Exact discrete tails.

    mu is floored at ``expected_floor`` so a series with no expected traffic
    is not infinitely surprised by one event. effect = (x - mu) / mu;
    n = mu (what a drop or surge is measured against);
    enough_data = mu >= min_expected (below it even a drop to zero is weak evidence).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} (got {direction!r})")
    x, mu, var = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (observed, expected, variance)))
    bad = ~np.isfinite(x) | (x < 0) | (x != np.floor(x))
    if bad.any():
        raise ValueError(f"observed counts must be integers >= 0 (got {_first_bad(x, bad)})")
    bad = ~np.isfinite(mu) | (mu < 0) | ~np.isfinite(var) | (var < 0)
    if bad.any():
        raise ValueError(
            f"expected and variance must be finite and >= 0 (got expected={_first_bad(mu, bad)}, "
            f"variance={_first_bad(var, bad)}); check the baseline for this series"
        )
    mu_eff = np.maximum(mu, expected_floor)
    over = var > mu_eff
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(over, mu_eff**2 / (var - mu_eff), 1.0)
        p_nb = np.where(over, mu_eff / var, 0.5)
    log_ge = np.where(over, stats.nbinom.logsf(x - 1, r, p_nb), stats.poisson.logsf(x - 1, mu_eff))
    log_le = np.where(over, stats.nbinom.logcdf(x, r, p_nb), stats.poisson.logcdf(x, mu_eff))
    # A tail is at least the probability of its own end point; logpmf does not
    # underflow where scipy's log-tails return -inf (e.g. P(X = 0) at mu = 1000).
    log_pmf = np.where(over, stats.nbinom.logpmf(x, r, p_nb), stats.poisson.logpmf(x, mu_eff))
    log_ge = np.maximum(log_ge, log_pmf)
    log_le = np.maximum(log_le, log_pmf)
    if direction == "surge":
        log_p = log_ge
    elif direction == "drop":
        log_p = log_le
    else:
        log_p = np.minimum(np.minimum(log_ge, log_le) + math.log(2.0), 0.0)
    return _deviations(x, mu, (x - mu_eff) / mu_eff, log_p, mu, mu >= min_expected)


def count_deviation(
    observed: int,
    expected: float,
    variance: float,
    *,
    direction: str = "both",
    min_expected: float = 10.0,
    expected_floor: float = 0.5,
) -> Deviation:
    """Scalar form of `count_deviation_array`."""
    return _one(count_deviation_array, observed, expected, variance, direction=direction,
                min_expected=min_expected, expected_floor=expected_floor)


# --------------------------------------------------------------------------- metric samples


def robust_z_array(
    value: np.ndarray,
    median: np.ndarray,
    mad: np.ndarray,
    n_baseline: np.ndarray,
    *,
    direction: str = "both",
    mad_floor: float = 1e-9,
    mad_floor_rel: float = 0.01,
    min_samples: int = 5,
) -> DeviationArray:
    """Robust z of metric samples against a baseline's median and MAD.

    z = (x - median) / (1.4826 * max(MAD, mad_floor, mad_floor_rel * |median|));
    the floors keep a flat baseline (MAD = 0) from turning any wiggle into an
    infinite z. effect = z.

    p-value: z is shrunk by sqrt(1 + pi / (2 n)) for the noise of the median
    and referred to Student t with 0.37 (n - 1) degrees of freedom, since the
    MAD is as efficient as an SD from about 37 % of the samples. On normal
    data this is conservative for small baselines and nominal from ~50
    samples; on heavy-tailed metrics no parametric p is exact, treat it as a
    ranking. ``direction``: "up", "down" or "both" (two-sided).
    n = n_baseline; enough_data = n_baseline >= min_samples; fewer than two
    samples give p = 1.
    """
    if direction not in METRIC_DIRECTIONS:
        raise ValueError(f"direction must be one of {METRIC_DIRECTIONS} (got {direction!r})")
    x, med, mad_, nb = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                             (value, median, mad, n_baseline)))
    scale = MAD_TO_SIGMA * np.maximum(np.maximum(mad_, mad_floor), mad_floor_rel * np.abs(med))
    z = (x - med) / scale
    usable = nb >= 2
    nb_safe = np.where(usable, nb, 2.0)
    z_adj = z / np.sqrt(1.0 + math.pi / (2.0 * nb_safe))
    df = 0.37 * (nb_safe - 1.0)
    if direction == "up":
        log_p = stats.t.logsf(z_adj, df)
    elif direction == "down":
        log_p = stats.t.logsf(-z_adj, df)
    else:
        log_p = np.minimum(stats.t.logsf(np.abs(z_adj), df) + math.log(2.0), 0.0)
    log_p = np.where(usable, log_p, 0.0)
    return _deviations(x, med, z, log_p, nb, nb >= min_samples)


def robust_z(
    value: float,
    baseline: np.ndarray,
    *,
    direction: str = "both",
    mad_floor: float = 1e-9,
    mad_floor_rel: float = 0.01,
    min_samples: int = 5,
) -> Deviation:
    """Robust z of one value against a 1-D array of baseline samples."""
    base = np.asarray(baseline, dtype=np.float64).ravel()
    if base.size == 0:
        return Deviation(float(value), math.nan, math.nan, 0.0, 1.0, 0.0, False)
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    return _one(robust_z_array, value, med, mad, base.size, direction=direction, mad_floor=mad_floor,
                mad_floor_rel=mad_floor_rel, min_samples=min_samples)


# --------------------------------------------------------------------------- low volume


def min_detectable_effect(
    requests: np.ndarray,
    expected_rate: np.ndarray,
    baseline_requests: np.ndarray,
    *,
    alpha: float = 1e-3,
    power: float = 0.8,
) -> np.ndarray:
    """Smallest error-rate increase (percentage points) detectable with this much traffic.

    For `error_rate_vs_expected_array`: find the fewest errors k* whose p-value
    is <= alpha, then the true rate p1 at which Binomial(n, p1) reaches k* with
    probability ``power`` (exactly: p1 = betaincinv(k*, n - k* + 1, power)).
    Returns (p1 - p0) * 100, or +inf when even n errors in n requests would not
    reach alpha. The judge compares it with the regression size it must catch:
    larger means the window could not have shown it, i.e. ``inconclusive``.
    For a two-population comparison pass the reference requests as
    ``baseline_requests`` (an approximation of the Fisher test's power).
    """
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must be in (0, 1) (got alpha={alpha}, power={power})")
    n, p0, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                     (requests, expected_rate, baseline_requests)))
    n = np.atleast_1d(n)
    p0 = np.atleast_1d(p0)
    m = np.atleast_1d(m)
    _check_counts(np.zeros_like(n), n, "errors", "requests")
    _check_rate(p0, "expected_rate")
    a = p0 * m + PRIOR_ERRORS
    b = (1.0 - p0) * m + PRIOR_OK
    log_alpha = math.log(alpha)
    # p(k) falls as k grows: bisect for the first k with p(k) <= alpha;
    # hi = n + 1 stands for "no k works".
    lo = np.zeros_like(n)
    hi = n + 1.0
    while True:
        open_ = hi - lo > 1
        if not open_.any():
            break
        idx = np.flatnonzero(open_)
        mid = np.floor((lo[idx] + hi[idx]) / 2.0)
        ok = _betabinom_log_sf(mid, n[idx], a[idx], b[idx]) <= log_alpha
        hi[idx[ok]] = mid[ok]
        lo[idx[~ok]] = mid[~ok]
    k_star = hi
    feasible = k_star <= n
    ks = np.where(feasible, k_star, 1.0)
    p1 = special.betaincinv(ks, np.maximum(n - ks + 1.0, 1.0), power)
    out = np.where(feasible, (p1 - p0) * 100.0, np.inf)
    return out if np.ndim(requests) or np.ndim(expected_rate) or np.ndim(baseline_requests) else out[0]


def min_detectable_drop(expected: np.ndarray, *, alpha: float = 1e-3, power: float = 0.8) -> np.ndarray:
    """Smallest relative volume drop (0..1) a Poisson drop test could catch at this expected count.

    k* = largest count with P(X <= k*) <= alpha at mean mu; a true mean mu1 is
    caught with probability P(Poisson(mu1) <= k*) = Q(k* + 1, mu1) >= power,
    so mu1 = gammainccinv(k* + 1, power). Returns 1 - mu1/mu, or +inf when
    even zero events would not be significant. Overdispersion only makes
    drops harder to see, so this is a best case.
    """
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must be in (0, 1) (got alpha={alpha}, power={power})")
    mu = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    # The Poisson cdf is at most alpha up to k* = ppf(alpha) - 1 (or ppf itself when it hits alpha exactly).
    k = stats.poisson.ppf(alpha, mu)
    k_star = np.where(stats.poisson.cdf(k, mu) <= alpha, k, k - 1.0)
    feasible = (k_star >= 0) & (mu > 0)
    mu1 = special.gammainccinv(np.maximum(k_star, 0.0) + 1.0, power)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(feasible, 1.0 - mu1 / mu, np.inf)
    return out if np.ndim(expected) else out[0]


# --------------------------------------------------------------------------- discrete tails


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


# Terms per vectorised step: larger blocks waste evaluations past the cut-off,
# smaller ones pay Python overhead per step; 32 measured best on a mix of n.
_BLOCK = 32
_NEGLIGIBLE = math.log(1e-17)  # a term this small relative to the sum cannot change a float64


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
        total[active] = np.logaddexp(total[active], special.logsumexp(terms, axis=1))
        last, prev = terms[:, -1], terms[:, -2]
        done = beyond[:, -1] | ((last <= prev) & (last - total[active] < _NEGLIGIBLE))
        pos[active] += _BLOCK * step
        active = active[~done]
    return total


# --------------------------------------------------------------------------- validation


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
