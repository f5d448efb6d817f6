"""Several signals updated in one fused step learn and answer bit for bit as `update` signal by signal."""

from __future__ import annotations

import numpy as np
import pytest

from detector.baselines import BaselineBank
from detector.baselines import fused as fused_step
from detector.baselines.fused import update_signals
from detector.baselines.model import BaselineConfig, SeasonalBaseline

T0 = 1_764_115_200.0
SIGNALS = ("volume", "error_rate", "transactions", "latency_p95")


def _bank(**calendar) -> BaselineBank:
    # a short slot and history so that the two days below reach the seasonal (profile x level) answers
    return BaselineBank.for_signals((0.95,), slot_s=3600.0, window_s=60.0, min_history_s=600.0,
                                    seasonal_min_days=0.5, min_slot_obs=5.0, **calendar)


def _window_rows(rng, k: int, n_series: int, t: float) -> list[tuple]:
    idx = np.sort(rng.choice(n_series, size=k, replace=False)).astype(np.int64)
    day = 1.0 + 0.5 * np.sin(2 * np.pi * (t % 86400.0) / 86400.0)
    n = rng.poisson(200 * day, k).astype(float) + 1
    err = rng.binomial(n.astype(int), 0.01) / n
    txn = rng.poisson(0.3 * day, k).astype(float)  # mostly 0: the count floor matters
    lat = rng.lognormal(np.log(80), 0.2, k)
    lat_rows = idx[lat < 150]  # latency missing in some windows: a signal with fewer rows
    return [(idx, t, n, np.ones(k)), (idx, t, err, n), (idx, t, txn, np.ones(k)),
            (lat_rows, t, lat[lat < 150], np.ones(len(lat_rows)))]


def _assert_same(a, b) -> None:
    for name in ("mean", "std", "mean_std", "dispersion", "n_obs", "history_s", "ready", "seasonal"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_step_equals_signal_by_signal(seed):
    rng = np.random.default_rng(seed)
    fused, plain = _bank(), _bank()
    seasonal = 0
    for step in range(2 * 24 * 60 // 5):  # two days of 5-minute windows (60 s cadence settings)
        rows = _window_rows(rng, int(rng.integers(1, 9)), 12, T0 + step * 300.0)
        got = update_signals([fused[s] for s in SIGNALS], rows)
        want = [plain[s].update(i, t, y, weights=w) for s, (i, t, y, w) in zip(SIGNALS, rows)]
        for a, b in zip(got, want):
            _assert_same(a, b)
        seasonal += int(got[0].seasonal.sum())
    assert seasonal > 100  # the comparison reached the seasonal branch, not only the fallback
    assert fused.to_bytes() == plain.to_bytes()  # the learnt state (and so a snapshot) is the same


def test_local_time_day_profiles_and_a_clock_change_map_to_the_same_slots_as_update():
    """The fused step maps each window start to its slots once per signal (local time, day
    profile); across a weekend and the spring clock change in Berlin it must learn and answer
    as `update` does."""
    rng = np.random.default_rng(3)
    calendar = {"timezone": "Europe/Berlin", "day_profiles": "weekday_weekend"}
    fused, plain = _bank(**calendar), _bank(**calendar)
    t0 = 1_774_656_000.0  # 2026-03-28 00:00 UTC, a Saturday; clocks go forward on the 29th at 01:00 UTC
    for step in range(3 * 24 * 60 // 5):
        rows = _window_rows(rng, int(rng.integers(1, 9)), 12, t0 + step * 300.0 + 7.0)
        got = update_signals([fused[s] for s in SIGNALS], rows)
        want = [plain[s].update(i, t, y, weights=w) for s, (i, t, y, w) in zip(SIGNALS, rows)]
        for a, b in zip(got, want):
            _assert_same(a, b)
    assert fused.to_bytes() == plain.to_bytes()


def test_a_series_twice_in_one_signal_goes_through_update_and_answers_as_it_does():
    """Duplicates are not plain in one signal only; the same index in two signals is."""
    fused, plain = _bank(), _bank()
    idx = np.array([0, 1], np.int64)
    for step in range(50):
        t = T0 + step * 300.0
        rows = [(idx, t, np.array([10.0, 12.0]), np.ones(2)), (idx, t, np.array([0.1, 0.2]), np.ones(2)),
                (idx, t, np.array([1.0, 2.0]), np.ones(2)), (idx, t, np.array([80.0, 90.0]), np.ones(2))]
        got = update_signals([fused[s] for s in SIGNALS], rows)
        want = [plain[s].update(i, tt, y, weights=w) for s, (i, tt, y, w) in zip(SIGNALS, rows)]
        for a, b in zip(got, want):
            _assert_same(a, b)
    assert fused.to_bytes() == plain.to_bytes()
    twice = [(np.array([3, 3, 0]), T0 + 50 * 300.0, np.array([1.0, 2.0, 11.0]), np.ones(3))] + rows[1:]
    bs = [fused[s] for s in SIGNALS]
    for layout, plain_rows in ((rows, True), (twice, False)):
        rs = fused_step._row_settings(bs, [len(r[0]) for r in layout])
        idx = np.concatenate([np.asarray(r[0], dtype=np.int64) for r in layout])
        y, w = (np.concatenate([np.asarray(r[i], dtype=np.float64) for r in layout]) for i in (2, 3))
        assert fused_step._plain(rs, idx, y, w) is plain_rows
    got = update_signals([fused[s] for s in SIGNALS], twice)
    want = [plain[s].update(i, tt, y, weights=w) for s, (i, tt, y, w) in zip(SIGNALS, twice)]
    for a, b in zip(got, want):
        _assert_same(a, b)
    assert fused.to_bytes() == plain.to_bytes()


def test_rows_that_do_not_learn_are_judged_and_left_out_as_by_update():
    rng = np.random.default_rng(5)
    fused, plain = _bank(), _bank()
    for step in range(300):
        rows = _window_rows(rng, 6, 6, T0 + step * 300.0)
        if step % 7 == 0:  # a service under verification: weight 0
            rows = [(i, t, y, np.where(i == i[0], 0.0, w)) for i, t, y, w in rows]
        if step % 11 == 0:  # every service held, and a value that is not learnt may be NaN
            rows = [(i, t, np.where(i == i[-1], np.nan, y), np.zeros(len(i))) for i, t, y, w in rows]
        got = update_signals([fused[s] for s in SIGNALS], rows)
        want = [plain[s].update(i, t, y, weights=w) for s, (i, t, y, w) in zip(SIGNALS, rows)]
        for a, b in zip(got, want):
            _assert_same(a, b)
    assert fused.to_bytes() == plain.to_bytes()


def test_a_bad_value_raises_the_same_error_as_update():
    b = SeasonalBaseline(BaselineConfig(kind="count"))
    with pytest.raises(ValueError, match="values >= 0"):
        update_signals([b], [(np.array([0]), T0, np.array([-1.0]), np.ones(1))])


def test_banks_of_different_settings_with_the_same_layout_each_get_their_own_settings():
    """The fused step keeps each layout's settings columns between windows: two banks that differ
    only in their settings, updated in turn with rows of the same shape, must not share them."""
    rng = np.random.default_rng(9)
    other = dict(slot_s=3600.0, window_s=60.0, min_history_s=1200.0, seasonal_min_days=0.5, min_slot_obs=3.0,
                 level_half_life_s=900.0)
    banks = [(_bank(), _bank()),
             (BaselineBank.for_signals((0.95,), **other), BaselineBank.for_signals((0.95,), **other))]
    for step in range(400):
        rows = _window_rows(rng, 5, 8, T0 + step * 300.0)
        rows[3] = (rows[0][0], rows[3][1], np.full(5, 80.0), np.ones(5))  # same row counts every window
        for fused, plain in banks:
            got = update_signals([fused[s] for s in SIGNALS], rows)
            want = [plain[s].update(i, t, y, weights=w) for s, (i, t, y, w) in zip(SIGNALS, rows)]
            for a, b in zip(got, want):
                _assert_same(a, b)
    for fused, plain in banks:
        assert fused.to_bytes() == plain.to_bytes()
    assert banks[0][0].to_bytes() != banks[1][0].to_bytes()
