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
expectations). The time -> slot mapping is computed once per signal's
window start (its rows share it) and the gather of the profile cells stays
per signal (each has its own calendar and slot array); the pooling of the
cells (`SeasonalBaseline._profile`) and the profile's learning run once over
every row, each with its signal's kernel and half-life, and each signal
writes its own slot array. The per-row settings of a layout (which signals,
how many rows each) are built once and kept.

Rows of weight 0 (a service under verification) are judged at the series'
typical weight and not learnt, as `update` does. Only the plain case is
fused: every value that is learnt is valid for its kind, no series twice in
a signal. Anything else goes through `update`, which also raises its
precise errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from detector.baselines.model import SeasonalBaseline
from detector.baselines.recursions import (_FIRST_TS, _KERNEL_OFFSETS, _LV, _N_OBS, _NZ, _RW, _SHARE_A, _SHARE_B,
                                           _SLOT_FIELDS, _ew_welford, _ratio, learn_level, learn_noise, pool_slots)
from detector.baselines.settings import DAY_S, KIND_ADDITIVE, KIND_COUNT, KIND_SCALE, Expectation

Rows = tuple[np.ndarray, float, np.ndarray, np.ndarray]  # series index, window start, values, weights


def update_signals(baselines: Sequence[SeasonalBaseline], rows: Sequence[Rows]) -> list[Expectation]:
    """`[b.update(idx, ts, y, weights=w) for b, (idx, ts, y, w) in zip(baselines, rows)]`, fused.

    Same results and same learnt state as those calls; falls back to them
    unless every signal's rows are plain (see the module docstring).
    """
    def one_by_one() -> list[Expectation]:
        return [b.update(i, t, v, weights=ww) for b, (i, t, v, ww) in zip(baselines, rows)]

    if not len(baselines) or not len(rows):
        return []
    if len(baselines) != len(rows):
        return one_by_one()
    idxs, ys, ws = [], [], []
    for idx, ts, y, w in rows:
        idx = np.asarray(idx, dtype=np.int64)
        w = np.asarray(w, dtype=np.float64)
        if w.shape != idx.shape:
            w = np.broadcast_to(w, idx.shape)
        if not len(idx) or not math.isfinite(ts):
            return one_by_one()
        idxs.append(idx)
        ys.append(np.asarray(y, dtype=np.float64))
        ws.append(w)
    rs = _row_settings(list(baselines), [len(i) for i in idxs])
    idx, y, w = np.concatenate(idxs), np.concatenate(ys), np.concatenate(ws)
    if not _plain(rs, idx, y, w):
        return one_by_one()
    return _fused(list(baselines), idxs, [r[1] for r in rows], rs, y, w)


def _plain(rs: "_RowSettings", idx: np.ndarray, y: np.ndarray, w: np.ndarray) -> bool:
    """True when `update` would take the single-round path and raise no error, for every
    signal's rows (stacked: each row's signal and kind from the layout)."""
    if not (np.isfinite(w).all() and (w >= 0).all()):
        return False
    learn = w > 0
    if not np.isfinite(y[learn]).all() or (y[learn & rs.mult] < 0).any():
        return False
    if idx.min() < 0:
        return False
    s = np.sort(rs.signal * (int(idx.max()) + 1) + idx)  # one series twice in a signal: not plain
    return not (s[1:] == s[:-1]).any()


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
    signal: np.ndarray  # each row's position among the signals


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
        kern_b=np.concatenate([np.repeat(b._kern_b, k, axis=1) for b, k in zip(bs, sizes)], axis=1),
        signal=np.repeat(np.arange(len(sizes), dtype=np.int64), sizes))
    for a in rows:
        a.flags.writeable = False
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (tuple(cfgs), rows)
    return rows


def _slot_map(b: SeasonalBaseline, t: float, memo: dict) -> tuple[np.ndarray, np.ndarray]:
    """`SeasonalBaseline._slot_cells`' time -> slot arithmetic for one time `t` (a signal's rows
    share their window start), on an array of one: the four cells' offsets within a series'
    slots [4, 1] and the fraction between the centres [1]. Element-wise arithmetic, so each
    row's flat cells and fraction are the ones `_slot_cells` computes on the repeated time;
    signals of the same calendar and slot width share one answer (`memo`)."""
    c = b.config
    key = (c.timezone, c.day_profiles, c.slot_s, t)
    hit = memo.get(key)
    if hit is None:
        profile, tod = b._calendar.split(np.array([t], dtype=np.float64))
        pos = tod / c.slot_s - 0.5  # in slot units, 0 at the centre of slot 0
        floor = np.floor(pos)
        spd = c.slots_per_day
        hit = memo[key] = (profile * spd + (floor.astype(np.int64) + _KERNEL_OFFSETS) % spd, pos - floor)
    return hit


def _profiles(bs, idxs, tss, ts: np.ndarray, rs: _RowSettings) -> tuple:
    """`SeasonalBaseline._profile` of every signal's rows, its arithmetic run once over all of them.

    The time -> slot mapping is computed once per signal's window start (`_slot_map`), the
    gather of each signal's own slot cells per signal; the pooling that follows is the
    same operations on the stacked cells, each row with its signal's kernel and half-life.
    Returns each signal's flat cells and all rows' stacked cells and fractions (the
    profile's learning needs them), then the pooled mean, variance of the mean, weight
    and effective observations.
    """
    flats, cells, fracs, memo = [], [], [], {}
    for b, idx, t in zip(bs, idxs, tss):
        offsets, frac = _slot_map(b, float(t), memo)
        flat = idx * b.config.n_slots + offsets  # [4, rows]: slots i0-1 .. i0+2 of each row's series
        flats.append(flat)
        cells.append(b._slots.reshape(len(_SLOT_FIELDS), -1)[:, flat])
        fracs.append(frac)
    frac = np.repeat(np.concatenate(fracs), rs.bounds[1:] - rs.bounds[:-1])
    cells = np.concatenate(cells, axis=2)
    mean, var_mean, w_pool, neff = pool_slots(cells, rs.kern_a + rs.kern_b * frac, ts, rs.profile_hl)
    return flats, cells, frac, mean, var_mean, w_pool, neff


def _fused(bs, idxs, tss, rs: _RowSettings, y: np.ndarray, w: np.ndarray) -> list[Expectation]:
    (bounds, mult, is_count, is_scale, window_s, level_hl, noise_hl, min_obs, min_hist, min_slot, season_hist,
     fallback, min_std) = rs[:13]
    ts = np.repeat(np.asarray(tss, dtype=np.float64), bounds[1:] - bounds[:-1])

    for b, idx in zip(bs, idxs):
        b._ensure(int(idx.max()) + 1)
    g = np.concatenate([b._series[:, idx] for b, idx in zip(bs, idxs)], axis=1)
    flats, cells, frac, P, var_P, w_pool, neff_P = _profiles(bs, idxs, tss, ts, rs)

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

    # the profile's learning of every learning row at once (element-wise: as signal by signal),
    # then each signal writes its own slot array
    keep = np.flatnonzero(learns)
    t, yk, wk = ts[keep], y[keep], w[keep]
    pf_w, pf_w2, pf_m, pf_s, pf_ts = cells[:, 1:3][:, :, keep]
    share = _SHARE_A + _SHARE_B * frac[keep]
    decay = np.exp2(-np.maximum(t - pf_ts, 0.0) / rs.profile_hl[keep])
    learnt = np.stack(_ew_welford(pf_w, pf_w2, pf_m, pf_s, decay, wk * share, yk))
    cut = np.searchsorted(keep, bounds)  # each signal's learning rows in `keep`
    out = []
    for k, (b, idx, flat) in enumerate(zip(bs, idxs, flats)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        out.append(b._finish({name: col[lo:hi] for name, col in cols.items()}))
        a, z = int(cut[k]), int(cut[k + 1])
        if a == z:
            continue
        mine = keep[a:z] - lo
        b._series[:, idx[mine]] = g[:, lo:hi][:, mine]
        flat = flat[1:3][:, mine]
        slots = b._slots.reshape(len(_SLOT_FIELDS), -1)
        slots[:4, flat] = learnt[:, :, a:z]
        slots[4, flat] = t[a:z]
    return out
