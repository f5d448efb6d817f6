"""Two regimes (detector/anomaly/regimes.py): routine switching between two levels, on synthetic series."""

from __future__ import annotations

import numpy as np

from detector.anomaly.detector import MetricDetector
from detector.config import Metrics

IDX = np.zeros(1, dtype=np.int64)
STEP_S = 300.0
THRESHOLD = Metrics().score_threshold


def scores(y: np.ndarray):
    d = MetricDetector(Metrics())
    t = np.arange(len(y)) * STEP_S
    out = [d.step(IDX, t[i:i + 1], y[i:i + 1]) for i in range(len(y))]
    return np.array([r.score[0] for r in out]), np.flatnonzero([r.onset[0] for r in out])


def busy_idle(n: int, seed: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """A worker busy (70 +- 3) or idle (20 +- 1.5) for 2 to 8 hours at a time, at irregular times."""
    rng = np.random.default_rng(seed)
    high = np.zeros(n, bool)
    k, state = 0, False
    while k < n:
        d = int(rng.integers(24, 100))
        high[k:k + d] = state
        state, k = not state, k + d
    return np.where(high, 70 + rng.normal(0, 3, n), 20 + rng.normal(0, 1.5, n)), high


def test_routine_switching_is_learnt_and_a_real_anomaly_still_stands_out():
    """After the first switches no switch is a record; the busy level 60 % higher for an hour is one."""
    y, high = busy_idle(3456)
    a = 3000 + int(np.argmax(high[3000:]))  # the first busy value after sample 3000
    y[a:a + 12] += 40.0
    score, onsets = scores(y)
    assert np.count_nonzero(np.diff(high.astype(int))) > 40
    assert all(k < 300 or a <= k < a + 12 for k in onsets)
    assert score[a:a + 12].max() >= THRESHOLD
    assert any(a <= k < a + 12 for k in onsets)


def test_a_recurring_incident_is_not_a_regime():
    """An incident and its recovery (two shifts) do not make the same incident routine: it is a record again."""
    rng = np.random.default_rng(22)
    y = 10 + rng.normal(0, 0.5, 3000)
    y[800:1000] += 20.0
    y[2000:2200] += 20.0
    _, onsets = scores(y)
    assert any(800 <= k < 815 for k in onsets)
    assert any(2000 <= k < 2015 for k in onsets)
