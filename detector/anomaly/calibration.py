"""Calibrated tail probabilities: from a standardised deviation x >= 0 to p = P(X >= x).

Real residuals are not normal (spiky CPU, quantised counts, autocorrelated
drifts), so a normal tail would overstate how surprising a deviation is. Each
series learns its own tail by peaks over threshold (Pickands; as in Siffer et
al. 2017, "Anomaly detection in streams with extreme value theory"): above
U = 2, excesses are modelled as exponential (a generalised Pareto with shape
0) with the rate of exceedance and the mean excess learnt online:

    p(x) = p_U * exp(-(x - U) / m)            for x > U
    p(x) = Q(x) ** (log p_U / log Q(U))       for x <= U, Q the normal two-sided tail

(the body is the normal one when p_U = Q(U), and goes from 1 at x = 0 to p_U
at U whatever p_U is, so a series that rarely exceeds U is not scored high
for small deviations).

p_U and m are exponentially weighted (half-life `HALF_LIFE` values) with a
prior worth `PRIOR_N` values of a standard normal, so a new series starts
from the normal tail and moves to its own. Every judged value is learnt, so
a series whose spikes are routine stops alarming on them, but with bounded
influence: an excess counts as at most `EXCESS_CAP` current mean excesses,
so one incident cannot make the next one look ordinary.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from detector.anomaly.columns import SeriesColumns

U = 2.0
HALF_LIFE = 2000.0
PRIOR_N = 50.0
EXCESS_CAP = 3.0
MIN_EXCEED = 1e-3
_Q_U = float(special.erfc(U / np.sqrt(2.0)))  # P(|Z| >= 2), normal
_MEAN_EXCESS_U = float(np.sqrt(2 / np.pi) * np.exp(-U * U / 2) / _Q_U - U)  # E[|Z| - 2 | |Z| >= 2], normal


class TailCalibration:
    def __init__(self) -> None:
        self.eta = 1.0 - 0.5 ** (1.0 / HALF_LIFE)
        self.cols = SeriesColumns({"n": (0, PRIOR_N), "n_exceed": (0, PRIOR_N * _Q_U),
                                   "excess": (0, PRIOR_N * _Q_U * _MEAN_EXCESS_U)})

    def log10_p(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """log10 P(X >= x) under each series' learnt tail (<= 0)."""
        c = self.cols
        n, ne, ex = c["n"][idx], c["n_exceed"][idx], c["excess"][idx]
        p_u = ne / n
        m = ex / ne
        x = np.abs(x)
        # below U: the normal tail bent to pass through (0, 1) and (U, p_U): p = Q(x) ** (log p_U / log Q(U))
        body = np.log10(special.erfc(np.minimum(x, U) / np.sqrt(2.0))) * (np.log10(p_u) / np.log10(_Q_U))
        tail = np.log10(p_u) - (x - U) / (m * np.log(10.0))
        return np.minimum(np.where(x > U, tail, body), 0.0)

    def learn(self, idx: np.ndarray, x: np.ndarray, weight: np.ndarray) -> None:
        c = self.cols
        keep = np.where(weight > 0, 1.0 - self.eta, 1.0)
        w = (weight > 0).astype(np.float64)
        x = np.abs(x)
        over = x > U
        # bounded influence: one huge excess counts as at most EXCESS_CAP mean excesses
        cap = EXCESS_CAP * c["excess"][idx] / c["n_exceed"][idx]
        # a series that never exceeds U (a constant) keeps a floor of exceedances, so p_U never reaches 0
        keep_tail = np.where(c["n_exceed"][idx] < MIN_EXCEED, 1.0, keep)
        c["n"][idx] = c["n"][idx] * keep + w
        c["n_exceed"][idx] = c["n_exceed"][idx] * keep_tail + w * over
        c["excess"][idx] = c["excess"][idx] * keep_tail + w * np.where(over, np.minimum(x - U, cap), 0.0)
