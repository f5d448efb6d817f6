"""Excursions that recur at the same time of day: expected after two days, not alarmed on every day.

A nightly backup that lifts a near-constant CPU for five minutes, or the edges
of a daily on/off pattern, leave residuals that a seasonal profile never
explains: a profile is an average over its phase bin, and one five-minute
spike a day removes almost none of a series' residual variance, so it never
earns its place. Without this, such a series alarms once a day forever.

This keeps, per series and per 30-minute phase of the (UTC) day, the largest
upward and the largest downward residual beyond `RECORD_Z` residual standard
deviations, for today and the two days before. An excursion that both of the
last two days had near the same phase (within `NEAR` bins, so a job that
wanders by up to an hour still counts) is expected today up to `MARGIN` times
the smaller of the two: the residual is judged only by what it exceeds that
allowance by. A recurring spike is learnt after two days, a spike far above
its usual size still stands out, and a spike at a new time of day is judged as
before. Nothing is allowed until excursions have recurred, so a series
without them scores exactly as without this module.
"""

from __future__ import annotations

import numpy as np

from detector.anomaly.columns import SeriesColumns

DAY_S = 86400.0
BINS = 48  # 30-minute phases
RECORD_Z = 3.5  # residuals beyond this many sigma are excursions worth remembering
NEAR = 2  # bins either side: an excursion within about an hour of the same time of day recurs
MARGIN = 0.5  # an excursion up to 1.5 x the smaller of the last two days' is expected


# the columns this keeps per series, part of the baseline's (so they snapshot and warm-start with it)
COLUMNS = {
    "rec_day": (0, np.nan),
    "hi0": (BINS, 0.0), "hi1": (BINS, 0.0), "hi2": (BINS, 0.0),
    "lo0": (BINS, 0.0), "lo1": (BINS, 0.0), "lo2": (BINS, 0.0),
}


class RecurringExcursions:
    def __init__(self, cols: SeriesColumns) -> None:
        self.cols = cols  # holds COLUMNS

    def _roll(self, idx: np.ndarray, day: np.ndarray) -> None:
        """Move each series' day buffers on to `day` (today, yesterday, the day before; gaps empty them)."""
        c = self.cols
        last = c["rec_day"][idx]
        gap = np.where(np.isnan(last), 0.0, day - last)
        moved = gap >= 1
        if moved.any():
            rows, g = idx[moved], gap[moved][:, None]
            for side in ("hi", "lo"):
                d0, d1 = c[f"{side}0"][rows], c[f"{side}1"][rows]
                c[f"{side}2"][rows] = np.where(g == 1, d1, np.where(g == 2, d0, 0.0))
                c[f"{side}1"][rows] = np.where(g == 1, d0, 0.0)
                c[f"{side}0"][rows] = 0.0
        c["rec_day"][idx] = np.where(np.isnan(last) | moved, day, last)

    def allowance(self, idx: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(low <= 0, high >= 0, phase bin) per series at time t: the residual range expected at this phase."""
        self._roll(idx, np.floor(t / DAY_S))
        b = (np.mod(t, DAY_S) * (BINS / DAY_S)).astype(np.int64) % BINS
        near = np.mod(b[:, None] + np.arange(-NEAR, NEAR + 1), BINS)
        rows = idx[:, None]
        c = self.cols
        # each day's largest excursion near this phase, then the smaller of the two days
        hi = np.minimum(c["hi1"][rows, near].max(axis=1), c["hi2"][rows, near].max(axis=1))
        lo = np.maximum(c["lo1"][rows, near].min(axis=1), c["lo2"][rows, near].min(axis=1))
        return (1.0 + MARGIN) * lo, (1.0 + MARGIN) * hi, b

    def record(self, idx: np.ndarray, b: np.ndarray, resid: np.ndarray, z: np.ndarray) -> None:
        """Remember today's excursions (residual `resid`, `z` sigma before any allowance) at phase bin `b`."""
        c = self.cols
        up, down = z >= RECORD_Z, z <= -RECORD_Z
        c["hi0"][idx, b] = np.where(up, np.maximum(c["hi0"][idx, b], resid), c["hi0"][idx, b])
        c["lo0"][idx, b] = np.where(down, np.minimum(c["lo0"][idx, b], resid), c["lo0"][idx, b])
