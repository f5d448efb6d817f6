"""The state layout of a seasonal baseline and its vectorised recursions.

Per-series and per-slot state are rows of float arrays (`_SERIES_FIELDS`,
`_SLOT_FIELDS`); the recursions update whole columns of them at once: the
exponentially forgotten weighted Welford update (`_ew_welford`), the level
(`learn_level`) and noise (`learn_noise`) moments, and the kernel pooling of
time-of-day slots (`pool_slots`). `SeasonalBaseline` and the fused
multi-signal step (`fused`) both call them, so they do the same arithmetic.

The hot path is vectorised over series. river's statistics (`EWMean`,
`EWVar`) are per-object and per-value: driving one object per series from a
Python loop costs a call per series per window, cannot apply the elapsed-time
decay used here (river fades per update, not per second), and cannot be
snapshotted without pickle. The exponentially forgotten Welford update below
is the same statistic in array form; the tests check it against river's
`EWMean` / `EWVar` as an oracle.
"""

from __future__ import annotations

import numpy as np


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
