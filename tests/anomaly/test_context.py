"""Contextual novelty (detector/anomaly/context.py, `[metrics] context_levels`), on synthetic series."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from detector.anomaly.context import ORDER, ContextNovelty
from detector.anomaly.detector import MetricDetector
from detector.config import ConfigError, Metrics, parse_pipeline
from metric_runs import one_spike, round_trip, run

ON = dataclasses.replace(Metrics(), context_levels=8)
THRESHOLD = Metrics().score_threshold


def ramps(n: int, reversed_at: tuple[int, int] | None = None, seed: int = 31) -> np.ndarray:
    """A sawtooth 0, 1, ..., 7, 0, 1, ... with a little noise; inside `reversed_at` it runs 7, 6, ..., 0:
    the same values, level and spread, in another order."""
    rng = np.random.default_rng(seed)
    phase = np.arange(n) % 8
    if reversed_at:
        a, b = reversed_at
        phase[a:b] = 7 - phase[a:b]
    return phase + rng.normal(0, 0.05, n)


def naive_novelty(levels: list[int], order: int = ORDER) -> list[float]:
    """The definition, with dictionaries: mean over k of 1 - n(h_k, q) / n(h_k), over the orders available."""
    counts: dict[tuple, int] = {}
    out = []
    for t, q in enumerate(levels):
        parts = []
        for k in range(1, order + 1):
            if t - k < 0:
                continue
            h = tuple(levels[t - k:t])
            total = sum(counts.get((h, r), 0) for r in range(8))
            parts.append(1.0 - counts.get((h, q), 0) / total if total else 1.0)
            counts[(h, q)] = counts.get((h, q), 0) + 1
        out.append(float(np.mean(parts)) if parts else 0.0)
    return out


def test_novelty_matches_its_definition_on_random_series():
    """Three series stepped together give, each, the dictionary oracle's novelty of its own levels."""
    rng = np.random.default_rng(3)
    n = 400
    y = np.stack([rng.integers(0, 8, n).astype(float), rng.integers(0, 3, n).astype(float),
                  np.repeat(rng.integers(0, 8, n // 4), 4).astype(float)])
    y[:, 0], y[:, 1] = 0.0, 7.0  # the range is known from the second value on, so levels are y itself
    ctx = ContextNovelty(levels=8)
    got = np.zeros_like(y)
    for k in range(n):
        idx = np.arange(3)
        q = ctx.quantise(idx, y[:, k])
        if k >= 2:
            assert np.array_equal(q, np.minimum(y[:, k], 7).astype(int))
        got[:, k] = ctx.step(idx, y[:, k])
    for s in range(3):
        levels = [4, 4] + [int(v) for v in y[s, 2:]]  # the first two values are quantised with no range yet
        assert np.allclose(got[s, 3:], naive_novelty(levels)[3:])


def test_a_shape_change_with_no_outstanding_value_is_found_only_by_the_context_test():
    """The sawtooth running backwards for 100 samples (same values, level and spread) is a record with the
    context test, none without it; the 3,000 samples before it are no record either way."""
    y = ramps(4000, reversed_at=(3000, 3100))
    _, off = run(y, Metrics())
    _, on = run(y, ON)
    assert not any(r.onset[0] for r in off)
    assert max(r.score[0] for r in off[3000:3100]) < THRESHOLD
    onsets = [k for k, r in enumerate(on) if r.onset[0]]
    assert onsets and all(3000 <= k < 3100 for k in onsets)
    assert max(r.context[0] for r in on[3000:3100]) >= THRESHOLD


def spikes(every: int, denser: int, seed: int = 5) -> np.ndarray:
    """Spikes of the usual size every `every` samples, every `denser` samples from 3,000 to 3,300."""
    rng = np.random.default_rng(seed)
    y = 10 + rng.normal(0, 0.3, 4000)
    y[np.r_[np.arange(0, 3000, every), np.arange(3000, 3300, denser), np.arange(3300, 4000, every)]] += 6.0
    return y


def test_spikes_twice_as_dense_are_learnt_not_found():
    """A limit, pinned: spikes every 6 samples, then every 3 (or every 24, then 12) make new contexts only
    until they have been seen a few times (counts learn at once), so the density of novel transitions
    barely rises and the context test finds neither change."""
    for every, denser in ((6, 3), (24, 12)):
        _, on = run(spikes(every, denser), ON)
        assert max(r.context[0] for r in on[3000:3300]) < THRESHOLD
        assert not any(r.onset[0] for r in on[300:])


def test_with_the_context_test_the_correction_is_for_three_tests():
    """The other two parts lose log10(3 / 2) against the two-test score, the stated false-alarm rate kept."""
    y = one_spike()
    _, off = run(y, Metrics())
    _, on = run(y, ON)
    assert on[500].point[0] == pytest.approx(off[500].point[0] - np.log10(1.5))


def test_state_round_trip_with_the_context_test_continues_identically():
    y = ramps(900, reversed_at=(700, 760))
    ra, rb = round_trip(y, ON, 600)
    assert [r.score[0] for r in ra] == [r.score[0] for r in rb]
    assert any(r.context[0] > 0 for r in ra)


def test_a_snapshot_with_and_without_the_context_test_do_not_mix():
    a, _ = run(ramps(100), Metrics())
    with pytest.raises(ValueError, match="test snapshot: metric detector parts"):
        MetricDetector(ON).load_state(a.to_state(), "test snapshot")


def test_warm_rows_without_the_context_test_start_it_afresh():
    """A warm-start file written with the test off gives a detector with it on the rest of what it learnt."""
    a, _ = run(ramps(300), Metrics())
    rows = np.zeros(1, dtype=np.int64)
    b = MetricDetector(ON)
    b.load_series_rows(rows, a.series_rows(rows), rows, "old.npz")
    assert b.baseline.cols["level"][0] == a.baseline.cols["level"][0]
    assert np.all(b.context.novelty.cols["count1"][0] == 0)


def test_context_keys_are_validated():
    with pytest.raises(ConfigError, match=r"metrics.context_levels must be 0 \(off\) or an integer from 2 to 8"):
        parse_pipeline("[metrics]\ncontext_levels = 9\n", "p.toml")
    with pytest.raises(ConfigError, match=r"metrics.context_levels"):
        parse_pipeline("[metrics]\ncontext_levels = 1\n", "p.toml")
    with pytest.raises(ConfigError, match=r"metrics.context_half_life_samples must be a number of samples"):
        parse_pipeline("[metrics]\ncontext_levels = 8\ncontext_half_life_samples = 0.5\n", "p.toml")
    assert parse_pipeline("[metrics]\ncontext_levels = 4\n", "p.toml").metrics.context_levels == 4
