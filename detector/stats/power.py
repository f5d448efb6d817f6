"""Power: the smallest effect the data seen could have shown (for `inconclusive` verdicts).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy import stats

from detector.stats.results import PRIOR_ERRORS, PRIOR_OK
from detector.stats.tails import _betabinom_log_sf, _check_counts, _check_rate


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
