"""The fused multi-signal step (`fused._fused`) for a few rows, in plain Python floats.

A quiet partition closes a window with a few services: four signals of six
services are 24 rows, and the array step's ~100 numpy operations on arrays of
24 cost far more than the arithmetic. Here the same operations run row by row
on Python floats, in the same order, with the same roundings:

- +, -, *, / and sqrt are IEEE double operations in both (no fused
  multiply-add); `x ** 2` of an array is numpy's square, `x * x` here; a
  product of three is evaluated left to right in both;
- the sums over a row's four profile cells are sequential, as numpy's
  reduction over the first axis of a (4, rows) array is;
- `np.maximum` / `np.minimum` are `_max` / `_min` below (NaN wins; on a tie
  the second argument, which only matters for the sign of a zero);
- every `exp2` (the decays) is still numpy's, one call over all of them, so
  the values are numpy's whatever libm the platform has;
- `np.where` picks a branch: here only the branch picked is computed (the
  other's result was discarded), and a division only runs where the array
  path's divisor was positive.

Rows that do not learn (weight 0) are judged but their updated state is not
computed: the array path throws it away too. `tests/baselines/test_fused_small.py`
holds this path to the array path, bit for bit (expectations and learnt
state), on random states with zeros, infinities and held rows.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np

from detector.baselines.recursions import _SLOT_FIELDS
from detector.baselines.settings import Expectation

_INF = math.inf
_NAN = math.nan


def _max(a: float, b: float) -> float:
    """np.maximum of two floats."""
    return a if (a > b or a != a) else b


def _min(a: float, b: float) -> float:
    """np.minimum of two floats."""
    return a if (a < b or a != a) else b


def _ratio(num: float, den: float, default: float) -> float:
    """recursions._ratio of two floats."""
    return num / den if den > 0 else default


def _sqrt(x: float) -> float:
    """np.sqrt of a float: below zero (and NaN) numpy's own answer, where math.sqrt raises."""
    if x >= 0:
        return math.sqrt(x)
    with np.errstate(invalid="ignore"):
        return float(np.sqrt(x))


def fused_rows(bs, idxs, flats, rs, ts_rows: list[float], y: np.ndarray, w: np.ndarray, g: np.ndarray,
               cells: np.ndarray, frac: np.ndarray) -> list:
    """`fused._fused` after its gathers: `g` the stacked series state (fields x rows), `cells` the
    stacked profile cells (fields x 4 x rows), `frac` each row's fraction between slot centres.
    Writes the learnt state back and returns each signal's Expectation."""
    (bounds, mult, is_count, is_scale, window_s, level_hl, noise_hl, min_obs, min_hist, min_slot, season_hist,
     fallback, min_std, profile_hl, kern_a, kern_b, _signal) = rs
    n = len(ts_rows)
    series = g.T.tolist()  # per row: its 18 fields
    cell_rows = cells.transpose(2, 0, 1).reshape(n, -1).tolist()  # per row: 5 fields x 4 cells
    kern = np.concatenate([kern_a, kern_b]).T.tolist()  # per row: a0..a3, b0..b3
    settings = np.stack([window_s, level_hl, noise_hl, profile_hl, min_obs, min_hist, min_slot, season_hist,
                         fallback, min_std]).T.tolist()
    kinds = zip(mult.tolist(), is_count.tolist(), is_scale.tolist())
    rows = list(zip(ts_rows, frac.tolist(), y.tolist(), w.tolist(), series, cell_rows, kern, settings, kinds))

    # every decay's exponent, then one exp2 over all of them: 4 profile cells, then rw, lv, nz per row
    ex = []
    for t, _f, _y, _w, G, C, _k, (win, lv_hl, nz_hl, pf_hl, *_), _kind in rows:
        for pf_ts in C[16:20]:
            m = t - pf_ts
            ex.append(-(m if (m > 0.0 or m != m) else 0.0) / pf_hl)
        for last, hl in ((G[6], lv_hl), (G[12], lv_hl), (G[17], nz_hl)):
            m = t - last
            ex.append(-(m if (m > win or m != m) else win) / hl)
    dec = np.exp2(np.array(ex, dtype=np.float64)).tolist()

    cols = []  # per row: mean, std, mean_std, n_obs, history_s, ready, seasonal, dispersion
    learnt: list[tuple | None] = []  # per row: its 18 fields and its two learnt cells, or None
    for i, (t, f, yi, wi, G, C, K, S, (is_mult, is_cnt, is_scl)) in enumerate(rows):
        d0, d1, d2, d3, dr, dl, dn = dec[7 * i:7 * i + 7]
        (_win, _lv_hl, _nz_hl, _pf_hl, min_obs_i, min_hist_i, min_slot_i, season_i, fallback_i, min_std_i) = S
        (w0, w1, w2_, w3, q0, q1, q2, q3, m0, m1, m2_, m3, s0, s1, s2, s3) = C[:16]
        # --- recursions.pool_slots (sums over the four cells in order)
        kd0 = (K[0] + K[4] * f) * d0
        kd1 = (K[1] + K[5] * f) * d1
        kd2 = (K[2] + K[6] * f) * d2
        kd3 = (K[3] + K[7] * f) * d3
        kw0, kw1, kw2, kw3 = kd0 * w0, kd1 * w1, kd2 * w2_, kd3 * w3
        w_pool = ((kw0 + kw1) + kw2) + kw3
        has = w_pool > 0
        safe_w = w_pool if has else 1.0
        P = (((kw0 * m0 + kw1 * m1) + kw2 * m2_) + kw3 * m3) / safe_w
        e0, e1, e2, e3 = m0 - P, m1 - P, m2_ - P, m3 - P
        m2 = (((kd0 * s0 + kw0 * (e0 * e0)) + (kd1 * s1 + kw1 * (e1 * e1))) + (kd2 * s2 + kw2 * (e2 * e2))) \
            + (kd3 * s3 + kw3 * (e3 * e3))
        w2 = ((kd0 * kd0 * q0 + kd1 * kd1 * q1) + kd2 * kd2 * q2) + kd3 * kd3 * q3
        if has:
            neff_P = w_pool * w_pool / (w2 if w2 > 0 else 1.0)
            var_P = m2 / safe_w / _max(neff_P, 1.0)
        else:
            neff_P = var_P = 0.0

        # --- SeasonalBaseline._predict
        (n_obs, first_ts, rw_w, rw_w2, rw_m, rw_s, _rw_ts, lv_num, lv_den, lv_sq, lv_w, lv_w2, lv_ts,
         nz_num, nz_den, nz_w, nz_n, _nz_ts) = G
        if is_mult:
            L = lv_num / lv_den if lv_den > 0 else 1.0
        else:
            L = lv_num / lv_w if lv_w > 0 else 0.0
        var_L = (lv_sq / lv_w if lv_w > 0 else 0.0) / _max(lv_w * lv_w / lv_w2 if lv_w2 > 0 else 1.0, 1.0)
        if is_mult:
            den_avg = lv_den / lv_w if lv_w > 0 else 0.0
            dd = den_avg * den_avg
            var_L = var_L / dd if dd > 0 else 0.0
            yhat_s = P * L
            var_mean_s = L * L * var_P + P * P * var_L
        else:
            yhat_s = P + L
            var_mean_s = var_P + var_L
        raw_var = rw_s / rw_w if rw_w > 0 else 0.0
        neff_raw = _max(rw_w * rw_w / rw_w2 if rw_w2 > 0 else 1.0, 1.0)
        history = t - first_ts
        ready = (n_obs >= min_obs_i) and (history >= min_hist_i)
        seasonal = ready and has and (neff_P >= min_slot_i) and (history >= season_i)
        if seasonal:
            yhat, var_mean, neff = yhat_s, var_mean_s, neff_P
        else:
            yhat, var_mean, neff = rw_m, raw_var / neff_raw, neff_raw
        # --- SeasonalBaseline._noise_var
        learns = wi > 0
        if not nz_den > 0:
            model = raw_var
        else:
            coef = _max(nz_num / nz_den, 0.0)
            if is_cnt:
                model = _max(yhat, 0.5 / _max(neff, 1.0)) + coef * yhat * yhat
            elif is_scl:
                model = coef * yhat * yhat
            else:
                weight = wi if learns else (nz_w / nz_n if nz_n > 0 else 1.0)
                model = coef / weight if weight > 0 else _INF
        var_noise = model if seasonal else _max(model, raw_var)
        # --- SeasonalBaseline._judge_into, then `_finish`'s dispersion
        inflate = 1.0 if seasonal else fallback_i
        if n_obs < 2:
            std = mean_std = _INF
        else:
            std = _max(_sqrt(var_noise + var_mean) * inflate, min_std_i)
            mean_std = _sqrt(var_mean) * inflate
        mean = yhat if n_obs > 0 else _NAN
        cols.append((mean, std, mean_std, n_obs, t - first_ts if n_obs > 0 else 0.0, ready, seasonal,
                     _dispersion(mean, std) if is_cnt else _NAN))
        if not learns:
            learnt.append(None)
            continue

        # --- SeasonalBaseline._update_round (rows that learn: the others' new state is not kept)
        e = yi - yhat
        s_w = rw_w * dr + wi
        delta = yi - rw_m
        r_m = rw_m + (wi / s_w if s_w > 0 else 0.0) * delta
        learn = has and (not is_mult or P > 0)
        if is_mult:
            num_x, den_x = wi * yi, wi * P
            q = yi - L * P
        else:
            num_x, den_x = wi * (yi - P), wi
            q = yi - P - L
        sq_x = wi * (q * q)
        if learn:
            lv = (lv_num * dl + num_x, lv_den * dl + den_x, lv_sq * dl + sq_x, lv_w * dl + wi,
                  lv_w2 * dl * dl + wi * wi, t)
        else:
            lv = (lv_num * 1.0 + 0.0, lv_den * 1.0 + 0.0, lv_sq * 1.0 + 0.0, lv_w * 1.0 + 0.0,
                  lv_w2 * 1.0 * 1.0 + 0.0 * 0.0, lv_ts)
        if is_cnt:
            nx = e * e - yhat - var_mean
        elif is_scl:
            nx = e * e - var_mean
        else:
            nx = wi * (e * e - var_mean)
        new = (n_obs + 1.0, _min(first_ts, t), s_w, rw_w2 * (dr * dr) + wi * wi, r_m,
               _max(rw_s * dr + wi * delta * (yi - r_m), 0.0), t, *lv,
               nz_num * dn + nx, nz_den * dn + (yhat * yhat if is_mult else 1.0), nz_w * dn + wi,
               nz_n * dn + 1.0, t)
        # the profile's cells i0 and i0+1 (kernel cells 1, 2), each with its share of the weight
        learnt.append((new, _learn_cell(w1, q1, m1, s1, d1, wi * (1.0 + -1.0 * f), yi, t),
                       _learn_cell(w2_, q2, m2_, s2, d2, wi * (0.0 + 1.0 * f), yi, t)))

    out = []
    col_arrays = list(zip(*cols))
    stacked = [np.array(c, dtype=np.float64) for c in col_arrays[:5]] + \
        [np.array(c, dtype=bool) for c in col_arrays[5:7]] + [np.array(col_arrays[7], dtype=np.float64)]
    stacked[3] = stacked[3].astype(np.int64)
    keep = [i for i in range(n) if learnt[i] is not None]
    if keep:
        m = len(keep)
        new_series = np.fromiter(chain.from_iterable(learnt[i][0] for i in keep), np.float64,
                                 m * len(series[0])).reshape(m, -1).T  # [18 fields, learning rows]
        new_cells = np.fromiter(chain.from_iterable(chain.from_iterable(learnt[i][1:] for i in keep)), np.float64,
                                m * 10).reshape(m, 2, 5).transpose(2, 1, 0)  # [5 fields, 2 cells, rows]
    cut = 0
    for k, (b, idx, flat) in enumerate(zip(bs, idxs, flats)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        mean, std, mean_std, n_obs, history_s, ready, seasonal, dispersion = (a[lo:hi] for a in stacked)
        out.append(Expectation(mean=mean, std=std, mean_std=mean_std, dispersion=dispersion, n_obs=n_obs,
                               history_s=history_s, ready=ready, seasonal=seasonal))
        a = cut
        while cut < len(keep) and keep[cut] < hi:
            cut += 1
        if a == cut:
            continue
        mine = [i - lo for i in keep[a:cut]]
        b._series[:, idx[mine]] = new_series[:, a:cut]
        b._slots.reshape(len(_SLOT_FIELDS), -1)[:, flat[1:3][:, mine]] = new_cells[:, :, a:cut]
    return out


def _learn_cell(c_w0: float, c_w20: float, c_m0: float, c_s0: float, decay: float, ww: float, yi: float,
                t: float) -> tuple:
    """recursions._ew_welford of one profile cell, then its time."""
    c_w = c_w0 * decay + ww
    c_delta = yi - c_m0
    c_m = c_m0 + (ww / c_w if c_w > 0 else 0.0) * c_delta
    return c_w, c_w20 * (decay * decay) + ww * ww, c_m, _max(c_s0 * decay + ww * c_delta * (yi - c_m), 0.0), t


def _dispersion(mean: float, std: float) -> float:
    """`SeasonalBaseline._finish`'s dispersion of a count row."""
    if not mean > 0:
        return _NAN
    mm = mean * mean
    if mm == 0:  # numpy divides by zero (inf or nan); Python would raise
        with np.errstate(divide="ignore", invalid="ignore"):
            return _max(float(np.float64(std * std - mean) / np.float64(mm)), 0.0)
    return _max((std * std - mean) / mm, 0.0)
