"""Per-window template counts by (template, version, level), and their history.

Event-time tumbling windows of `window_s`, aligned with the core's windows
(window k covers [k*window_s, (k+1)*window_s)). The service is implied by the
template index. While a window is open its rows are kept as packed int64
codes, `template << 24 | (version + 1) << 2 | level`, merged with np.unique;
closing turns them into a `WindowArrays` (one row per distinct key), which is
kept for `history_s` so the tests can read pre-deploy baselines and
post-deploy look-backs. Rows for an already closed window are late: counted
in `late_rows`, never folded in (the core's watermark normally drops them
first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detector.aggregate.grouping import unique_counts

_VERSION_BITS = 22
_MAX_VERSION_ID = (1 << _VERSION_BITS) - 2
_COMPACT_ROWS = 262_144


@dataclass(frozen=True)
class WindowArrays:
    """Counts of one closed window: one row per (template, version, level) with lines."""

    start_ts: float
    end_ts: float
    tpl: np.ndarray  # int32 template index
    version: np.ndarray  # int32 version string id, -1 unknown
    level: np.ndarray  # int8 level code
    count: np.ndarray  # int64 lines


def _decode(start: float, end: float, codes: np.ndarray, counts: np.ndarray) -> WindowArrays:
    return WindowArrays(
        start_ts=start,
        end_ts=end,
        tpl=(codes >> (_VERSION_BITS + 2)).astype(np.int32),
        version=(((codes >> 2) & ((1 << _VERSION_BITS) - 1)) - 1).astype(np.int32),
        level=(codes & 3).astype(np.int8),
        count=counts.astype(np.int64),
    )


class _Open:
    __slots__ = ("codes", "weights", "rows")

    def __init__(self) -> None:
        self.codes: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.rows = 0

    def add(self, codes: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.codes.append(codes)
        self.weights.append(np.ones(len(codes), np.int64) if weights is None else weights)
        self.rows += len(codes)
        if self.rows > _COMPACT_ROWS and len(self.codes) > 1:
            codes, weights = self.merged()
            self.codes, self.weights, self.rows = [codes], [weights], len(codes)

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.codes:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return unique_counts(np.concatenate(self.codes), np.concatenate(self.weights))


class WindowCounts:
    """Open and recently closed windows of template counts for one partition."""

    def __init__(self, window_s: float, history_s: float) -> None:
        self.window_s = float(window_s)
        self.history_s = float(history_s)
        self.open: dict[int, _Open] = {}
        self.closed: dict[int, WindowArrays] = {}  # window index -> counts, in time order
        self.closed_before: int | None = None  # every window below this index is closed
        self.late_rows = 0

    def add(self, ts: np.ndarray, tpl: np.ndarray, version: np.ndarray, level: np.ndarray) -> None:
        if not len(ts):
            return
        if version.size and int(version.max()) > _MAX_VERSION_ID:
            raise ValueError(f"version string id {int(version.max())} exceeds {_MAX_VERSION_ID}: "
                             "too many distinct services and versions for the log template counts")
        w = np.floor(ts / self.window_s).astype(np.int64)
        codes = (tpl.astype(np.int64) << (_VERSION_BITS + 2)) | ((version.astype(np.int64) + 1) << 2) \
            | level.astype(np.int64)
        if self.closed_before is not None:
            ok = w >= self.closed_before
            if not ok.all():
                self.late_rows += int(len(w) - ok.sum())
                w, codes = w[ok], codes[ok]
        if not len(w):
            return
        lo, hi = int(w.min()), int(w.max())
        if lo == hi:
            self._window(lo).add(codes)
            return
        for k in np.unique(w).tolist():
            self._window(k).add(codes[w == k])

    def _window(self, k: int) -> _Open:
        win = self.open.get(k)
        if win is None:
            win = self.open[k] = _Open()
        return win

    def close(self, upto_ts: float) -> list[WindowArrays]:
        """Close, in time order, every open window ending at or before `upto_ts`."""
        if not math.isfinite(upto_ts):
            raise ValueError(f"upto_ts must be a finite event time (got {upto_ts}); use close_all at end of input")
        upto = math.floor(upto_ts / self.window_s)
        if self.closed_before is None or upto > self.closed_before:
            self.closed_before = upto
        out = []
        for k in sorted(k for k in self.open if k < self.closed_before):
            codes, counts = self.open.pop(k).merged()
            arrays = _decode(k * self.window_s, (k + 1) * self.window_s, codes, counts)
            self.closed[k] = arrays
            out.append(arrays)
        if self.closed:
            # `closed` is in time order (windows close oldest first, none below `closed_before`
            # is opened again, `from_state` sorts): the windows to forget are at its front
            oldest_kept = self.closed_before - math.ceil(self.history_s / self.window_s)
            closed = self.closed
            while closed:
                k = next(iter(closed))
                if k >= oldest_kept:
                    break
                del closed[k]
        return out

    def close_all(self) -> list[WindowArrays]:
        """End of input: close whatever is open."""
        if not self.open:
            return []
        return self.close((max(self.open) + 1) * self.window_s)

    def is_closed(self, start_ts: float) -> bool:
        return self.closed_before is not None and math.floor(start_ts / self.window_s) < self.closed_before

    def between(self, start_ts: float, end_ts: float) -> list[WindowArrays]:
        """Closed windows whose start lies in [start_ts, end_ts), in time order."""
        if not self.closed:
            return []
        first, last = next(iter(self.closed)), next(reversed(self.closed))
        lo = max(math.ceil(start_ts / self.window_s - 1e-9), first)
        hi = min(math.ceil(end_ts / self.window_s - 1e-9), last + 1)
        closed = self.closed
        return [closed[k] for k in range(lo, hi) if k in closed]

    # --- state ---

    def to_state(self) -> dict:
        def enc(codes: np.ndarray, counts: np.ndarray) -> list:
            return [codes.tolist(), counts.tolist()]

        closed = {}
        for k, a in self.closed.items():
            codes = (a.tpl.astype(np.int64) << (_VERSION_BITS + 2)) | ((a.version.astype(np.int64) + 1) << 2) \
                | a.level.astype(np.int64)
            closed[str(k)] = enc(codes, a.count)
        return {
            "open": {str(k): enc(*w.merged()) for k, w in self.open.items()},
            "closed": closed,
            "closed_before": self.closed_before,
            "late_rows": self.late_rows,
        }

    @classmethod
    def from_state(cls, state: dict, window_s: float, history_s: float) -> "WindowCounts":
        wc = cls(window_s, history_s)
        for k, (codes, counts) in state["open"].items():
            c, n = _arrays(codes, counts)
            wc._window(int(k)).add(c, n)
        for k, (codes, counts) in state["closed"].items():
            c, n = _arrays(codes, counts)
            k = int(k)
            wc.closed[k] = _decode(k * wc.window_s, (k + 1) * wc.window_s, c, n)
        wc.closed = dict(sorted(wc.closed.items()))
        cb = state["closed_before"]
        wc.closed_before = None if cb is None else int(cb)
        wc.late_rows = int(state["late_rows"])
        return wc


def _arrays(codes: list, counts: list) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(codes, dtype=np.int64)
    n = np.asarray(counts, dtype=np.int64)
    if c.ndim != 1 or c.shape != n.shape or (c.size and c.min() < 0):
        raise ValueError("window counts must be two equal-length lists of non-negative integers")
    return c, n
