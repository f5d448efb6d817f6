"""Two regimes of a series: a level it keeps returning to is a known state, not a new departure each time.

A batch worker that is busy or idle, a cache that is warm or cold, a daily
on/off pattern: the series switches between two levels. Level-shift
adoption (`baseline.SHIFT_Z` for `shift_adopt_samples` values) makes each
switch a new normal after a while, but every switch still starts with a
dozen large residuals, and a calibrated tail that learns them (as it
should learn any routine behaviour) grows so wide that a real anomaly on
either level no longer stands out.

So each series remembers the level it left at its last adopted shift (the
other regime) and counts adopted shifts that returned to it. Once the
series has gone there and back `KNOWN_SWITCHES` times (two round trips), a
value closer to the other regime than to the current level is judged
against the other regime, and the series switches at once: a routine
switch is no residual at all, and the tail stays that of the noise. A value
far from both (the high level 50 % higher) is judged against the nearer
one. A shift to a third level starts the count again. A series that never
returns to an old level (most do not) scores exactly as without this.
"""

from __future__ import annotations

import numpy as np

from detector.anomaly.columns import SeriesColumns

KNOWN_SWITCHES = 4  # adopted shifts between the same two levels before a switch is routine
RETURN_Z = 3.0  # an adopted shift this close (in sigma) to the other regime's level is a return to it

# the columns this keeps per series, part of the baseline's (so they snapshot and warm-start with it)
COLUMNS = {"alt": (0, np.nan), "switches": (0, 0.0)}


class Regimes:
    def __init__(self, cols: SeriesColumns) -> None:
        self.cols = cols  # holds COLUMNS

    def choose(self, idx: np.ndarray, level: np.ndarray, season: np.ndarray, y: np.ndarray,
               ready: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the level y is judged against, bool: the series switched to its other regime at y)."""
        c = self.cols
        alt = c["alt"][idx]
        known = ready & (c["switches"][idx] >= KNOWN_SWITCHES)
        switch = known & (np.abs(y - alt - season) < np.abs(y - level - season))
        c["alt"][idx] = np.where(switch, level, alt)
        return np.where(switch, alt, level), switch

    def shifted(self, idx: np.ndarray, shifted: np.ndarray, old_level: np.ndarray, new_level: np.ndarray,
                sigma: np.ndarray) -> None:
        """After the baseline adopted a shift from `old_level` to `new_level` (where `shifted`)."""
        c = self.cols
        alt = c["alt"][idx]
        back = ~np.isnan(alt) & (np.abs(new_level - alt) <= RETURN_Z * sigma)
        c["switches"][idx] = np.where(shifted, np.where(back, c["switches"][idx] + 1, 1.0), c["switches"][idx])
        c["alt"][idx] = np.where(shifted, old_level, alt)
