"""Counts (volume, transactions, log lines) against an expected count: surge, drop or both,
with overdispersion.
"""

from __future__ import annotations

import math

import numpy as np

from detector.stats.count_tails import nbinom_log_tails, poisson_log_tails
from detector.stats.results import DIRECTIONS, Deviation, DeviationArray, _deviations, _one
from detector.stats.tails import _first_bad


def _log_tails(x: np.ndarray, mu: np.ndarray, r: np.ndarray, p_nb: np.ndarray,
               over: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log P(X >= x), log P(X <= x), log P(X = x): negative binomial (r, p_nb) on the
    overdispersed rows, Poisson (mu) on the others; each family evaluated on its rows only."""
    if over.all():
        return nbinom_log_tails(x, r, p_nb)
    if not over.any():
        return poisson_log_tails(x, mu)
    out = tuple(np.empty(len(x)) for _ in range(3))
    for rows, tails in ((over, nbinom_log_tails(x[over], r[over], p_nb[over])),
                        (~over, poisson_log_tails(x[~over], mu[~over]))):
        for o, t in zip(out, tails):
            o[rows] = t
    return out


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
    log_ge, log_le, log_pmf = _log_tails(x.ravel(), mu_eff.ravel(), r.ravel(), p_nb.ravel(), over.ravel())
    log_ge, log_le, log_pmf = (a.reshape(x.shape) for a in (log_ge, log_le, log_pmf))
    # A tail is at least the probability of its own end point; logpmf does not
    # underflow where scipy's log-tails return -inf (e.g. P(X = 0) at mu = 1000).
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
