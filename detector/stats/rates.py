"""Error rates: one window against an expected rate (beta-binomial, overdispersion from the
baseline's variance), and two populations against each other (exact conditional test).
"""

from __future__ import annotations

import numpy as np

from detector.stats.results import Deviation, DeviationArray, PRIOR_ERRORS, PRIOR_OK, _deviations, _one
from detector.stats.tails import _betabinom_log_sf, _check_counts, _check_rate, _first_bad, _fisher_log_p_greater


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
