"""A change of spread as a test with a sampling distribution: the recent rate of wide residuals.

A series whose spread grows (denser spikes, a burst cluster, a disrupted
oscillation) without any one value standing out scores low on the point
test, whose learnt tail has seen values that size, and nothing on the
sustained test, whose mean stays at zero. What does change is how often a
residual is wide. Per series, with e_t = 1 if |z_t| > `C` (z the raw residual
in the baseline's standard deviations) else 0:

* the recent rate: the exponentially weighted mean e_bar of e, half-life
  `half_life_samples` (the series' own samples, so any interval);
* the long-run rate q = P(e = 1), and the long-run variance v of e_bar about
  its mean, exponentially weighted over `HALF_LIFE` values (as the calibrated
  tails) from a prior worth `PRIOR_N` values of independent normal residuals.

Under "the spread has not changed", e_bar is a mean of n_eff independent
trials at rate q, with n_eff matched to its variance:

    n_eff = min((2 - g) / g, q (1 - q) / v),   g the EWMA weight

((2 - g) / g is the effective number of an exponentially weighted mean of
independent values; wide residuals that cluster, as a bursty series' do,
make v larger and n_eff smaller: an overdispersed binomial). The p-value is
the binomial upper tail of n_eff trials at rate q reaching e_bar n_eff (a
regularised incomplete beta, so n_eff and the count need not be integers).
It is a sampling distribution, not a learnt tail of the statistic; a count is
robust (one huge residual is one wide residual).

Only an increase is tested (a spread that shrinks is no incident the other
tests miss, and a rate that falls to 0 has little power in a few dozen
samples). An adopted level shift restarts e_bar at q: the wide residuals
before it were the shift's.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> test = SpreadTest(24.0)
>>> idx, ready, no = np.array([0]), np.array([True]), np.array([False])
>>> calm = [float(test.step(idx, rng.normal(size=1), ready, no)[0]) for _ in range(3000)]
>>> min(calm) > -3  # p never below 1e-3 over 3,000 values of unchanged noise
True
>>> wide = [float(test.step(idx, 2.0 * rng.normal(size=1), ready, no)[0]) for _ in range(48)]
>>> min(wide) < -6  # twice the spread: p below 1e-6 within 48 values
True
"""

from __future__ import annotations

import numpy as np
from scipy import special

from detector.anomaly.calibration import HALF_LIFE, PRIOR_N
from detector.anomaly.columns import SeriesColumns

C = 1.5  # a residual is wide beyond 1.5 standard deviations (near the single cut most informative about a scale)
Q0 = float(special.erfc(C / np.sqrt(2.0)))  # P(|Z| > C) for normal residuals: the prior rate (0.134)
Q_MIN = 0.01  # the long-run rate never below this in the test (a series that is almost never wide)


class SpreadTest:
    def __init__(self, half_life_samples: float) -> None:
        self.gamma = g = 1.0 - 0.5 ** (1.0 / half_life_samples)
        self.n_indep = (2.0 - g) / g
        self.eta = 1.0 - 0.5 ** (1.0 / HALF_LIFE)
        # weighted sums: n (weight), n1 (wide residuals), m (e_bar), v (squared deviations of e_bar from its mean)
        self.cols = SeriesColumns({"ebar": (0, Q0), "n": (0, PRIOR_N), "n1": (0, PRIOR_N * Q0),
                                   "m": (0, PRIOR_N * Q0), "v": (0, PRIOR_N * Q0 * (1 - Q0) / self.n_indep)})

    def log10_p(self, idx: np.ndarray, ebar: np.ndarray) -> np.ndarray:
        """log10 P(e_bar >= the observed one) for each series, under its long-run rate and dispersion."""
        c = self.cols
        n = c["n"][idx]
        q = np.clip(c["n1"][idx] / n, Q_MIN, 1.0 - Q_MIN)
        n_eff = np.minimum(self.n_indep, q * (1.0 - q) / np.maximum(c["v"][idx] / n, 1e-12))
        k = np.clip(ebar, 0.0, 1.0) * n_eff
        up = ebar > q
        # P(Bin(n, q) >= k) = I_q(k, n - k + 1), continued to real n and k
        p = special.betainc(np.where(up, k, 1.0), np.where(up, n_eff - k + 1.0, 1.0), np.where(up, q, 0.5))
        return np.where(up, np.log10(np.maximum(p, 1e-300)), 0.0)

    def step(self, idx: np.ndarray, z: np.ndarray, ready: np.ndarray, shifted: np.ndarray) -> np.ndarray:
        """log10 p (<= 0) of each series' recent rate of wide residuals, with this value's residual z;
        then learn it. Series not `ready` (warming up) are neither scored nor learnt."""
        c, g = self.cols, self.gamma
        e = (np.abs(z) > C).astype(np.float64)
        ebar = np.where(ready, (1.0 - g) * c["ebar"][idx] + g * e, c["ebar"][idx])
        log10_p = np.where(ready, self.log10_p(idx, ebar), 0.0)
        keep = np.where(ready, 1.0 - self.eta, 1.0)
        w = ready.astype(np.float64)
        n = c["n"][idx]
        mean = c["m"][idx] / n
        c["v"][idx] = c["v"][idx] * keep + w * (ebar - mean) ** 2
        c["m"][idx] = c["m"][idx] * keep + w * ebar
        c["n1"][idx] = c["n1"][idx] * keep + w * e
        c["n"][idx] = n * keep + w
        # an adopted level shift starts the recent rate afresh, at the long-run one
        c["ebar"][idx] = np.where(shifted, c["n1"][idx] / c["n"][idx], ebar)
        return log10_p
