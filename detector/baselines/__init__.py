"""Baselines: what a series is expected to do at this time of day, and the watch that asks.

- `model`: `SeasonalBaseline`, one signal's expectation and its uncertainty per series
  (time-of-day profile, level, noise, recent-history fallback), learnt online;
- `settings`: `BaselineConfig` and `Expectation`; `recursions`: the state layout and the
  vectorised updates `model` and `fused` share; `snapshots`: a baseline as bytes or a file;
- `bank`: `BaselineBank`, every signal's baseline with the stable series keys they share;
- `files`: the .npz file format of checkpoints and warm-start files (`models/`);
- `watch`: `SeasonalWatch`, the core's component that compares each closed window with
  the baselines and learns it.

Imports `aggregate`, `ingest`, `stats`, `config` and `records`; never the judge or a driver.
"""

from detector.baselines.bank import DEFAULT_SIGNAL_KINDS, BaselineBank, latency_signal
from detector.baselines.files import BaselineFormatError
from detector.baselines.model import SeasonalBaseline
from detector.baselines.settings import DAY_S, KIND_ADDITIVE, KIND_COUNT, KIND_SCALE, BaselineConfig, Expectation

__all__ = ["DAY_S", "DEFAULT_SIGNAL_KINDS", "KIND_ADDITIVE", "KIND_COUNT", "KIND_SCALE", "BaselineBank",
           "BaselineConfig", "BaselineFormatError", "Expectation", "SeasonalBaseline", "latency_signal"]
