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


The baseline learns from every value it is given. Windows the judge considers
anomalous (an incident, a deploy under verification) should be passed with
weight 0 or left out, so an incident does not become the new normal.

Here: `SeasonalBaseline` (learning and expecting). Its settings and answer
(`BaselineConfig`, `Expectation`) are in `settings`, the state layout and the
vectorised recursions it shares with the fused step in `recursions`, and
saving and restoring it in `snapshots`.
"""

from __future__ import annotations

import numpy as np

from detector.baselines.calendar import DAY_PROFILES, Calendar
from detector.baselines.recursions import (_FIRST_TS, _KERNEL_OFFSETS, _LV, _N_OBS, _NZ, _RW, _SERIES_FIELDS,
                                           _SERIES_INIT, _SHARE_A, _SHARE_B, _SLOT_FIELDS, _SLOT_INIT, _ew_welford,
                                           _ratio, learn_level, learn_noise, pool_slots)
from detector.baselines.settings import DAY_S, KIND_COUNT, KIND_SCALE, BaselineConfig, Expectation, _incompatible
from detector.baselines.snapshots import BaselineSnapshots


class SeasonalBaseline(BaselineSnapshots):
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
