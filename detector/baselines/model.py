"""Seasonal baselines: what a series is expected to do at this time of day.

This module owns the model of the expectation, and its uncertainty, for every rollup series
(service, or service and endpoint) and signal. It learns online from the values
of closed windows and answers `expect(series, ts)` with a mean, a predictive
standard deviation and flags saying how far the answer can be trusted. Its state is
saved with `to_bytes` / `save` (format in `files`), for checkpoints and for the warm-start files in
`models/`.

Model, per series (all state is numpy arrays indexed by a dense series index):

* **Profile** (time of day): per slot of `slot_s` seconds of local time in
  `timezone` (see `calendar`: correct across daylight-saving changes), one
  profile per kind of day (`day_profiles`: weekday and weekend), an exponentially
  forgotten (`profile_half_life_s`) weighted mean and variance of the values.
  Each value is split between the two nearest slot centres (linear "soft
  binning"), and a query pools the bracketing slots plus their neighbours
  (`neighbour_weight`). That is a Nadaraya-Watson estimate with a triangular
  kernel: the profile is continuous in time, and a slot with little history
  borrows from its neighbours in proportion to how much they have seen.
* **Level** (recent departures from the profile), with half-life
  `level_half_life_s`. Multiplicative kinds (`count`, `scale`) track the ratio
  estimator sum(y) / sum(profile) over the recent past, so expectation =
  profile x level; the additive kind tracks mean(y - profile), so expectation =
  profile + level. A ratio of sums, rather than a mean of ratios, stays stable
  where the profile is near zero (night-time traffic).
* **Noise**, learnt from one-step-ahead residuals (the prediction made before
  each value was seen), with the uncertainty of the expectation itself
  subtracted: `count` uses a negative binomial variance mean + phi * mean^2
  (phi is the overdispersion; phi = 0 is Poisson), `scale` a constant
  coefficient of variation, `additive` a variance per unit weight (sigma^2 /
  weight, so an error rate over 10 requests is noisier than one over 10,000).
  Because the residuals are those of the actual predictions, profile misfit and
  level drift end up in the stated uncertainty instead of being ignored.
* **Recent history** (fallback): an exponentially weighted mean and variance of
  the raw values over `level_half_life_s`. Until the seasonal model has at
  least `seasonal_min_days` of history and `min_slot_obs` effective
  observations near this time of day, `expect` answers with this level alone,
  its uncertainty multiplied by `fallback_std_factor`, and `seasonal=False`.
  Before `min_obs` observations and `min_history_s` of history, not even that:
  `ready=False`, and the caller should not judge.

`update` returns the expectation each value was judged against (the
prediction before learning it), so the core tests and learns a closed window
in one pass; `expect` answers for any time without learning.

Signals: one `SeasonalBaseline` per signal (each has its own kind and noise
model); a `BaselineBank` holds the baselines of all signals plus the registry
from stable series keys (strings) to the dense index they share, which is what
makes a saved bank meaningful to a new process.

The hot path is vectorised over series. river's statistics (`EWMean`,
`EWVar`) are per-object and per-value: driving one object per series from a
Python loop costs a call per series per window, cannot apply the elapsed-time
decay used here (river fades per update, not per second), and cannot be
snapshotted without pickle. The exponentially forgotten Welford update below
is the same statistic in array form; the tests check it against river's
`EWMean` / `EWVar` as an oracle.

The baseline learns from every value it is given. Windows the judge considers
anomalous (an incident, a deploy under verification) should be passed with
weight 0 or left out, so an incident does not become the new normal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from detector.baselines.calendar import DAY_PROFILES, Calendar
from detector.baselines.files import (FORMAT_VERSION, _BASELINE_FORMAT, BaselineFormatError, _atomic_write, _read_file,
                                      _read_npz, _write_npz)


DAY_S = 86400.0





KIND_COUNT = "count"  # counts per window (volume, transactions, error log lines): x level, negative binomial


KIND_SCALE = "scale"  # positive magnitudes (latency quantiles): x level, constant coefficient of variation


KIND_ADDITIVE = "additive"  # rates and metric values: + level, variance per unit weight


KINDS = (KIND_COUNT, KIND_SCALE, KIND_ADDITIVE)


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of one baseline; frozen, validated on construction."""

    kind: str = KIND_COUNT
    slot_s: float = 1800.0  # width of a time-of-day slot; must divide a day
    window_s: float = 10.0  # cadence of updates: the smallest step the forgetting clocks take
    level_half_life_s: float = 1800.0  # how fast the level (and the fallback) follow recent values
    profile_half_life_s: float = 7 * DAY_S  # how fast old days fade out of the time-of-day profile
    noise_half_life_s: float = 6 * 3600.0  # memory of the residual-variance estimate
    neighbour_weight: float = 0.25  # weight of the adjacent slots when pooling a profile estimate
    min_history_s: float = 600.0  # history before any expectation (even the fallback) is ready
    min_obs: int = 30  # observations before any expectation is ready
    seasonal_min_days: float = 1.0  # history before the time-of-day profile is used
    min_slot_obs: float = 30.0  # effective observations near this time of day for the profile to be used
    fallback_std_factor: float = 2.0  # uncertainty inflation while only recent history is known
    min_std: float = 0.0  # floor on the stated predictive std (in the signal's unit)
    timezone: str = "UTC"  # IANA zone whose local time indexes the profile
    day_profiles: str = "none"  # one profile for every day, or: weekday_weekend, day_of_week

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> ValueError:
            return ValueError(f"baseline {key} must be {expected} (got {key}={getattr(self, key)!r})")

        if self.kind not in KINDS:
            raise bad("kind", f"one of {', '.join(KINDS)}")
        for key in ("slot_s", "window_s", "level_half_life_s", "profile_half_life_s", "noise_half_life_s"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise bad(key, "a finite number of seconds > 0")
        slots = DAY_S / self.slot_s
        if abs(slots - round(slots)) > 1e-9 or round(slots) < 4:
            raise bad("slot_s", "a number of seconds that divides a day (86400) into at least 4 slots")
        if not 0 <= self.neighbour_weight <= 1:
            raise bad("neighbour_weight", "between 0 and 1")
        for key in ("min_history_s", "min_obs", "seasonal_min_days", "min_slot_obs", "min_std"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise bad(key, "a finite number >= 0")
        if self.day_profiles not in DAY_PROFILES:
            raise bad("day_profiles", f"one of {', '.join(DAY_PROFILES)}")
        Calendar(self.timezone, self.day_profiles)  # raises naming an unknown zone
        if not (np.isfinite(self.fallback_std_factor) and self.fallback_std_factor >= 1):
            raise bad("fallback_std_factor", "a number >= 1 (the fallback is never more certain than the model)")

    @property
    def slots_per_day(self) -> int:
        return int(round(DAY_S / self.slot_s))

    @property
    def n_slots(self) -> int:
        """Slots of all day profiles: profile p, slot of day s is p * slots_per_day + s."""
        return DAY_PROFILES[self.day_profiles] * self.slots_per_day

    @property
    def multiplicative(self) -> bool:
        return self.kind != KIND_ADDITIVE


@dataclass(frozen=True)
class Expectation:
    """What a baseline expects for each queried (series, ts); all fields are arrays of the query's length.

    `std` is the predictive standard deviation of one window's value: noise plus
    the uncertainty of `mean` (`mean_std`). For `count` baselines, `dispersion`
    is the negative binomial overdispersion phi with std**2 == mean + phi *
    mean**2, so a count test can use NB(mean, phi); it is NaN for other kinds.
    `ready` is False until the series has `min_obs` observations and
    `min_history_s` of history: before that `mean` and `std` are not to be
    judged against (a series never seen has mean NaN and std inf). `seasonal`
    is True where the mean is profile x level (or + level); where it is False
    but `ready` is True, the mean is recent history alone and `std` is inflated
    by `fallback_std_factor`.
    """

    mean: np.ndarray
    std: np.ndarray
    mean_std: np.ndarray
    dispersion: np.ndarray
    n_obs: np.ndarray
    history_s: np.ndarray
    ready: np.ndarray
    seasonal: np.ndarray

    def __len__(self) -> int:
        return len(self.mean)


# Per-series state, one row per field of a (fields, series) matrix so that a
# round of updates is one gather and one scatter. rw_* is the recent-history
# (fallback) tracker, lv_* the level, nz_* the noise model; *_ts is the event
# time of the last update, which drives the elapsed-time forgetting.
_SERIES_FIELDS: dict[str, float] = {
    "n_obs": 0.0, "first_ts": np.inf,
    "rw_w": 0.0, "rw_w2": 0.0, "rw_m": 0.0, "rw_s": 0.0, "rw_ts": -np.inf,
    "lv_num": 0.0, "lv_den": 0.0, "lv_sq": 0.0, "lv_w": 0.0, "lv_w2": 0.0, "lv_ts": -np.inf,
    "nz_num": 0.0, "nz_den": 0.0, "nz_w": 0.0, "nz_n": 0.0, "nz_ts": -np.inf,
}


_N_OBS, _FIRST_TS = 0, 1


_RW, _LV, _NZ = slice(2, 7), slice(7, 13), slice(13, 18)


# Per (series, slot) state of the time-of-day profile: a (fields, series, slots) array.
_SLOT_FIELDS: dict[str, float] = {"pf_w": 0.0, "pf_w2": 0.0, "pf_m": 0.0, "pf_s": 0.0, "pf_ts": -np.inf}


_SERIES_INIT = np.array(list(_SERIES_FIELDS.values()))


_SLOT_INIT = np.array(list(_SLOT_FIELDS.values()))


# The profile kernel spans slots i0-1 .. i0+2 around a time whose bracketing
# slot centres are i0 and i0+1 (fraction f of the way). Linear interpolation
# between the centres, with each centre lending `neighbour_weight` (nu) to its
# neighbours, gives weights [nu(1-f), (1-f)+nu f, f+nu(1-f), nu f] = a + b f.
_KERNEL_OFFSETS = np.arange(-1, 3)[:, None]


# Soft binning of a value into slots i0, i0+1: weights [1-f, f] = a + b f.
_SHARE_A, _SHARE_B = np.array([[1.0], [0.0]]), np.array([[-1.0], [1.0]])


def _incompatible(old: BaselineConfig, new: BaselineConfig) -> str | None:
    """Why learnt state cannot be carried from `old` to `new` settings, or None if it can
    (one profile for every day becomes each day profile's starting point: `_split_days`)."""
    if old.day_profiles == "none" and new.day_profiles != "none":
        old = BaselineConfig(**{**asdict(old), "day_profiles": new.day_profiles})
    for key in ("kind", "slot_s", "timezone", "day_profiles"):
        if getattr(new, key) != getattr(old, key):
            return f"{key} of a learnt baseline cannot change ({getattr(old, key)!r} -> {getattr(new, key)!r})"
    return None


def _ew_welford(w_sum, w2_sum, mean, m2, decay, w, x):
    """Exponentially forgotten, weighted Welford update (West 1979); returns the new four statistics.

    All previous weights are multiplied by `decay`, then `x` enters with weight
    `w`. mean is the weighted mean, m2 / w_sum the weighted variance, and
    w_sum**2 / w2_sum the effective number of observations. Numerically stable
    where E[x^2] - E[x]^2 is not (large counts, small variances).
    """
    w_sum = w_sum * decay + w
    w2_sum = w2_sum * (decay * decay) + w * w
    delta = x - mean
    step = np.divide(w, w_sum, out=np.zeros_like(w_sum), where=w_sum > 0)
    mean = mean + step * delta
    m2 = m2 * decay + w * delta * (x - mean)
    return w_sum, w2_sum, mean, np.maximum(m2, 0.0)


def _ratio(num, den, default: float):
    """num / den where den > 0, else `default` (no warnings, no NaN)."""
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), default)


def learn_noise(nz: np.ndarray, ts, num_x, den_x, w, window_s, half_life_s) -> None:
    """Forget the noise sums (a view: rows nz_num, nz_den, nz_w, nz_n, nz_ts) by their age, then add
    one window's squared excess, its scale, its weight and one observation, in place."""
    decay = np.exp2(-np.maximum(ts - nz[4], window_s) / half_life_s)
    nz[:4] *= decay
    nz[0] += num_x
    nz[1] += den_x
    nz[2] += w
    nz[3] += 1.0
    nz[4] = ts


def pool_slots(cells: np.ndarray, kernel: np.ndarray, ts: np.ndarray, half_life_s) -> tuple:
    """Kernel-pooled profile of gathered slot cells (fields x 4 slots x rows): each slot weighted by its
    kernel weight, forgotten by its age at `ts`. Returns the pooled mean, the variance of that mean,
    the pooled weight and the effective number of observations, per row."""
    pf_w, pf_w2, pf_m, pf_s, pf_ts = cells
    kd = kernel * np.exp2(-np.maximum(ts - pf_ts, 0.0) / half_life_s)
    kw = kd * pf_w
    w_pool = kw.sum(axis=0)
    has = w_pool > 0
    safe_w = np.where(has, w_pool, 1.0)
    mean = (kw * pf_m).sum(axis=0) / safe_w
    m2 = (kd * pf_s + kw * (pf_m - mean) ** 2).sum(axis=0)
    w2 = (kd * kd * pf_w2).sum(axis=0)
    neff = np.where(has, w_pool * w_pool / np.where(w2 > 0, w2, 1.0), 0.0)
    var_mean = np.where(has, m2 / safe_w / np.maximum(neff, 1.0), 0.0)
    return mean, var_mean, w_pool, neff


class SeasonalBaseline:
    """Time-of-day profile x adaptive level, with honest uncertainty, for many series of one signal.

    `update` takes one value per (series, window); `expect` answers for any
    (series, ts). Series indices are dense non-negative ints; the arrays grow to
    the largest index seen. Event time is the only clock.
    """

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self._config = config or BaselineConfig()
        self._set_kernel()
        self._n = 0  # series seen: indices 0 .. _n - 1
        self._series = np.empty((len(_SERIES_FIELDS), 0))
        self._slots = np.empty((len(_SLOT_FIELDS), 0, self._config.n_slots))

    @property
    def config(self) -> BaselineConfig:
        return self._config

    @config.setter
    def config(self, new: BaselineConfig) -> None:
        """Adopt new settings (e.g. a tuned half-life) while keeping the learnt state.

        The kind and slot_s define what the state means, so they cannot change.
        """
        problem = _incompatible(self._config, new)
        if problem:
            raise ValueError(f"{problem}; start a new baseline instead")
        if self._config.day_profiles != new.day_profiles:  # one profile for every day -> per kind of day
            self._slots = np.tile(self._slots, (1, 1, DAY_PROFILES[new.day_profiles]))
        self._config = new
        self._set_kernel()

    def _set_kernel(self) -> None:
        self._calendar = Calendar(self._config.timezone, self._config.day_profiles)
        nu = self._config.neighbour_weight
        self._kern_a = np.array([[nu], [1.0], [nu], [0.0]])
        self._kern_b = np.array([[-nu], [nu - 1.0], [1.0 - nu], [nu]])

    @property
    def n_series(self) -> int:
        return self._n

    # ---------------------------------------------------------------- learning

    def update(self, series_idx, ts, values, weights=None) -> Expectation:
        """Learn one value per row: series `series_idx[i]` had `values[i]` in the window ending at `ts[i]`.

        `ts` is a scalar or an array; `weights` (default 1) say how much a row
        counts, e.g. the number of requests behind an error rate. Rows with
        weight 0 are not learnt (their value may be NaN). Several rows of the
        same series are applied in event-time order.

        Returns, per row, the expectation the value is judged against: the
        one-step-ahead prediction from the state before that row was learnt,
        with the row's weight as in `expect(..., weights=...)` (weight-0 rows:
        the state before this call, at the typical weight). The core can test
        a closed window and learn it in one pass.
        """
        idx, ts_arr, y, w = self._rows(series_idx, ts, values, weights)
        n = len(idx)
        cols = self._blank(n)
        if n == 0:
            return self._finish(cols)
        learn = w > 0
        bad = learn & ~np.isfinite(y)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"baseline values must be finite (got {float(y[i])} for series {int(idx[i])} at "
                             f"ts={float(ts_arr[i])}); give windows without data weight 0 or leave them out")
        if self.config.multiplicative and (learn & (y < 0)).any():
            i = int(np.flatnonzero(learn & (y < 0))[0])
            raise ValueError(f"a {self.config.kind} baseline takes values >= 0 (got {float(y[i])} for series "
                             f"{int(idx[i])}); use kind='additive' for signals that can be negative")
        self._ensure(int(idx.max()) + 1)
        if learn.all():
            rows = None
        else:
            skipped = np.flatnonzero(~learn)
            self._judge_into(cols, skipped, idx[skipped], ts_arr[skipped], None)
            rows = np.flatnonzero(learn)
            idx, ts_arr, y, w = idx[rows], ts_arr[rows], y[rows], w[rows]
            if len(rows) == 0:
                return self._finish(cols)
        # A series may occur several times in one call (a replay closing many
        # windows at once). The recursions are sequential per series, so apply
        # the k-th occurrence of every series in round k: each round is
        # vectorised over distinct series. Live, one call is one round.
        sorted_idx = np.sort(idx)
        if not (sorted_idx[1:] == sorted_idx[:-1]).any():
            self._update_round(cols, np.arange(len(idx)) if rows is None else rows, idx, ts_arr, y, w)
            return self._finish(cols)
        order = np.lexsort((ts_arr, idx))
        idx_sorted = idx[order]
        new_group = np.concatenate(([True], idx_sorted[1:] != idx_sorted[:-1]))
        starts = np.flatnonzero(new_group)
        rank = np.empty(len(idx), dtype=np.int64)
        rank[order] = np.arange(len(idx)) - starts[np.cumsum(new_group) - 1]
        for r in range(int(rank.max()) + 1):
            sel = np.flatnonzero(rank == r)
            self._update_round(cols, sel if rows is None else rows[sel], idx[sel], ts_arr[sel], y[sel], w[sel])
        return self._finish(cols)

    def _update_round(self, cols: dict, pos: np.ndarray, idx: np.ndarray, ts: np.ndarray, y: np.ndarray,
                      w: np.ndarray) -> None:
        """Judge, then learn, one value for each of distinct series `idx`; results go to rows `pos` of `cols`."""
        c = self.config
        g = self._series[:, idx]  # a copy: worked on, then scattered back once
        pred = self._judge_into(cols, pos, idx, ts, w, g)
        yhat, var_mean = pred["yhat"], pred["var_mean"]
        e = y - yhat

        g[_N_OBS] += 1.0
        g[_FIRST_TS] = np.minimum(g[_FIRST_TS], ts)

        # Recent history (fallback): the raw values over the level half-life.
        rw_w, rw_w2, rw_m, rw_s, rw_ts = g[_RW]
        decay = np.exp2(-np.maximum(ts - rw_ts, c.window_s) / c.level_half_life_s)
        g[2], g[3], g[4], g[5] = _ew_welford(rw_w, rw_w2, rw_m, rw_s, decay, w, y)
        g[6] = ts

        # Level against the profile, where the profile has something to say.
        P, L = pred["profile"], pred["level"]
        learn = pred["profile_w"] > 0
        if c.multiplicative:
            learn &= P > 0
            num_x, den_x, sq_x = w * y, w * P, w * (y - L * P) ** 2
        else:
            num_x, den_x, sq_x = w * (y - P), w, w * (y - P - L) ** 2
        learn_level(g[_LV], ts, learn, w, num_x, den_x, sq_x, c.window_s, c.level_half_life_s)

        # Noise: moment estimates from the one-step residual, minus what the
        # uncertainty of the expectation itself explains.
        if c.kind == KIND_COUNT:
            num_x, den_x = e * e - yhat - var_mean, yhat * yhat
        elif c.kind == KIND_SCALE:
            num_x, den_x = e * e - var_mean, yhat * yhat
        else:
            num_x, den_x = w * (e * e - var_mean), 1.0
        learn_noise(g[_NZ], ts, num_x, den_x, w, c.window_s, c.noise_half_life_s)
        self._series[:, idx] = g

        # Profile: split the value between the two nearest slot centres i0 and
        # i0+1 (rows 1 and 2 of the kernel cells, gathered by the prediction;
        # distinct series in a round make them distinct cells).
        prof = pred["slots"]
        flat = prof["flat"][1:3]
        pf_w, pf_w2, pf_m, pf_s, pf_ts = prof["cells"][:, 1:3]
        share = _SHARE_A + _SHARE_B * prof["frac"]
        decay = np.exp2(-np.maximum(ts - pf_ts, 0.0) / c.profile_half_life_s)
        slots = self._slots.reshape(len(_SLOT_FIELDS), -1)
        slots[:4, flat] = np.stack(_ew_welford(pf_w, pf_w2, pf_m, pf_s, decay, w * share, y))
        slots[4, flat] = ts

    # -------------------------------------------------------------- expecting

    def expect(self, series_idx, ts, weights=None) -> Expectation:
        """Expected value and uncertainty for each (series, ts); see `Expectation`.

        `weights` (additive kind only) is the weight of the window to be judged,
        e.g. its request count: the noise of a rate shrinks as 1 / weight (and
        is infinite at weight 0). By default the series' typical weight is used.
        Nothing is learnt; unknown series get the never-seen answer.
        """
        idx, ts_arr, _, w = self._rows(series_idx, ts, None, weights)
        cols = self._blank(len(idx))
        known = np.flatnonzero(idx < self._n)
        if len(known):
            self._judge_into(cols, known, idx[known], ts_arr[known], None if weights is None else w[known])
        return self._finish(cols)

    @staticmethod
    def _blank(n: int) -> dict:
        """Output columns for n rows, as for series never seen."""
        return {"mean": np.full(n, np.nan), "std": np.full(n, np.inf), "mean_std": np.full(n, np.inf),
                "n_obs": np.zeros(n, dtype=np.int64), "history_s": np.zeros(n),
                "ready": np.zeros(n, dtype=bool), "seasonal": np.zeros(n, dtype=bool)}

    def _judge_into(self, cols: dict, pos, idx, ts, w_eval, g=None) -> dict:
        """Predict for known series `idx` and write the stated expectation into rows `pos` of `cols`."""
        c = self.config
        if g is None:
            g = self._series[:, idx]
        pred = self._predict(g, idx, ts, w_eval)
        inflate = np.where(pred["seasonal"], 1.0, c.fallback_std_factor)
        n_obs = g[_N_OBS]
        # One value says nothing about spread: no honest std before two.
        few = n_obs < 2
        cols["mean"][pos] = np.where(n_obs > 0, pred["yhat"], np.nan)
        cols["std"][pos] = np.where(
            few, np.inf, np.maximum(np.sqrt(pred["var_noise"] + pred["var_mean"]) * inflate, c.min_std))
        cols["mean_std"][pos] = np.where(few, np.inf, np.sqrt(pred["var_mean"]) * inflate)
        cols["n_obs"][pos] = n_obs
        cols["history_s"][pos] = np.where(n_obs > 0, ts - g[_FIRST_TS], 0.0)
        cols["ready"][pos] = pred["ready"]
        cols["seasonal"][pos] = pred["seasonal"]
        return pred

    def _finish(self, cols: dict) -> Expectation:
        mean, std = cols["mean"], cols["std"]
        if self.config.kind == KIND_COUNT:
            with np.errstate(invalid="ignore", divide="ignore"):
                dispersion = np.where(mean > 0, np.maximum((std * std - mean) / (mean * mean), 0.0), np.nan)
        else:
            dispersion = np.full(len(mean), np.nan)
        return Expectation(dispersion=dispersion, **cols)

    def _slot_cells(self, idx: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The flat cells of slots i0-1 .. i0+2 around each time (local time: the kernel stays within a
        day's profile), their gathered state and each time's fraction between the centres of i0 and i0+1."""
        c = self.config
        profile, tod = self._calendar.split(ts)
        pos = tod / c.slot_s - 0.5  # in slot units, 0 at the centre of slot 0
        floor = np.floor(pos)
        frac = pos - floor
        spd = c.slots_per_day
        flat = idx * c.n_slots + profile * spd + (floor.astype(np.int64) + _KERNEL_OFFSETS) % spd
        return flat, self._slots.reshape(len(_SLOT_FIELDS), -1)[:, flat], frac

    def _profile(self, idx: np.ndarray, ts: np.ndarray) -> dict:
        """Pooled profile at `ts`: mean, variance of that mean, pooled weight, effective observations.

        Also returns the flat cells of slots i0-1 .. i0+2 and their gathered
        state, so that an update can reuse them for the cells i0 and i0+1.
        """
        flat, cells, frac = self._slot_cells(idx, ts)
        mean, var_mean, w_pool, neff = pool_slots(cells, self._kern_a + self._kern_b * frac, ts,
                                                  self.config.profile_half_life_s)
        return {"mean": mean, "var_mean": var_mean, "w": w_pool, "neff": neff, "frac": frac,
                "flat": flat, "cells": cells}

    def _predict(self, g: np.ndarray, idx: np.ndarray, ts: np.ndarray, w_eval: np.ndarray | None) -> dict:
        """Seasonal and fallback predictions, uninflated, for known series `idx` (state columns `g`)."""
        c = self.config
        prof = self._profile(idx, ts)
        P, var_P, w_pool, neff_P = prof["mean"], prof["var_mean"], prof["w"], prof["neff"]

        lv_num, lv_den, lv_sq, lv_w, lv_w2, _ = g[_LV]
        if c.multiplicative:
            L = _ratio(lv_num, lv_den, 1.0)
        else:
            L = _ratio(lv_num, lv_w, 0.0)
        # Variance of a weighted mean over the effective number of recent
        # observations; for the ratio estimator, scaled by the mean profile.
        var_L = _ratio(lv_sq, lv_w, 0.0) / np.maximum(_ratio(lv_w * lv_w, lv_w2, 1.0), 1.0)
        if c.multiplicative:
            den_avg = _ratio(lv_den, lv_w, 0.0)
            var_L = _ratio(var_L, den_avg * den_avg, 0.0)
            yhat_s = P * L
            var_mean_s = L * L * var_P + P * P * var_L
        else:
            yhat_s = P + L
            var_mean_s = var_P + var_L

        rw_w, rw_w2, rw_m, rw_s, _ = g[_RW]
        raw_var = _ratio(rw_s, rw_w, 0.0)
        neff_raw = np.maximum(_ratio(rw_w * rw_w, rw_w2, 1.0), 1.0)

        n_obs = g[_N_OBS]
        history = ts - g[_FIRST_TS]
        ready = (n_obs >= max(c.min_obs, 1)) & (history >= c.min_history_s)
        seasonal = (ready & (w_pool > 0) & (neff_P >= c.min_slot_obs)
                    & (history >= c.seasonal_min_days * DAY_S))
        out = {
            "yhat": np.where(seasonal, yhat_s, rw_m),
            "var_mean": np.where(seasonal, var_mean_s, raw_var / neff_raw),
            "ready": ready, "seasonal": seasonal,
            "profile": P, "profile_w": w_pool, "level": L, "slots": prof,
        }
        out["var_noise"] = self._noise_var(g, out["yhat"], np.where(seasonal, neff_P, neff_raw),
                                           raw_var, seasonal, w_eval)
        return out

    def _noise_var(self, g, yhat, neff, raw_var, seasonal, w_eval) -> np.ndarray:
        c = self.config
        nz_num, nz_den, nz_w, nz_n, _ = g[_NZ]
        coef = np.maximum(_ratio(nz_num, nz_den, 0.0), 0.0)
        if c.kind == KIND_COUNT:
            # Jeffreys floor: a count never seen in n windows has a rate of
            # order 1/n, not exactly 0, so a first event is surprising, not impossible.
            model = np.maximum(yhat, 0.5 / np.maximum(neff, 1.0)) + coef * yhat * yhat
        elif c.kind == KIND_SCALE:
            model = coef * yhat * yhat
        else:
            # A window with weight 0 (no requests behind the rate) has no finite spread.
            weight = _ratio(nz_w, nz_n, 1.0) if w_eval is None else w_eval
            model = _ratio(coef, weight, np.inf)
        model = np.where(nz_den > 0, model, raw_var)
        # The fallback never claims less spread than the recent values showed.
        return np.where(seasonal, model, np.maximum(model, raw_var))

    # ------------------------------------------------------------- plumbing

    def _rows(self, series_idx, ts, values, weights):
        idx = np.asarray(series_idx)
        if idx.ndim != 1 or (len(idx) and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"series_idx must be a 1-d array of ints (got dtype={idx.dtype}, shape={idx.shape})")
        idx = idx.astype(np.int64, copy=False)
        if len(idx) and idx.min() < 0:
            raise ValueError(f"series_idx must be >= 0 (got {int(idx.min())})")
        n = len(idx)
        ts_arr = np.asarray(ts, dtype=np.float64)
        if ts_arr.shape not in ((), (n,)):
            raise ValueError(f"ts must be one number or one per series_idx (got shape {ts_arr.shape} for {n} rows)")
        ts_arr = np.broadcast_to(ts_arr, (n,))
        if not np.isfinite(ts_arr).all():
            raise ValueError("ts must be finite event times in seconds (got a NaN or inf)")
        y = None
        if values is not None:
            y = np.asarray(values, dtype=np.float64)
            if y.shape != (n,):
                raise ValueError(f"values must have one entry per series_idx (got shape {y.shape} for {n} rows)")
        if weights is None:
            w = np.ones(n)
        else:
            w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (n,))
            if not (np.isfinite(w).all() and (w >= 0).all()):
                raise ValueError("weights must be finite and >= 0 (0 means: ignore this row)")
        return idx, ts_arr, y, w

    def _ensure(self, n: int) -> None:
        """Grow the state to hold series 0 .. n-1 (capacity doubles, so growth is amortised)."""
        if n <= self._n:
            return
        cap = self._series.shape[1]
        if n > cap:
            new_cap = max(n, 2 * cap, 64)
            series = np.empty((len(_SERIES_FIELDS), new_cap))
            series[:] = _SERIES_INIT[:, None]
            series[:, :cap] = self._series
            slots = np.empty((len(_SLOT_FIELDS), new_cap, self.config.n_slots))
            slots[:] = _SLOT_INIT[:, None, None]
            slots[:, :cap] = self._slots
            self._series, self._slots = series, slots
        self._n = n

    # ------------------------------------------------------------ snapshots

    def _header(self) -> dict:
        return {"format": _BASELINE_FORMAT, "version": FORMAT_VERSION, "config": asdict(self.config),
                "n_series": self._n}

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {prefix + k: self._series[i, : self._n] for i, k in enumerate(_SERIES_FIELDS)}
        out.update({prefix + k: self._slots[i, : self._n] for i, k in enumerate(_SLOT_FIELDS)})
        return out

    @classmethod
    def _from_parts(cls, config: BaselineConfig, n_series: int, arrays: Mapping[str, np.ndarray],
                    prefix: str, source: str) -> "SeasonalBaseline":
        baseline = cls(config)
        baseline._ensure(n_series)
        for store, names, shape in ((baseline._series, _SERIES_FIELDS, (n_series,)),
                                    (baseline._slots, _SLOT_FIELDS, (n_series, config.n_slots))):
            for i, k in enumerate(names):
                a = arrays.get(prefix + k)
                if a is None or a.shape != shape or a.dtype != np.float64:
                    got = "missing" if a is None else f"{a.dtype}{a.shape}"
                    raise BaselineFormatError(f"{source}: array {prefix + k!r} should be float64{shape}, "
                                              f"got {got}; the file is damaged: delete it to start cold")
                store[i, :n_series] = a
        return baseline

    def to_bytes(self) -> bytes:
        """The whole state as bytes (a numpy .npz archive with a JSON header; no pickle)."""
        return _write_npz(self._header(), self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> "SeasonalBaseline":
        """Restore from `to_bytes` output; errors name `source` (e.g. the file it came from)."""
        header, arrays = _read_npz(data, source, _BASELINE_FORMAT)
        return cls._from_parts(_config_from(header.get("config"), source), _n_series_from(header, source),
                               arrays, "", source)

    def save(self, path: str | os.PathLike) -> None:
        """Write the snapshot to `path` atomically (a reader never sees half a file)."""
        _atomic_write(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SeasonalBaseline":
        return cls.from_bytes(_read_file(Path(path)), str(path))


def _config_from(raw, source: str) -> BaselineConfig:
    known = {f.name for f in fields(BaselineConfig)}
    if not isinstance(raw, dict) or set(raw) - known:
        extra = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise BaselineFormatError(f"{source}: baseline config has unknown or malformed entries ({extra!r})")
    try:
        return BaselineConfig(**raw)
    except (TypeError, ValueError) as e:
        raise BaselineFormatError(f"{source}: invalid baseline config: {e}") from None


def _n_series_from(header: dict, source: str) -> int:
    n = header.get("n_series")
    if not (isinstance(n, int) and n >= 0):
        raise BaselineFormatError(f"{source}: n_series should be an int >= 0, got {n!r}")
    return n


def learn_level(lv: np.ndarray, ts: np.ndarray, learn: np.ndarray, w: np.ndarray, num_x: np.ndarray,
                den_x: np.ndarray, sq_x: np.ndarray, window_s: float, level_half_life_s) -> None:
    """Decay the level moments `lv` (a view: rows lv_num, lv_den, lv_sq, lv_w, lv_w2, lv_ts) to `ts`
    and add this window's, in place; rows that do not learn keep their level as it was."""
    decay = np.exp2(-np.maximum(ts - lv[5], window_s) / level_half_life_s)
    decay = np.where(learn, decay, 1.0)
    learn_w = np.where(learn, w, 0.0)
    lv[0] = lv[0] * decay + np.where(learn, num_x, 0.0)
    lv[1] = lv[1] * decay + np.where(learn, den_x, 0.0)
    lv[2] = lv[2] * decay + np.where(learn, sq_x, 0.0)
    lv[3] = lv[3] * decay + learn_w
    lv[4] = lv[4] * decay * decay + learn_w * learn_w
    lv[5] = np.where(learn, ts, lv[5])
