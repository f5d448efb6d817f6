"""Log lines waiting for their window to close before they are mined.

The miner generalises a template's text (and so its public id) as lines come
in. If lines were mined as they arrive, the text a window's counts are read
under would depend on how far the input got past that window when it closed:
a replay reading thousands of lines at a time and a live run reading a few
hundred would count the same lines under different template ids. Held here
per window, in arrival order, the lines are mined when their window closes,
window after window, so the miner has seen exactly the lines of the windows
closed so far, whatever the batching.

Rows keep the template state's own string ids (service, version), so they do
not depend on the caller's interner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PendingRows:
    """One window's lines in arrival order."""

    ts: list[np.ndarray] = field(default_factory=list)
    service: list[np.ndarray] = field(default_factory=list)
    version: list[np.ndarray] = field(default_factory=list)
    level: list[np.ndarray] = field(default_factory=list)
    message: list[str] = field(default_factory=list)

    def add(self, ts: np.ndarray, service: np.ndarray, version: np.ndarray, level: np.ndarray,
            message: list[str]) -> None:
        self.ts.append(ts)
        self.service.append(service)
        self.version.append(version)
        self.level.append(level)
        self.message.extend(message)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(ts float64, service int32, version int32, level int64, messages), in arrival order."""
        def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
        return (cat(self.ts, np.float64), cat(self.service, np.int32), cat(self.version, np.int32),
                cat(self.level, np.int64), self.message)


class PendingLines:
    """Lines of the windows not yet closed, by window index."""

    def __init__(self, window_s: float) -> None:
        self.window_s = float(window_s)
        self.windows: dict[int, PendingRows] = {}

    def __len__(self) -> int:
        return sum(len(p.message) for p in self.windows.values())

    def add(self, ts: np.ndarray, service: np.ndarray, version: np.ndarray, level: np.ndarray,
            message: list[str]) -> None:
        w = np.floor(ts / self.window_s).astype(np.int64)
        lo, hi = int(w.min()), int(w.max())
        if lo == hi:
            self._rows(lo).add(ts, service, version, level, message)
            return
        for k in np.unique(w).tolist():
            sel = np.flatnonzero(w == k)
            self._rows(k).add(ts[sel], service[sel], version[sel], level[sel], [message[i] for i in sel.tolist()])

    def _rows(self, k: int) -> PendingRows:
        rows = self.windows.get(k)
        if rows is None:
            rows = self.windows[k] = PendingRows()
        return rows

    def take_before(self, upto: int) -> list[tuple[int, PendingRows]]:
        """The windows below index `upto`, oldest first, removed from the buffer."""
        ready = sorted(k for k in self.windows if k < upto)
        return [(k, self.windows.pop(k)) for k in ready]

    def last(self) -> int | None:
        return max(self.windows) if self.windows else None

    # --- state ---

    def to_state(self) -> dict:
        out = {}
        for k, rows in self.windows.items():
            ts, svc, ver, lvl, msgs = rows.arrays()
            out[str(k)] = [ts.tolist(), svc.tolist(), ver.tolist(), lvl.tolist(), list(msgs)]
        return out

    @classmethod
    def from_state(cls, state: dict, window_s: float, n_strings: int) -> "PendingLines":
        p = cls(window_s)
        for key, row in state.items():
            k = int(key)
            ts, svc, ver, lvl, msgs = row
            ts_a = np.asarray(ts, dtype=np.float64)
            svc_a, ver_a, lvl_a = (np.asarray(a, dtype=np.int64) for a in (svc, ver, lvl))
            n = len(ts_a)
            if ts_a.ndim != 1 or not all(len(a) == n for a in (svc_a, ver_a, lvl_a, msgs)):
                raise ValueError(f"pending log lines of window {k}: columns of different lengths")
            if not all(isinstance(m, str) for m in msgs):
                raise ValueError(f"pending log lines of window {k}: messages must be strings")
            if n and (np.any(np.floor(ts_a / p.window_s) != k) or svc_a.min() < 0 or svc_a.max() >= n_strings
                      or ver_a.min() < -1 or ver_a.max() >= n_strings or lvl_a.min() < 0 or lvl_a.max() > 7):
                raise ValueError(f"pending log lines of window {k}: a time, string id or level out of range")
            if n:
                p._rows(k).add(ts_a, svc_a.astype(np.int32), ver_a.astype(np.int32), lvl_a, list(msgs))
        return p
