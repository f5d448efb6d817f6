"""The fused step's plain-Python path for a few rows (`fused_small`) against its array path:
the same expectations and the same learnt state, bit for bit (sign of zero and NaN included)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from detector.baselines import BaselineBank
from detector.baselines import fused as fused_step
from detector.baselines.fused import update_signals

T0 = 1_764_115_200.0
SIGNALS = ("volume", "error_rate", "transactions", "latency_p95")
FIELDS = ("mean", "std", "mean_std", "dispersion", "n_obs", "history_s", "ready", "seasonal")


def _bank() -> BaselineBank:
    return BaselineBank.for_signals((0.95,), slot_s=3600.0, window_s=60.0, min_history_s=600.0,
                                    seasonal_min_days=0.5, min_slot_obs=5.0)


def _array_path(monkeypatch, bs, rows):
    with monkeypatch.context() as m:
        m.setattr(fused_step, "_SMALL_ROWS", 0)
        return update_signals(bs, rows)


def _rows(rng, n_series: int, t: float, held: float) -> list[tuple]:
    k = int(rng.integers(1, min(n_series, 12) + 1))
    idx = np.sort(rng.choice(n_series, size=k, replace=False)).astype(np.int64)
    n = rng.poisson(rng.choice([0.3, 5.0, 300.0]), k).astype(float)  # zeros too
    learn = (rng.random(k) >= held).astype(float)
    err = rng.binomial(n.astype(int), 0.05) / np.maximum(n, 1)
    txn = rng.poisson(0.5, k).astype(float)
    lat = rng.lognormal(np.log(80), 0.5, k)
    has = rng.random(k) < 0.8
    rows = [(idx, t, n, learn), (idx, t, err, n * learn), (idx, t, txn, learn * rng.choice([1.0, 0.5, 3.0]))]
    if has.any():
        rows.append((idx[has], t, lat[has], learn[has]))
    return rows


def _same(got, want, small: BaselineBank, big: BaselineBank) -> None:
    for a, b in zip(got, want):
        for name in FIELDS:
            x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    for s in SIGNALS:
        assert small[s]._series.tobytes() == big[s]._series.tobytes(), s
        assert small[s]._slots.tobytes() == big[s]._slots.tobytes(), s


@pytest.mark.parametrize("seed,held", [(0, 0.0), (1, 0.2), (2, 0.6)])
def test_small_path_equals_array_path_over_two_days(monkeypatch, seed, held):
    rng = np.random.default_rng(seed)
    small, big = _bank(), _bank()
    seasonal = 0
    for step in range(2 * 24 * 12):  # two days of 5-minute windows
        t = T0 + step * 300.0 + float(rng.integers(0, 3)) * 60.0
        rows = _rows(rng, 14, t, held)
        got = update_signals([small[s] for s in SIGNALS[:len(rows)]], rows)
        want = _array_path(monkeypatch, [big[s] for s in SIGNALS[:len(rows)]], rows)
        _same(got, want, small, big)
        seasonal += int(got[0].seasonal.sum())
    assert seasonal > 50  # the seasonal branch was compared, not only the fallback


@pytest.mark.parametrize("seed", range(6))
def test_small_path_equals_array_path_on_odd_states(monkeypatch, seed):
    """States no traffic would make in two days: signed zeros, infinities, huge and tiny sums,
    negative values, NaN in a row that does not learn."""
    rng = np.random.default_rng(100 + seed)
    base = _bank()
    for step in range(40):
        rows = _rows(rng, 10, T0 + step * 300.0, 0.1)
        update_signals([base[s] for s in SIGNALS[:len(rows)]], rows)
    odd = np.array([0.0, -0.0, np.inf, -np.inf, 1e300, 1e-300, -3.5, 7.0, 0.5])
    for s in SIGNALS:
        for arr in (base[s]._series, base[s]._slots):
            flat = arr.reshape(-1)
            hit = rng.random(flat.size) < 0.15
            flat[hit] = rng.choice(odd, int(hit.sum()))
    for step in range(40, 60):
        small, big = copy.deepcopy(base), copy.deepcopy(base)
        rows = _rows(rng, 10, T0 + step * 300.0, 0.3)
        idx, t, y, w = rows[2]
        y = y.copy()
        y[w == 0] = np.nan  # a value nobody learns may be anything
        rows[2] = (idx, t, y, w)
        got = update_signals([small[s] for s in SIGNALS[:len(rows)]], rows)
        want = _array_path(monkeypatch, [big[s] for s in SIGNALS[:len(rows)]], rows)
        _same(got, want, small, big)
        base = small


def test_more_rows_than_the_small_size_take_the_array_path(monkeypatch):
    calls = []
    monkeypatch.setattr(fused_step, "fused_rows", lambda *a, **k: calls.append(1) or [])
    bank = _bank()
    k = fused_step._SMALL_ROWS // 3 + 1  # three signals: more rows than the small path takes
    idx = np.arange(k, dtype=np.int64)
    rows = [(idx, T0, np.ones(k), np.ones(k))] * 3
    update_signals([bank[s] for s in SIGNALS[:3]], rows)
    assert not calls
    update_signals([bank[s] for s in SIGNALS[:3]], [(idx[:2], T0 + 60, np.ones(2), np.ones(2))] * 3)
    assert calls
