"""Always-valid evidence: mixture likelihood ratios accumulated stratum by stratum.

The judge looks at every closed window, so a test that is valid at one look
would raise false alarms at the rate of looks. Here the evidence against "the
new version is no worse than its reference" is a product of likelihood
ratios, one factor per stratum (one window of one endpoint), mixed over a
fixed grid of alternatives. Under the null each factor has expectation at
most 1 given the past, so the product is a nonnegative supermartingale and,
by Ville's inequality, P(it ever reaches 1/a) <= a however often one looks
and however few requests there are: no minimum count is needed.

Two kinds of stratum:

- **same window** (the stable version served traffic in it): a 2x2 table
  (new/stable x event/no event). Conditional on its margins the new
  version's event count is Fisher's noncentral hypergeometric with odds ratio
  psi (psi = 1 under the null), exactly, at any counts. This is the
  sequential form of the Cochran-Mantel-Haenszel test: sparse windows carry
  the little information their margins allow, nothing is rescaled.
- **before** (no stable traffic to compare with): the new version's events,
  accumulated, against the service's before the deploy, by universal
  inference (`before_log10`): valid for any rate under the null "no worse
  than before", with no bound to choose.

An "event" is an error (5xx), a request that did *not* complete a business
transaction (a drop in completions is a rise in these), or a request slower
than a threshold chosen from the pooled stratum (latency).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betaln, gammaln

from detector.stats.logsumexp import logsumexp

# Odds ratios of the alternatives mixed over, equal weights: from a barely
# visible shift to an endpoint that fails on every call.
LOG_PSI = np.log(10.0) * np.array([0.15, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0])
G = len(LOG_PSI)


def _lbinom(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def hypergeometric_llr(x, n, m, t) -> np.ndarray:
    """Log likelihood ratio [strata, G] of odds ratio exp(LOG_PSI) against 1 for the
    new side's event count `x` in 2x2 tables with `n` new and `m` reference
    requests and `t` events in all."""
    x, n, m, t = (np.asarray(a, dtype=np.float64).ravel() for a in (x, n, m, t))
    out = np.zeros((len(x), G))
    lo = np.maximum(0.0, t - m)
    hi = np.minimum(n, t)
    live = hi > lo
    if not live.any():
        return out
    x, n, m, t, lo, hi = (a[live] for a in (x, n, m, t, lo, hi))
    width = int((hi - lo).max()) + 1
    j = lo[:, None] + np.arange(width)[None, :]
    inside = j <= hi[:, None]
    jj = np.where(inside, j, lo[:, None])
    logw = np.where(inside, _lbinom(n[:, None], jj) + _lbinom(m[:, None], t[:, None] - jj), -np.inf)
    base = logsumexp(logw, axis=1)
    # [strata, G]: log sum_j w_j psi^j for every psi of the grid
    tilted = logsumexp(logw[:, :, None] + jj[:, :, None] * LOG_PSI[None, None, :], axis=1)
    out[live] = x[:, None] * LOG_PSI[None, :] - (tilted - base[:, None])
    return out


def log10_evidence(llr_sum) -> np.ndarray:
    """log10 of the mixture (equal weights over the grid) of accumulated likelihood ratios."""
    llr_sum = np.asarray(llr_sum, dtype=np.float64)
    return (logsumexp(llr_sum, axis=-1) - math.log(G)) / math.log(10.0)


def e_bh(log10_e: np.ndarray, alpha: float) -> np.ndarray:
    """Which of K hypotheses the e-Benjamini-Hochberg procedure rejects at level alpha
    (valid for e-values under any dependence; under the global null, the chance
    of rejecting any is at most alpha)."""
    log10_e = np.asarray(log10_e, dtype=np.float64)
    k = len(log10_e)
    out = np.zeros(k, bool)
    if not k:
        return out
    order = np.argsort(-log10_e, kind="stable")
    need = np.log10(k / (alpha * np.arange(1, k + 1)))
    ok = np.flatnonzero(log10_e[order] >= need)
    if len(ok):
        out[order[: ok.max() + 1]] = True
    return out


def detectable_rise(n: float, r: float, m: float, threshold_log10: float) -> float:
    """The smallest rise d of the event rate (0-1) that `n` requests would have shown
    against `r` events in `m` requests before the deploy, at the evidence
    threshold, had the new version's rate been r/m + d (the expected count, no
    luck either way); 1 - r/m when none would (or nothing to compare with)."""
    p0 = r / m if m > 0 else 0.0
    if n <= 0 or m <= 0:
        return 1.0 - p0

    def evidence(d: float) -> float:
        return float(before_log10(n * (p0 + d), n, r, m))

    lo, hi = 0.0, 1.0 - p0
    if evidence(hi) < threshold_log10:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        if evidence(mid) >= threshold_log10:
            hi = mid
        else:
            lo = mid
    return hi


def _loglik(x: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(x > 0, x * np.log(np.where(x > 0, p, 1.0)), 0.0)
        b = np.where(n - x > 0, (n - x) * np.log(np.where(n - x > 0, 1 - p, 1.0)), 0.0)
    return a + b


def _log_kt(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Log marginal likelihood of x events in n under a Beta(1/2, 1/2) mixture (Krichevsky-Trofimov)."""
    return betaln(x + 0.5, n - x + 0.5) - betaln(0.5, 0.5)


def before_log10(k, n, r, m) -> np.ndarray:
    """log10 e-value that the new version's rate (k events in n requests, accumulated)
    is above the rate before the deploy (r in m), by universal inference: each
    side's Beta(1/2, 1/2) mixture likelihood over the likelihood maximised
    under the null (new rate <= before rate). An e-process for any rate under
    the null, however often it is looked at; 0 without requests on either side."""
    k, n, r, m = (np.asarray(a, dtype=np.float64) for a in (k, n, r, m))
    num = _log_kt(k, n) + _log_kt(r, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        pn, pb = np.where(n > 0, k / n, 0.0), np.where(m > 0, r / m, 0.0)
        pooled = np.where(n + m > 0, (k + r) / (n + m), 0.0)
    apart = _loglik(k, n, pn) + _loglik(r, m, pb)
    together = _loglik(k + r, n + m, pooled)
    den = np.where(pn <= pb, apart, together)
    return np.where((n > 0) & (m > 0), (num - den) / math.log(10.0), 0.0)
