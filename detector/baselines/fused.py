"""One closed window's updates of several signals of a bank, in one vectorised step.

`SeasonalBaseline.update` is vectorised over the series of one signal; a
closed window updates four signals (volume, error rate, transactions, a
latency quantile) of a handful of services, so four calls of a few rows each
cost four times numpy's per-call overhead for the same arithmetic. Here the
rows of every signal are stacked into one set of columns, with each row's
settings (kind, half-lives, thresholds) as columns too, and the prediction
and the learning of `SeasonalBaseline._update_round` run once over all of them.

The arithmetic is the model's, operation for operation, with the kinds'
branches selected per row (`np.where`): each row's result is bit for bit what
`update` returns and learns (a test holds the two paths equal, state and
expectations). The time -> slot mapping and the gather of the profile cells
stay per signal (each has its own calendar and slot array); the pooling of
the cells (`SeasonalBaseline._profile`) runs once over every row, each with
its signal's kernel; the profile's learning writes each signal's own slot
array. The per-row settings of a layout (which signals, how many rows each)
are built once and kept.

Rows of weight 0 (a service under verification) are judged at the series'
typical weight and not learnt, as `update` does. Only the plain case is
fused: every value that is learnt is valid for its kind, no series twice in
a signal. Anything else goes through `update`, which also raises its
precise errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from detector.baselines.model import SeasonalBaseline
from detector.baselines.recursions import (_FIRST_TS, _LV, _N_OBS, _NZ, _RW, _SHARE_A, _SHARE_B, _SLOT_FIELDS,
                                           _ew_welford, _ratio, learn_level, learn_noise, pool_slots)
from detector.baselines.settings import DAY_S, KIND_ADDITIVE, KIND_COUNT, KIND_SCALE, Expectation

Rows = tuple[np.ndarray, float, np.ndarray, np.ndarray]  # series index, window start, values, weights


def _plain(b: SeasonalBaseline, idx: np.ndarray, y: np.ndarray, w: np.ndarray) -> bool:
    """True when `update` would take the single-round path and raise no error."""
    if not len(idx):
        return False
    if not (np.isfinite(w).all() and (w >= 0).all()):
        return False
    learn = w > 0
    if not np.isfinite(y[learn]).all() or (b.config.multiplicative and (y[learn] < 0).any()):
        return False
    s = np.sort(idx)
    return bool(s[0] >= 0 and not (s[1:] == s[:-1]).any())


def update_signals(baselines: Sequence[SeasonalBaseline], rows: Sequence[Rows]) -> list[Expectation]:
    """`[b.update(idx, ts, y, weights=w) for b, (idx, ts, y, w) in zip(baselines, rows)]`, fused.

    Same results and same learnt state as those calls; falls back to them
    unless every signal's rows are plain (see the module docstring).
    """
    prepared = []
    for b, (idx, ts, y, w) in zip(baselines, rows):
        idx = np.asarray(idx, dtype=np.int64)
        y = np.asarray(y, dtype=np.float64)
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), idx.shape)
        if not (np.isfinite(ts) and _plain(b, idx, y, w)) or len(baselines) != len(rows):
            return [b.update(i, t, v, weights=ww) for b, (i, t, v, ww) in zip(baselines, rows)]
        prepared.append((b, idx, y, w))
    if not prepared:
        return []
    return _fused([p[0] for p in prepared], [p[1] for p in prepared], [r[1] for r in rows],
                  [p[2] for p in prepared], [p[3] for p in prepared])


class _RowSettings(NamedTuple):
    """Each row's settings as columns, for one (configs, rows per signal) layout."""

    bounds: np.ndarray
    mult: np.ndarray
    is_count: np.ndarray
    is_scale: np.ndarray
    window_s: np.ndarray
    level_hl: np.ndarray
    noise_hl: np.ndarray
    min_obs: np.ndarray
    min_hist: np.ndarray
    min_slot: np.ndarray
    season_hist: np.ndarray
    fallback: np.ndarray
    min_std: np.ndarray
    profile_hl: np.ndarray
    kern_a: np.ndarray  # [4, rows]: each row's signal's soft-binning kernel (SeasonalBaseline._set_kernel)
    kern_b: np.ndarray


# A watch updates the same signals with the same number of rows window after window: their
# settings columns are built once per layout. Keyed by the configs' ids; each entry holds its
# configs, so no id is reused while it is cached. Read only.
_LAYOUTS: dict[tuple, tuple[tuple, _RowSettings]] = {}
_MAX_LAYOUTS = 256


def _row_settings(bs: list[SeasonalBaseline], sizes: list[int]) -> _RowSettings:
    cfgs = [b.config for b in bs]
    key = (tuple(map(id, cfgs)), tuple(sizes))
    hit = _LAYOUTS.get(key)
    if hit is not None:
        return hit[1]

    def per_row(values) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=np.float64), sizes)

    kind = np.repeat(np.asarray([c.kind for c in cfgs]), sizes)
    rows = _RowSettings(
        bounds=np.cumsum([0] + sizes), mult=kind != KIND_ADDITIVE, is_count=kind == KIND_COUNT,
        is_scale=kind == KIND_SCALE,
        window_s=per_row([c.window_s for c in cfgs]),
        level_hl=per_row([c.level_half_life_s for c in cfgs]),
        noise_hl=per_row([c.noise_half_life_s for c in cfgs]),
        min_obs=per_row([max(c.min_obs, 1) for c in cfgs]),
        min_hist=per_row([c.min_history_s for c in cfgs]),
        min_slot=per_row([c.min_slot_obs for c in cfgs]),
        season_hist=per_row([c.seasonal_min_days * DAY_S for c in cfgs]),
        fallback=per_row([c.fallback_std_factor for c in cfgs]),
        min_std=per_row([c.min_std for c in cfgs]),
        profile_hl=per_row([c.profile_half_life_s for c in cfgs]),
        # the kernel is the config's (neighbour_weight), so any baseline of that config gives the same
        kern_a=np.concatenate([np.repeat(b._kern_a, k, axis=1) for b, k in zip(bs, sizes)], axis=1),
        kern_b=np.concatenate([np.repeat(b._kern_b, k, axis=1) for b, k in zip(bs, sizes)], axis=1))
    for a in rows:
        a.flags.writeable = False
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (tuple(cfgs), rows)
    return rows


def _profiles(bs, idxs, ts: np.ndarray, rs: _RowSettings) -> tuple:
    """`SeasonalBaseline._profile` of every signal's rows, its arithmetic run once over all of them.

    The time -> slot mapping and the gather of each signal's own slot cells
    are per signal; the pooling that follows is the same operations on the
    stacked cells, each row with its signal's kernel and half-life.
    Returns the per-signal (flat, cells, frac) the profile's learning needs,
    then the pooled mean, variance of the mean, weight and effective observations.
    """
    parts = []
    bounds = rs.bounds
    for b, idx, lo, hi in zip(bs, idxs, bounds[:-1], bounds[1:]):
        flat, cells, frac = b._slot_cells(idx, ts[lo:hi])
        parts.append({"flat": flat, "cells": cells, "frac": frac})
    frac = np.concatenate([p["frac"] for p in parts])
    mean, var_mean, w_pool, neff = pool_slots(np.concatenate([p["cells"] for p in parts], axis=2),
                                              rs.kern_a + rs.kern_b * frac, ts, rs.profile_hl)
    return parts, mean, var_mean, w_pool, neff


def _fused(bs, idxs, tss, ys, ws) -> list[Expectation]:
    sizes = [len(i) for i in idxs]
    rs = _row_settings(bs, sizes)
    (bounds, mult, is_count, is_scale, window_s, level_hl, noise_hl, min_obs, min_hist, min_slot, season_hist,
     fallback, min_std) = rs[:13]
    ts = np.repeat(np.asarray(tss, dtype=np.float64), sizes)
    y = np.concatenate(ys)
    w = np.concatenate(ws)

    for b, idx in zip(bs, idxs):
        b._ensure(int(idx.max()) + 1)
    g = np.concatenate([b._series[:, idx] for b, idx in zip(bs, idxs)], axis=1)
    profs, P, var_P, w_pool, neff_P = _profiles(bs, idxs, ts, rs)

    with np.errstate(all="ignore"):  # a kind's branch computed on another kind's rows is thrown away
        # --- SeasonalBaseline._predict
        lv_num, lv_den, lv_sq, lv_w, lv_w2, _ = g[_LV]
        L = np.where(mult, _ratio(lv_num, lv_den, 1.0), _ratio(lv_num, lv_w, 0.0))
        var_L = _ratio(lv_sq, lv_w, 0.0) / np.maximum(_ratio(lv_w * lv_w, lv_w2, 1.0), 1.0)
        den_avg = _ratio(lv_den, lv_w, 0.0)
        var_L = np.where(mult, _ratio(var_L, den_avg * den_avg, 0.0), var_L)
        yhat_s = np.where(mult, P * L, P + L)
        var_mean_s = np.where(mult, L * L * var_P + P * P * var_L, var_P + var_L)
        rw_w, rw_w2, rw_m, rw_s, _ = g[_RW]
        raw_var = _ratio(rw_s, rw_w, 0.0)
        neff_raw = np.maximum(_ratio(rw_w * rw_w, rw_w2, 1.0), 1.0)
        n_obs = g[_N_OBS]
        history = ts - g[_FIRST_TS]
        ready = (n_obs >= min_obs) & (history >= min_hist)
        seasonal = ready & (w_pool > 0) & (neff_P >= min_slot) & (history >= season_hist)
        yhat = np.where(seasonal, yhat_s, rw_m)
        var_mean = np.where(seasonal, var_mean_s, raw_var / neff_raw)
        # --- SeasonalBaseline._noise_var (the weight judged is the row's own)
        neff = np.where(seasonal, neff_P, neff_raw)
        nz_num, nz_den, nz_w, nz_n, _ = g[_NZ]
        coef = np.maximum(_ratio(nz_num, nz_den, 0.0), 0.0)
        learns = w > 0
        weight = np.where(learns, w, _ratio(nz_w, nz_n, 1.0))  # rows not learnt: the typical weight
        model = np.where(is_count, np.maximum(yhat, 0.5 / np.maximum(neff, 1.0)) + coef * yhat * yhat,
                         np.where(is_scale, coef * yhat * yhat, _ratio(coef, weight, np.inf)))
        model = np.where(nz_den > 0, model, raw_var)
        var_noise = np.where(seasonal, model, np.maximum(model, raw_var))
        # --- SeasonalBaseline._judge_into
        inflate = np.where(seasonal, 1.0, fallback)
        few = n_obs < 2
        cols = {"mean": np.where(n_obs > 0, yhat, np.nan),
                "std": np.where(few, np.inf, np.maximum(np.sqrt(var_noise + var_mean) * inflate, min_std)),
                "mean_std": np.where(few, np.inf, np.sqrt(var_mean) * inflate),
                "n_obs": n_obs.astype(np.int64),
                "history_s": np.where(n_obs > 0, ts - g[_FIRST_TS], 0.0),
                "ready": ready, "seasonal": seasonal}

        # --- SeasonalBaseline._update_round
        e = y - yhat
        g[_N_OBS] += 1.0
        g[_FIRST_TS] = np.minimum(g[_FIRST_TS], ts)
        rw_w, rw_w2, rw_m, rw_s, rw_ts = g[_RW]
        decay = np.exp2(-np.maximum(ts - rw_ts, window_s) / level_hl)
        g[2], g[3], g[4], g[5] = _ew_welford(rw_w, rw_w2, rw_m, rw_s, decay, w, y)
        g[6] = ts
        learn = (w_pool > 0) & (~mult | (P > 0))
        num_x = np.where(mult, w * y, w * (y - P))
        den_x = np.where(mult, w * P, w)
        sq_x = np.where(mult, w * (y - L * P) ** 2, w * (y - P - L) ** 2)
        learn_level(g[_LV], ts, learn, w, num_x, den_x, sq_x, window_s, level_hl)
        num_x = np.where(is_count, e * e - yhat - var_mean, np.where(is_scale, e * e - var_mean, w * (e * e - var_mean)))
        den_x = np.where(mult, yhat * yhat, 1.0)
        learn_noise(g[_NZ], ts, num_x, den_x, w, window_s, noise_hl)

    out = []
    for k, (b, idx, prof) in enumerate(zip(bs, idxs, profs)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        out.append(b._finish({name: col[lo:hi] for name, col in cols.items()}))
        keep = np.flatnonzero(learns[lo:hi])
        if not len(keep):
            continue
        b._series[:, idx[keep]] = g[:, lo:hi][:, keep]
        # the profile's learning, per signal: each writes its own slot array
        t, yk, wk = ts[lo:hi][keep], y[lo:hi][keep], w[lo:hi][keep]
        flat = prof["flat"][1:3][:, keep]
        pf_w, pf_w2, pf_m, pf_s, pf_ts = prof["cells"][:, 1:3][:, :, keep]
        share = _SHARE_A + _SHARE_B * prof["frac"][keep]
        decay = np.exp2(-np.maximum(t - pf_ts, 0.0) / b.config.profile_half_life_s)
        slots = b._slots.reshape(len(_SLOT_FIELDS), -1)
        slots[:4, flat] = np.stack(_ew_welford(pf_w, pf_w2, pf_m, pf_s, decay, wk * share, yk))
        slots[4, flat] = t
    return out
