"""Episodes: one anomaly record per departure, not one per window.

A series-window is a hit when its score reaches the threshold. An episode
opens (and its one record is emitted) at the `persist`-th consecutive hit,
and closes after `quiet` consecutive windows without a hit; hits inside an
open episode emit nothing more.
"""

from __future__ import annotations

import numpy as np

from detector.anomaly.columns import SeriesColumns


class Episodes:
    def __init__(self, persist: int, quiet: int) -> None:
        self.persist = persist
        self.quiet = quiet
        self.cols = SeriesColumns({"run": (0, 0.0), "calm": (0, 0.0), "open": (0, 0.0)})

    def step(self, idx: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(onset, open): where an episode opens at this window, and where one is open after it."""
        c = self.cols
        run = np.where(hit, c["run"][idx] + 1, 0.0)
        calm = np.where(hit, 0.0, c["calm"][idx] + 1)
        was_open = c["open"][idx] > 0
        onset = ~was_open & (run >= self.persist)
        is_open = (was_open & (calm < self.quiet)) | onset
        c["run"][idx], c["calm"][idx], c["open"][idx] = run, calm, is_open.astype(np.float64)
        return onset, is_open
