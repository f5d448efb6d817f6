"""The count test's log tails equal scipy.stats' to the last bit (records depend on them), and
`count_deviation_array` with them equals the scipy.stats formulation row by row."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from detector.stats.count_tails import nbinom_log_tails, poisson_log_tails
from detector.stats.counts import count_deviation_array
from detector.stats.results import LN10


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def _grid(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts and expectations from 0.5 to 1e6, observed near, far below and far above."""
    mu = np.exp(rng.uniform(np.log(0.5), np.log(1e6), size))
    spread = rng.choice([0.0, 0.1, 1.0, 5.0], size)
    x = np.maximum(np.round(mu * np.exp(rng.normal(0.0, 1.0, size) * spread)), 0.0)
    x[rng.random(size) < 0.05] = 0.0
    var = mu * np.exp(rng.uniform(-1.0, 4.0, size))  # under- and overdispersed
    return x, mu, var


def test_poisson_tails_equal_scipy_stats_bit_for_bit():
    rng = np.random.default_rng(5)
    x, mu, _ = _grid(rng, 20_000)
    ge, le, pmf = poisson_log_tails(x, mu)
    assert _same_bits(ge, stats.poisson.logsf(x - 1, mu))
    assert _same_bits(le, stats.poisson.logcdf(x, mu))
    assert _same_bits(pmf, stats.poisson.logpmf(x, mu))
    assert (ge == 0.0).any() and (ge < -50).any() and (le < -50).any()  # both ends of both tails met


def test_negative_binomial_tails_equal_scipy_stats_bit_for_bit():
    rng = np.random.default_rng(6)
    x, mu, var = _grid(rng, 20_000)
    var = np.maximum(var, mu * 1.0001)
    r, p = mu**2 / (var - mu), mu / var
    ge, le, pmf = nbinom_log_tails(x, r, p)
    assert _same_bits(ge, stats.nbinom.logsf(x - 1, r, p))
    assert _same_bits(le, stats.nbinom.logcdf(x, r, p))
    assert _same_bits(pmf, stats.nbinom.logpmf(x, r, p))
    x3, n_bad, p_bad = np.full(3, 3.0), np.array([0.0, -1.0, 3.0]), np.array([0.5, 0.5, 1.5])  # nan, as scipy gives
    want = (stats.nbinom.logsf(x3 - 1, n_bad, p_bad), stats.nbinom.logcdf(x3, n_bad, p_bad),
            stats.nbinom.logpmf(x3, n_bad, p_bad))
    for got, expected in zip(nbinom_log_tails(x3, n_bad, p_bad), want):
        assert _same_bits(got, expected)


def _reference(x, mu, var, floor=0.5):
    """The count test as written against scipy.stats (both families on every row)."""
    mu_eff = np.maximum(mu, floor)
    over = var > mu_eff
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(over, mu_eff**2 / (var - mu_eff), 1.0)
        p = np.where(over, mu_eff / var, 0.5)
    ge = np.maximum(np.where(over, stats.nbinom.logsf(x - 1, r, p), stats.poisson.logsf(x - 1, mu_eff)),
                    np.where(over, stats.nbinom.logpmf(x, r, p), stats.poisson.logpmf(x, mu_eff)))
    le = np.maximum(np.where(over, stats.nbinom.logcdf(x, r, p), stats.poisson.logcdf(x, mu_eff)),
                    np.where(over, stats.nbinom.logpmf(x, r, p), stats.poisson.logpmf(x, mu_eff)))
    return np.minimum(np.minimum(ge, le) + math.log(2.0), 0.0)


def test_count_deviation_equals_the_scipy_stats_formulation_on_mixed_rows():
    rng = np.random.default_rng(7)
    for trial in range(30):
        x, mu, var = _grid(rng, 12)
        if trial % 3 == 0:
            var = mu * 0.5  # all Poisson
        elif trial % 3 == 1:
            var = mu * 3.0  # all overdispersed
        dev = count_deviation_array(x, mu, var, direction="both")
        want = _reference(x, mu, var)
        assert _same_bits(dev.score, -np.minimum(want, 0.0) / LN10 + 0.0), trial
        assert _same_bits(dev.p_value, np.exp(np.minimum(want, 0.0))), trial
