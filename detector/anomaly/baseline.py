"""Robust online baseline of a sampled series: level + detected seasonality + residual scale.

For each series, with y the mean of its samples in a closed window at time t:

* **Level** L: an exponentially weighted location of the deseasonalised
  value with half-life `level_half_life_samples`, updated with the residual
  clipped at `CLIP` residual standard deviations (a Huber-type update: an
  outlier moves the level by at most alpha x CLIP x sigma, whatever its size).
* **Seasonal profiles**, daily and weekly: time-weighted means of y - L per
  phase of the period, learnt with soft (linear) binning so any sample
  interval and gaps work, forgotten with a half-life of `SEASON_HALF_LIFE`
  periods, learnt from clipped residuals too.
* **Detected seasonality**: each candidate (none, daily, weekly) keeps an
  exponentially weighted variance of its one-step-ahead residual; a profile
  is used only once it has two periods of history and lowers that variance
  by at least `season_min_gain` (weekly must also beat daily by as much).
* **Scale** sigma: exponentially weighted mean of squared residuals, clipped
  at CLIP sigma (winsorised variance, corrected for the clipping under a
  normal model), half-life `scale_half_life_samples`.
  It never falls below `SPREAD_FLOOR` of the series' long-run standard
  deviation, so a noise-free or mostly-constant series is not infinitely
  surprised by its first wiggle.
* **Recurring excursions** (`recurring.RecurringExcursions`, with seasonality
  on): a residual like the ones the last two days had near this time of day
  is expected; the scored z is only what exceeds them (`Step.z`), while
  everything here learns from the raw residual (`Step.z_raw`).
* **Two regimes** (`regimes.Regimes`): a series that has gone back and forth
  between the same two levels twice is judged against the level its value
  is nearer to, and switches at once.
* **Level shifts**: a run of `shift_adopt_samples` consecutive residuals
  beyond `SHIFT_Z` sigma on the same side is a new normal: the level jumps to
  the run's mean instead of alarming forever.

Until a series has `warmup_samples`, level and scale are plain running means
(no clipping) and nothing is judged. Rates are per sample of the series, not
per second, so a 10 s and a 1 h series learn alike; seasonality is in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.anomaly.columns import SeriesColumns
from detector.anomaly.recurring import COLUMNS as RECURRING_COLUMNS
from detector.anomaly.recurring import RecurringExcursions
from detector.anomaly.regimes import COLUMNS as REGIME_COLUMNS
from detector.anomaly.regimes import Regimes

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
DAY_BINS = 48  # 30-minute phases
WEEK_BINS = 168  # 1-hour phases
SEASON_HALF_LIFE = 4.0  # periods
CLIP = 3.5
SHIFT_Z = 3.0
SPREAD_FLOOR = 0.05  # the residual scale is at least this share of the long-run standard deviation
# E[min(Z^2, c^2)] for standard normal Z and c = CLIP: the winsorised variance's consistency factor
_KAPPA = 0.9951


@dataclass(frozen=True)
class Step:
    """What the baseline said about each series' value before learning it."""

    expected: np.ndarray  # L + S of the chosen model
    z: np.ndarray  # residual / sigma beyond what recurs at this time of day (0 while warming up): scored
    z_raw: np.ndarray  # residual / sigma (0 while warming up): learnt
    ready: np.ndarray  # bool: past warm-up
    seasonal: np.ndarray  # 0 none, 1 daily, 2 weekly
    shifted: np.ndarray  # bool: a level shift was adopted at this value


def _phase(t: np.ndarray, period: float, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (np.mod(t, period) / period) * bins - 0.5
    b0 = np.floor(x)
    w1 = x - b0
    b0 = np.mod(b0, bins).astype(np.int64)
    return b0, np.mod(b0 + 1, bins), w1


class Baseline:
    def __init__(self, level_half_life_samples: float, scale_half_life_samples: float, warmup_samples: int,
                 shift_adopt_samples: int, seasonality: bool, season_min_gain: float) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / level_half_life_samples)
        self.beta = 1.0 - 0.5 ** (1.0 / scale_half_life_samples)
        self.warmup = warmup_samples
        self.adopt = shift_adopt_samples
        self.seasonality = seasonality
        self.gain = season_min_gain
        self.cols = SeriesColumns({
            "n": (0, 0.0), "t_first": (0, np.nan), "t_last": (0, np.nan), "level": (0, 0.0),
            "var0": (0, 0.0), "var1": (0, 0.0), "var2": (0, 0.0), "mean": (0, 0.0), "spread": (0, 0.0),
            "run": (0, 0.0), "run_sum": (0, 0.0),
            "day_num": (DAY_BINS, 0.0), "day_den": (DAY_BINS, 0.0),
            "week_num": (WEEK_BINS, 0.0), "week_den": (WEEK_BINS, 0.0),
            **RECURRING_COLUMNS, **REGIME_COLUMNS,
        })
        self.recurring = RecurringExcursions(self.cols)
        self.regimes = Regimes(self.cols)

    # ------------------------------------------------------------ seasonal profiles

    def _profile(self, name: str, idx: np.ndarray, t: np.ndarray, period: float, bins: int):
        b0, b1, w1 = _phase(t, period, bins)
        num, den = self.cols[f"{name}_num"], self.cols[f"{name}_den"]
        w0 = 1.0 - w1
        d = w0 * den[idx, b0] + w1 * den[idx, b1]
        s = np.where(d > 0, (w0 * num[idx, b0] + w1 * num[idx, b1]) / np.where(d > 0, d, 1.0), 0.0)
        return s, (b0, b1, w0, w1)

    def _learn_profile(self, name: str, idx: np.ndarray, dt: np.ndarray, period: float, where, r: np.ndarray):
        b0, b1, w0, w1 = where
        num, den = self.cols[f"{name}_num"], self.cols[f"{name}_den"]
        decay = 0.5 ** (dt / (SEASON_HALF_LIFE * period))
        num[idx] *= decay[:, None]
        den[idx] *= decay[:, None]
        np.add.at(num, (idx, b0), w0 * r)
        np.add.at(den, (idx, b0), w0)
        np.add.at(num, (idx, b1), w1 * r)
        np.add.at(den, (idx, b1), w1)

    # ------------------------------------------------------------ one closed window

    def step(self, idx: np.ndarray, t: np.ndarray, y: np.ndarray) -> Step:
        """Judge y (one value per series in `idx`, at time t) against the expectation, then learn it."""
        c = self.cols
        n = c["n"][idx]
        first = n == 0
        c["t_first"][idx] = np.where(first, t, c["t_first"][idx])
        c["level"][idx] = np.where(first, y, c["level"][idx])
        level = c["level"][idx]
        dt = np.where(first, 0.0, np.maximum(t - np.where(first, t, c["t_last"][idx]), 0.0))
        history = t - c["t_first"][idx]

        s_day, where_day = self._profile("day", idx, t, DAY_S, DAY_BINS)
        s_week, where_week = self._profile("week", idx, t, WEEK_S, WEEK_BINS)
        var = (c["var0"][idx], c["var1"][idx], c["var2"][idx])
        # the model chosen before seeing y: a profile only when it has earned it
        mode = np.zeros(len(idx), dtype=np.int64)
        if self.seasonality:
            day_ok = (history >= 2 * DAY_S) & (var[1] < (1 - self.gain) * var[0])
            week_ok = (history >= 2 * WEEK_S) & (var[2] < (1 - self.gain) * np.where(day_ok, var[1], var[0]))
            mode = np.where(week_ok, 2, np.where(day_ok, 1, 0))
        season = np.where(mode == 2, s_week, np.where(mode == 1, s_day, 0.0))
        ready = n >= self.warmup
        # a series that routinely switches between two levels is judged against the one y is nearer
        level, switched = self.regimes.choose(idx, level, season, y, ready)
        expected = level + season
        sigma = np.sqrt(np.where(mode == 2, var[2], np.where(mode == 1, var[1], var[0])))
        resid_raw = y - expected
        # a residual scale that collapses (noise-free or mostly-constant series) would make any wiggle
        # infinitely surprising: it is never taken below a share of the series' long-run spread
        scale_floor = 1e-9 + 1e-6 * np.abs(level) + SPREAD_FLOOR * np.sqrt(c["spread"][idx])
        z_raw = np.where(ready, resid_raw / np.maximum(sigma, scale_floor), 0.0)
        # an excursion that recurred at this time of day on the last two days is expected today: only what
        # exceeds it is scored (everything is learnt from the raw residual, as without it)
        if self.seasonality:
            lo, hi, phase_bin = self.recurring.allowance(idx, t)
            z = np.where(ready, (resid_raw - np.clip(resid_raw, lo, hi)) / np.maximum(sigma, scale_floor), 0.0)
        else:
            z = z_raw

        # learning: running means during warm-up, clipped (bounded-influence) updates after
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        b = np.maximum(self.beta, 1.0 / (n + 1.0))
        lim = np.where(ready, CLIP * np.maximum(sigma, scale_floor), np.inf)
        r_clip = np.clip(resid_raw, -lim, lim)
        new_level = level + a * r_clip
        for k, s_k in enumerate((0.0, s_day, s_week)):
            e = y - level - s_k
            e2 = np.where(ready, np.minimum(e * e, (CLIP * CLIP) * var[k]) / _KAPPA, e * e)
            c[f"var{k}"][idx] = np.where(first, 0.0, (1 - b) * var[k] + b * e2)
        dev = y - level
        dev_lim = np.where(ready, CLIP * np.sqrt(np.maximum(var[0], scale_floor ** 2)), np.inf)
        dev = np.clip(dev, -dev_lim, dev_lim)
        self._learn_profile("day", idx, dt, DAY_S, where_day, dev)
        self._learn_profile("week", idx, dt, WEEK_S, where_week, dev)

        if self.seasonality:
            self.recurring.record(idx[ready], phase_bin[ready], resid_raw[ready], z_raw[ready])

        # level shift: a persistent one-sided departure becomes the new level
        side = np.where(ready & (np.abs(z_raw) >= SHIFT_Z), np.sign(z_raw), 0.0)
        run = np.where(switched, 0.0, c["run"][idx])
        same = (side != 0) & (np.sign(run) == side)
        run = np.where(side == 0, 0.0, np.where(same, run + side, side))
        run_sum = np.where(side == 0, 0.0, np.where(same, c["run_sum"][idx], 0.0) + (y - season))
        shifted = np.abs(run) >= self.adopt
        new_level = np.where(shifted, run_sum / np.maximum(np.abs(run), 1.0), new_level)
        self.regimes.shifted(idx, shifted, level, new_level, np.maximum(sigma, scale_floor))
        c["run"][idx] = np.where(shifted, 0.0, run)
        c["run_sum"][idx] = np.where(shifted, 0.0, run_sum)
        # long-run spread of the raw values (4 x the scale's half-life), for the scale floor
        g = np.maximum(self.beta / 4, 1.0 / (n + 1.0))
        d = y - c["mean"][idx]
        c["mean"][idx] = np.where(first, y, c["mean"][idx] + g * d)
        c["spread"][idx] = np.where(first, 0.0, (1 - g) * (c["spread"][idx] + g * d * d))
        c["level"][idx] = new_level
        c["n"][idx] = n + 1
        c["t_last"][idx] = t
        return Step(expected=expected, z=z, z_raw=z_raw, ready=ready, seasonal=mode, shifted=shifted)
