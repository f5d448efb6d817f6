"""The streaming metric detector: baseline -> calibrated score -> episodes, per series, vectorised.

Each closed window's value of a series is scored against the baseline's
prediction made before the value was seen, with two calibrated tests:

* **point**: |z|, the residual in robust standard deviations, beyond what
  recurred at this time of day on the last two days (its tail is learnt from
  the raw residual, so what the allowance hides does not thin the tail);
* **sustained**: the exponentially weighted mean of the raw z (clipped at 6, half-life
  `sustained_half_life_samples`), standardised by its stationary standard
  deviation under independence; it finds a shift too small for any one value
  to stand out but too long to be noise.

Each statistic has its own learnt tail (`calibration.TailCalibration`, which
also absorbs the autocorrelation that inflates the sustained statistic), and
the score is -log10 of the smaller p-value, Bonferroni-corrected for the two
tests: `score = -log10(min(1, 2 * min(p_point, p_sustained)))`. A threshold of
4 thus means about one false alarm per 10,000 windows of a well-behaved series.

With `context_levels` > 0 a third test joins (`context.ContextTest`: the
density of value transitions the series has rarely made) and the correction
is for three: `score = -log10(min(1, 3 * min(p_point, p_sustained, p_context)))`.

With `spread_test` a further test joins (`spread.SpreadTest`: the recent rate
of wide residuals against its sampling distribution under the series'
long-run rate), and the correction counts it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.anomaly.baseline import Baseline
from detector.anomaly.calibration import TailCalibration
from detector.anomaly.columns import SeriesColumns
from detector.anomaly.context import ContextTest
from detector.anomaly.episodes import Episodes
from detector.anomaly.recurring import COLUMNS as RECURRING_COLUMNS
from detector.anomaly.regimes import COLUMNS as REGIME_COLUMNS
from detector.anomaly.spread import SpreadTest
from detector.config import Metrics

Z_CLIP_SUSTAINED = 6.0
SCORE_CAP = 50.0  # p < 1e-50 says nothing more; keeps scores finite when a flat series moves
# columns added after warm-start files were first written: a file without them gives them their initial values
ADDED_COLUMNS = frozenset(f"baseline/{name}" for name in (*RECURRING_COLUMNS, *REGIME_COLUMNS))


@dataclass(frozen=True)
class Scored:
    """One closed window's verdict for each series in `idx`."""

    score: np.ndarray  # -log10 p, 0 while warming up: the largest of the tests' parts
    point: np.ndarray  # the point test's part (-log10 of its corrected p-value)
    sustained: np.ndarray  # the sustained test's part
    context: np.ndarray  # the context test's part (0 with `context_levels` = 0)
    spread: np.ndarray  # the spread test's part (0 without `spread_test`)
    expected: np.ndarray
    z: np.ndarray
    ready: np.ndarray
    seasonal: np.ndarray  # 0 none, 1 daily, 2 weekly
    onset: np.ndarray  # bool: an episode opens here (emit a record)
    open: np.ndarray  # bool: inside an episode after this window
    shifted: np.ndarray  # bool: the baseline adopted a level shift here


class MetricDetector:
    def __init__(self, settings: Metrics) -> None:
        self.settings = settings
        self.baseline = Baseline(settings.level_half_life_samples, settings.scale_half_life_samples,
                                 settings.warmup_samples, settings.shift_adopt_samples,
                                 settings.seasonality == "auto", settings.season_min_gain)
        self.gamma = 1.0 - 0.5 ** (1.0 / settings.sustained_half_life_samples)
        self.point = TailCalibration()
        self.sustained = TailCalibration()
        self.episodes = Episodes(settings.persist_windows, settings.quiet_windows)
        self.cols = SeriesColumns({"zbar": (0, 0.0)})
        self.context = (ContextTest(settings.context_levels, settings.context_half_life_samples)
                        if settings.context_levels else None)
        self.spread = SpreadTest(settings.spread_half_life_samples) if settings.spread_test else None
        # the optional tests' state, each its own snapshot part
        self.optional_parts = {**(self.context.parts() if self.context else {}),
                               **({"spread": self.spread.cols} if self.spread else {})}
        # Bonferroni over the tests in use
        self.log10_tests = float(np.log10(2.0 + (self.context is not None) + (self.spread is not None)))

    def ensure(self, n_series: int) -> None:
        for part in (self.baseline.cols, self.point.cols, self.sustained.cols, self.episodes.cols, self.cols,
                     *self.optional_parts.values()):
            part.ensure(n_series)

    def step(self, idx: np.ndarray, t: np.ndarray, y: np.ndarray) -> Scored:
        """Score each series' value (series `idx`, time `t`, value `y`), then learn it."""
        idx = np.asarray(idx, dtype=np.int64)
        self.ensure(int(idx.max()) + 1 if len(idx) else 0)
        b = self.baseline.step(idx, np.asarray(t, np.float64), np.asarray(y, np.float64))
        zc = np.clip(b.z_raw, -Z_CLIP_SUSTAINED, Z_CLIP_SUSTAINED)
        zbar = np.where(b.ready, (1 - self.gamma) * self.cols["zbar"][idx] + self.gamma * zc, 0.0)
        u = zbar / np.sqrt(self.gamma / (2 - self.gamma))
        # each test's part of the score, Bonferroni-corrected for the tests in use; the score is the largest part
        def part(log10_p: np.ndarray) -> np.ndarray:
            return np.where(b.ready, np.clip(-(log10_p + self.log10_tests), 0.0, SCORE_CAP), 0.0)

        point = part(self.point.log10_p(idx, b.z))
        sustained = part(self.sustained.log10_p(idx, u))
        context = (np.zeros(len(idx)) if self.context is None
                   else part(self.context.step(idx, np.asarray(y, np.float64), b.ready)))
        spread = np.zeros(len(idx)) if self.spread is None else part(self.spread.step(idx, b.z_raw, b.ready, b.shifted))
        score = np.maximum.reduce([point, sustained, context, spread])
        hit = b.ready & (score >= self.settings.score_threshold)
        learn = b.ready.astype(np.float64)
        self.point.learn(idx, b.z_raw, learn)
        self.sustained.learn(idx, u, learn)
        # an adopted level shift starts the sustained statistic afresh
        self.cols["zbar"][idx] = np.where(b.shifted, 0.0, zbar)
        onset, is_open = self.episodes.step(idx, hit)
        return Scored(score=score, point=point, sustained=sustained, context=context, spread=spread,
                      expected=b.expected, z=b.z, ready=b.ready, seasonal=b.seasonal, onset=onset, open=is_open,
                      shifted=b.shifted)

    def to_state(self) -> dict:
        return {"baseline": self.baseline.cols.to_state(), "point": self.point.cols.to_state(),
                "sustained": self.sustained.cols.to_state(), "episodes": self.episodes.cols.to_state(),
                "detector": self.cols.to_state(), **{k: v.to_state() for k, v in self.optional_parts.items()}}

    # parts that carry what a series has learnt (an open episode is not carried to another process)
    def warm_parts(self) -> tuple[str, ...]:
        return ("baseline", "point", "sustained", "detector", *self.optional_parts)

    def series_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """What series `rows` have learnt, as flat "part/column" arrays (a warm-start file's content)."""
        state = self.to_state()
        return {f"{part}/{name}": state[part][name][rows] for part in self.warm_parts() for name in state[part]}

    def load_series_rows(self, dst: np.ndarray, arrays: dict[str, np.ndarray], src: np.ndarray, source: str) -> None:
        """Series `dst` take what saved series `src` learnt (`series_rows` output), shapes checked."""
        self.ensure(int(dst.max()) + 1 if len(dst) else 0)
        parts = {"baseline": self.baseline.cols, "point": self.point.cols, "sustained": self.sustained.cols,
                 "detector": self.cols, **self.optional_parts}
        for part in self.warm_parts():
            cols = parts[part]
            for name, (width, fill) in cols.spec.items():
                a = arrays.get(f"{part}/{name}")
                # a file written before (or without) the context or spread test: its series start that test afresh
                if a is None and (f"{part}/{name}" in ADDED_COLUMNS or part in self.optional_parts):
                    cols[name][dst] = fill
                    continue
                if a is None or a.ndim != (2 if width else 1) or (width and a.shape[1] != width) \
                        or (len(src) and int(src.max()) >= len(a)):
                    raise ValueError(f"{source}: metric detector array {part}/{name} is missing or has the wrong "
                                     f"shape ({None if a is None else a.shape})")
                cols[name][dst] = a[src]

    def load_state(self, state: dict, source: str) -> None:
        parts = {"baseline": self.baseline.cols, "point": self.point.cols, "sustained": self.sustained.cols,
                 "episodes": self.episodes.cols, "detector": self.cols, **self.optional_parts}
        if set(state) != set(parts):
            raise ValueError(f"{source}: metric detector parts {sorted(state)} do not match {sorted(parts)}")
        for name, cols in parts.items():
            cols.load_state(state[name], f"{source} ({name})")
        sizes = {cols.n for cols in parts.values()}
        if len(sizes) > 1:
            raise ValueError(f"{source}: metric detector parts hold different numbers of series {sorted(sizes)}")
