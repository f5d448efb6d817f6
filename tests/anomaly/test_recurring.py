"""Excursions that recur at the same time of day (detector/anomaly/recurring.py), on synthetic series."""

from __future__ import annotations

import numpy as np

from detector.anomaly.detector import MetricDetector
from detector.config import Metrics

IDX = np.zeros(1, dtype=np.int64)
STEP_S = 300.0
PER_DAY = int(86400 / STEP_S)


def nightly_job(days: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A near-constant CPU (0.13 +- quantisation) with a 5-minute job at about 03:15 every night.

    The job wanders by up to 20 minutes and its height by +-10 %, as a cron job's does.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(days * PER_DAY) * STEP_S
    y = 0.13 + rng.choice([-0.066, 0.0, 0.0, 0.0, 0.004], len(t))
    jobs = []
    for d in range(days):
        k = d * PER_DAY + 39 + int(rng.integers(-4, 5))  # 03:15 +- 20 min
        y[k] = 1.45 * rng.uniform(0.9, 1.1)
        jobs.append(k)
    return t, y, jobs


def scores(t, y, settings: Metrics | None = None):
    d = MetricDetector(settings or Metrics())
    out = [d.step(IDX, t[i:i + 1], y[i:i + 1]) for i in range(len(t))]
    return np.array([r.score[0] for r in out]), np.array([r.onset[0] for r in out])


def test_a_nightly_spike_is_learnt_after_two_days():
    """It alarms on the first nights, then is expected: no record on any later night."""
    t, y, jobs = nightly_job(10)
    score, onset = scores(t, y)
    nights_alarmed = [k // PER_DAY for k in np.flatnonzero(onset)]
    assert nights_alarmed and max(nights_alarmed) <= 2
    assert all(score[k] < Metrics().score_threshold for k in jobs[3:])


def test_a_nightly_spike_alarms_every_night_without_seasonality():
    """The same series with seasonality off (no time-of-day memory): every night is a record, as before."""
    t, y, jobs = nightly_job(10)
    _, onset = scores(t, y, Metrics(seasonality="off"))
    assert {k // PER_DAY for k in np.flatnonzero(onset)} == set(range(10))


def test_a_spike_at_another_time_or_much_larger_still_alarms():
    """What the nightly job teaches covers its own time and size only."""
    t, y, jobs = nightly_job(10)
    other = 8 * PER_DAY + 150  # 12:30 on day 8
    y[other] = 1.45
    y[jobs[9]] = 4.0  # the job, but almost three times its usual height
    score, onset = scores(t, y)
    threshold = Metrics().score_threshold
    assert score[other] >= threshold and onset[other]
    assert score[jobs[9]] >= threshold and onset[jobs[9]]


def test_a_missed_night_is_learnt_again():
    """After a night without the job, the job is new again for two nights (then expected again)."""
    t, y, jobs = nightly_job(12)
    y[jobs[6]] = 0.13
    score, _ = scores(t, y)
    threshold = Metrics().score_threshold
    assert all(score[k] < threshold for k in jobs[3:6])
    assert score[jobs[7]] >= threshold
    assert all(score[k] < threshold for k in jobs[9:])


def test_a_half_hour_nightly_plateau_is_learnt_too():
    """A job that holds the series up for 30 minutes each night: records on the first nights only."""
    t, y, jobs = nightly_job(10)
    for k in jobs:
        y[k:k + 6] = y[k]
    score, onset = scores(t, y)
    assert {k // PER_DAY for k in np.flatnonzero(onset)} <= {0, 1, 2}
    assert all(score[k:k + 6].max() < Metrics().score_threshold for k in jobs[3:])
