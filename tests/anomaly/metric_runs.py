"""One metric series through a `MetricDetector` sample by sample, as the optional tests' files need it."""

from __future__ import annotations

import numpy as np

from detector.anomaly.detector import MetricDetector
from detector.config import Metrics

IDX = np.zeros(1, dtype=np.int64)


def run(y: np.ndarray, settings: Metrics, step_s: float = 60.0, detector: MetricDetector | None = None):
    """The detector (new, or `detector` to go on with) and its result at every sample, `step_s` apart."""
    d = detector or MetricDetector(settings)
    t = np.arange(len(y)) * step_s
    return d, [d.step(IDX, t[i:i + 1], y[i:i + 1]) for i in range(len(y))]


def one_spike(seed: int = 9, n: int = 600, at: int = 500, value: float = 9.0) -> np.ndarray:
    """Standard normal noise with one value of `value` at sample `at`."""
    y = np.random.default_rng(seed).normal(0, 1, n)
    y[at] = value
    return y


def round_trip(y: np.ndarray, settings: Metrics, split: int) -> tuple[list, list]:
    """Results after sample `split` of one detector run straight on, and of one restored from its state there."""
    a, _ = run(y[:split], settings)
    b = MetricDetector(settings)
    b.load_state(a.to_state(), "test")
    return run(y[split:], settings, detector=a)[1], run(y[split:], settings, detector=b)[1]
