"""The spread test (detector/anomaly/spread.py, `[metrics] spread_test`), on synthetic series."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from detector.anomaly.detector import MetricDetector
from detector.anomaly.spread import C, SpreadTest
from detector.config import ConfigError, Metrics, parse_pipeline
from metric_runs import IDX, one_spike, round_trip, run

ON = dataclasses.replace(Metrics(), spread_test=True)
THRESHOLD = Metrics().score_threshold
CHANGE = 3000


def doubled(seed: int = 7) -> np.ndarray:
    """Normal noise about 50 whose standard deviation goes from 1 to 2 at sample 3,000 (the level stays)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0, 1, CHANGE + 400)
    e[CHANGE:] *= 2.0
    return 50.0 + e


STEPS = (10.0, 300.0, 3600.0)


def run_intervals(y: np.ndarray, settings: Metrics) -> list:
    """One detector, the same values as three series sampled every 10 s, 5 min and 1 h."""
    d, idx = MetricDetector(settings), np.arange(len(STEPS))
    return [d.step(idx, i * np.array(STEPS), np.full(len(STEPS), y[i])) for i in range(len(y))]


def test_a_spread_that_doubles_is_found_by_the_spread_test_at_any_interval():
    """The doubled spread is a record within 50 samples, from the spread test's part, at 10 s, 5 min or 1 h per
    sample alike (rates count the series' own samples: the part is the same at every interval); without the
    test, no record at all (no value stands out: the point test stays under 4)."""
    on = run_intervals(doubled(), ON)
    off = run_intervals(doubled(), Metrics())
    for k, step_s in enumerate(STEPS):
        onsets = [i for i, r in enumerate(on) if r.onset[k]]
        assert onsets and CHANGE <= onsets[0] < CHANGE + 50, step_s
        first = on[onsets[0]]
        assert first.spread[k] >= THRESHOLD > max(first.point[k], first.sustained[k]), step_s
        assert max(r.spread[k] for r in on[:CHANGE]) < THRESHOLD, step_s
        assert not any(r.onset[k] for r in off), step_s
        assert [r.spread[k] for r in on] == [r.spread[0] for r in on], step_s


def stationary(kind: str, n: int = 10000, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return 10.0 + rng.normal(0, 1, n)
    if kind == "heavy":  # Student t with 3 degrees of freedom
        return 10.0 + rng.standard_t(3, n)
    if kind == "autocorrelated":  # AR(1), coefficient 0.9: wide residuals come in runs
        e = rng.normal(0, 1, n)
        y = np.zeros(n)
        for i in range(1, n):
            y[i] = 0.9 * y[i - 1] + e[i]
        return 10.0 + y
    y = 10.0 + rng.normal(0, 0.3, n)  # "spiky": 3 % of the values 5 higher, at random
    y[rng.random(n) < 0.03] += 5.0
    return y


KINDS = ("normal", "heavy", "autocorrelated", "spiky")


def test_a_stationary_noisy_series_is_not_flagged_by_the_spread_test():
    """10,000 samples whose spread never changes, four kinds side by side as four series of one detector: the
    spread part reaches the threshold at most once per series, the stated rate of about one false alarm per
    10,000 windows (the autocorrelated series does, at 4.1, once; a test whose clustering correction looked at
    lag one only gave hundreds on bursty real series)."""
    y = np.stack([stationary(kind) for kind in KINDS], axis=1)
    idx, d = np.arange(len(KINDS)), MetricDetector(ON)
    t = np.arange(len(y)) * 60.0
    part = np.array([d.step(idx, np.full(len(KINDS), t[i]), y[i]).spread for i in range(len(y))])
    for k, kind in enumerate(KINDS):
        assert np.sum(part[:, k] >= THRESHOLD) <= 1, kind
        assert np.sum(part[:, k] >= THRESHOLD - 1) <= 10, kind  # and about one in 1,000 at a score of 3


def test_the_p_value_is_the_binomial_tail_for_independent_values():
    """With the prior (independent normal residuals) and a recent rate e_bar, p is P(Bin(n, q) >= k) with
    n = (2 - g) / g and k = e_bar n: at integer k it is scipy's binomial survival function."""
    test = SpreadTest(24.0)
    test.cols.ensure(1)
    n, q = test.n_indep, stats.norm.sf(C) * 2
    for k in (10, 15, 25):
        got = test.log10_p(IDX, np.array([k / n]))[0]
        want = np.log10(stats.binom.sf(k - 1, round(n), q))  # P(X >= k)
        assert got == pytest.approx(want, abs=0.15)  # n is not an integer: the continuation, near it
    assert test.log10_p(IDX, np.array([0.1]))[0] == 0.0  # below the long-run rate: not a departure


def test_with_the_spread_test_the_correction_counts_it():
    """The other parts lose log10(3 / 2) against the two-test score, and with the context test too, log10(4 / 3)."""
    y = one_spike()
    _, off = run(y, Metrics())
    _, on = run(y, ON)
    _, both = run(y, dataclasses.replace(ON, context_levels=4))
    assert on[500].point[0] == pytest.approx(off[500].point[0] - np.log10(1.5))
    assert both[500].point[0] == pytest.approx(on[500].point[0] - np.log10(4 / 3))
    assert all(r.spread[0] == 0.0 for r in off)


def test_an_adopted_level_shift_restarts_the_recent_rate():
    """A step of 10 standard deviations is adopted as the new level; the wide residuals before the adoption are
    the shift's, so the recent rate starts again at the long-run one."""
    rng = np.random.default_rng(4)
    y = rng.normal(0, 1, 1500)
    y[1000:] += 10.0
    d, on = run(y, ON)
    shifted = [k for k, r in enumerate(on) if r.shifted[0]]
    assert shifted and 1000 < shifted[0] < 1020
    c = d.spread.cols
    assert c["ebar"][0] < 0.5  # 500 samples later: back to the ordinary rate, not stuck at the shift's
    d2, _ = run(y[:shifted[0] + 1], ON)
    assert d2.spread.cols["ebar"][0] == pytest.approx(d2.spread.cols["n1"][0] / d2.spread.cols["n"][0])


def test_state_round_trip_with_the_spread_test_continues_identically():
    y = doubled()
    ra, rb = round_trip(y, ON, 2900)
    assert [r.score[0] for r in ra] == [r.score[0] for r in rb]
    assert max(r.spread[0] for r in ra) >= THRESHOLD


def test_warm_rows_without_the_spread_test_start_it_afresh():
    """A warm-start file written with the test off gives a detector with it on the rest of what it learnt."""
    a, _ = run(doubled()[:500], Metrics())
    rows = np.zeros(1, dtype=np.int64)
    b = MetricDetector(ON)
    b.load_series_rows(rows, a.series_rows(rows), rows, "old.npz")
    assert b.baseline.cols["level"][0] == a.baseline.cols["level"][0]
    assert b.spread.cols["n"][0] == SpreadTest(24.0).cols["n"][0]


def test_spread_keys_are_validated():
    with pytest.raises(ConfigError, match=r"metrics.spread_half_life_samples must be a number of samples"):
        parse_pipeline("[metrics]\nspread_test = true\nspread_half_life_samples = 0.5\n", "p.toml")
    with pytest.raises(ConfigError, match=r"metrics.spread_test must be true or false"):
        parse_pipeline("[metrics]\nspread_test = 1\n", "p.toml")
    assert parse_pipeline("[metrics]\nspread_test = true\n", "p.toml").metrics.spread_test is True
    assert Metrics().spread_test is False
