"""Log tails and log pmf of the Poisson and negative binomial counts, without scipy.stats' framework.

`stats.counts` asks, every closed window, for three log quantities of a
handful of counts; `scipy.stats.poisson.logsf` and its kin spend ~0.1 ms per
call on argument parsing and support checks before the one special function
that does the work. These functions call the same special functions with the
same arguments, in the same order, as scipy.stats does for the inputs the
count test gives (integer counts >= 0, mu > 0): the results are scipy.stats'
to the last bit (a test holds them equal on a wide grid). The negative
binomial's tails are the Boost functions scipy.stats calls; where this
scipy does not expose them, the public `scipy.stats.nbinom` is used instead.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy import stats

try:  # what scipy.stats.nbinom's _cdf and _sf evaluate (Boost, in the SciPy releases this runs on)
    from scipy.special._ufuncs import _nbinom_cdf, _nbinom_sf
except ImportError:  # pragma: no cover - another scipy layout: its public path
    _nbinom_cdf = _nbinom_sf = None


def poisson_log_tails(x: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log P(X >= x), log P(X <= x), log P(X = x) for integer x >= 0 and mu > 0 (float64 arrays):
    `stats.poisson.logsf(x - 1, mu)`, `.logcdf(x, mu)`, `.logpmf(x, mu)`."""
    k = x - 1.0
    log_ge = np.zeros(len(x))
    some = k >= 0
    with np.errstate(divide="ignore"):
        log_ge[some] = np.log(special.pdtrc(np.floor(k[some]), mu[some]))
        log_le = np.log(special.pdtr(np.floor(x), mu))
    log_pmf = special.xlogy(x, mu) - special.gammaln(x + 1) - mu
    return log_ge, log_le, log_pmf


def nbinom_log_tails(x: np.ndarray, n: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As `poisson_log_tails` for the negative binomial of `n` successes of probability `p`:
    `stats.nbinom.logsf(x - 1, n, p)`, `.logcdf(x, n, p)`, `.logpmf(x, n, p)`."""
    if _nbinom_sf is None:  # pragma: no cover
        return stats.nbinom.logsf(x - 1, n, p), stats.nbinom.logcdf(x, n, p), stats.nbinom.logpmf(x, n, p)
    valid = (n > 0) & (p > 0) & (p <= 1)
    k = x - 1.0
    log_ge = np.where(valid, 0.0, np.nan)
    some = valid & (k >= 0)
    with np.errstate(divide="ignore"):
        log_ge[some] = np.log(_nbinom_sf(np.floor(k[some]), n[some], p[some]))
    log_le = np.full(len(x), np.nan)
    kv, nv, pv = np.floor(x[valid]), n[valid], p[valid]
    cdf = _nbinom_cdf(kv, nv, pv)
    high = cdf > 0.5
    with np.errstate(divide="ignore"):
        cdf[high] = np.log1p(-special.betainc(kv[high] + 1, nv[high], 1 - pv[high]))
        cdf[~high] = np.log(cdf[~high])
    log_le[valid] = cdf
    log_pmf = np.full(len(x), np.nan)
    xv = x[valid]
    coeff = special.gammaln(nv + xv) - special.gammaln(xv + 1) - special.gammaln(nv)
    log_pmf[valid] = coeff + nv * np.log(pv) + special.xlog1py(xv, -pv)
    return log_ge, log_le, log_pmf
