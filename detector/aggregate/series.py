"""Series tables: (service, endpoint, version) and metric series -> dense indices.

Window aggregates are dense arrays indexed by series, so every closed window
of a partition lines up with every other and rollups are array reductions.
Cardinality is capped per service: past the cap a new endpoint, version or
metric series folds into the service's `other` bucket and the overflow is
counted, so a flood of distinct paths cannot grow memory without bound.

Versions turn over: a service deployed every hour meets the version cap in
a day. When `retire_after_s` is set (the core sets it to the history it
keeps), a new version over the cap takes the slots of the version of that
service silent for longest, if it has been silent for longer than that: no
window the core still holds has rows of it, so its series indices can be
renamed without mixing two versions' data.
"""

from __future__ import annotations

import numpy as np

from detector.config import Limits
from detector.ingest.interner import Interner

OTHER = "other"
_NONE = (1 << 21) - 1  # code slot for "absent" (-1) ids
_SHIFT = 21


def _code3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    b = np.where(b < 0, _NONE, b).astype(np.int64)
    c = np.where(c < 0, _NONE, c).astype(np.int64)
    return (a << (2 * _SHIFT)) | (b << _SHIFT) | c


def _decode(code: int) -> tuple[int, int, int]:
    a = code >> (2 * _SHIFT)
    b = (code >> _SHIFT) & _NONE
    c = code & _NONE
    return a, (-1 if b == _NONE else b), (-1 if c == _NONE else c)


class _Table:
    """Grows a (a, b, c) -> index map with per-`a` caps on distinct b and c."""

    def __init__(self, interner: Interner, cap_b: int, cap_c: int, max_a: int) -> None:
        self.interner = interner
        self.cap_b, self.cap_c, self.max_a = cap_b, cap_c, max_a
        self.index: dict[int, int] = {}
        self.a: list[int] = []
        self.b: list[int] = []
        self.c: list[int] = []
        self._b_seen: dict[int, set[int]] = {}
        self._c_seen: dict[int, set[int]] = {}
        self.overflow = 0
        self._other = interner.intern(OTHER)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.retire_after_s: float | None = None  # None: versions are never retired
        self._seen = np.full(0, np.inf)  # per series: event time last mapped (inf: unknown)
        self.retired = 0

    def __len__(self) -> int:
        return len(self.a)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None or len(self._arrays[0]) != len(self.a):
            self._arrays = (
                np.asarray(self.a, dtype=np.int32),
                np.asarray(self.b, dtype=np.int32),
                np.asarray(self.c, dtype=np.int32),
            )
        return self._arrays

    def _touch(self, idx: np.ndarray, now: float) -> None:
        n = len(self.a)
        if len(self._seen) < n:
            grown = np.full(max(n, 2 * len(self._seen), 64), np.inf)
            grown[:len(self._seen)] = self._seen
            self._seen = grown
        self._seen[idx] = now

    def _retire(self, a: int, cs: set[int], now: float | None) -> int | None:
        """The `c` of service `a` silent for longest, if longer than `retire_after_s`; its
        series are taken out of the index (the caller renames them)."""
        if self.retire_after_s is None or now is None:
            return None
        a_arr, _, c_arr = self.arrays()
        seen = self._seen[:len(a_arr)] if len(self._seen) >= len(a_arr) else \
            np.concatenate([self._seen, np.full(len(a_arr) - len(self._seen), np.inf)])
        mine = (a_arr == a) & (c_arr != self._other) & (c_arr >= 0)
        if not mine.any():
            return None
        cands = [c for c in cs if c != self._other]
        last = {c: float(seen[mine & (c_arr == c)].max(initial=-np.inf)) for c in cands}
        if not last:
            return None
        victim = min(last, key=lambda c: (last[c], c))
        if not last[victim] < now - self.retire_after_s:
            return None
        return victim

    def _rename(self, a: int, old: int, new: int, now: float) -> None:
        for idx in np.flatnonzero((self.arrays()[0] == a) & (self.arrays()[2] == old)).tolist():
            b = self.b[idx]
            del self.index[(a << (2 * _SHIFT)) | ((_NONE if b < 0 else b) << _SHIFT) | old]
            self.index[(a << (2 * _SHIFT)) | ((_NONE if b < 0 else b) << _SHIFT) | new] = idx
            self.c[idx] = new
            self._touch(np.array([idx]), now)
        self._arrays = None
        self.retired += 1

    def _slot(self, a: int, b: int, c: int, now: float | None = None) -> tuple[int, bool]:
        a, b, c, folded = self._admit(a, b, c, now)
        return self._series(a, b, c), folded

    def _admit(self, a: int, b: int, c: int, now: float | None = None) -> tuple[int, int, int, bool]:
        """(a, b, c) after the caps (folded into `other` past them), and whether any folded."""
        overflow_before = self.overflow
        if a not in self._b_seen and len(self._b_seen) >= self.max_a:
            a = self._other
            self.overflow += 1
        bs = self._b_seen.setdefault(a, set())
        if b >= 0 and b not in bs:
            if len(bs) >= self.cap_b:
                b = self._other
                self.overflow += 1
            bs.add(b)
        cs = self._c_seen.setdefault(a, set())
        if c >= 0 and c not in cs:
            if len(cs) >= self.cap_c:
                victim = self._retire(a, cs, now)
                if victim is not None:
                    cs.discard(victim)
                    self._rename(a, victim, c, now)
                else:
                    c = self._other
                    self.overflow += 1
            cs.add(c)
        return a, b, c, self.overflow != overflow_before

    def _series(self, a: int, b: int, c: int) -> int:
        code = (a << (2 * _SHIFT)) | ((_NONE if b < 0 else b) << _SHIFT) | (_NONE if c < 0 else c)
        idx = self.index.get(code)
        if idx is None:
            idx = len(self.a)
            self.index[code] = idx
            self.a.append(a)
            self.b.append(b)
            self.c.append(c)
        return idx

    def map(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, now: float | None = None) -> np.ndarray:
        """Series index per row; new keys are added (or folded into `other`). `now`, the
        batch's latest event time, marks the series as seen (for version turnover)."""
        if len(a) == 0:
            return np.empty(0, dtype=np.int64)
        codes = _code3(a, b, c)
        uniq, first, inv = np.unique(codes, return_index=True, return_inverse=True)
        get = self.index.get
        out = np.empty(len(uniq), dtype=np.int64)
        new = [i for i, code in enumerate(uniq.tolist()) if get(code) is None]
        # Past a cap, which new endpoint or version gets a slot goes by arrival order, not by
        # key: in key order an endpoint first seen late took a slot when read in one batch and
        # folded into `other` in chunks. The new series are then numbered in key order, as before.
        admitted = {}
        for i in sorted(new, key=lambda i: int(first[i])):
            admitted[i] = self._admit(*_decode(int(uniq[i])), now=now)
        for i, code in enumerate(uniq.tolist()):
            if i in admitted:
                a_, b_, c_, folded = admitted[i]
                idx = self._series(a_, b_, c_)
                if not folded:
                    self.index[code] = idx
                # folded keys are not remembered: a flood of distinct keys costs
                # time on each sighting, never memory
            else:
                idx = get(code)
                if idx is None:  # its series was renamed for a new version of this batch
                    idx, folded = self._slot(*_decode(code), now=now)
                    if not folded:
                        self.index[code] = idx
            out[i] = idx
        if now is not None and self.retire_after_s is not None:
            self._touch(out, now)
        return out[inv]

    def to_state(self) -> dict:
        seen = self._seen[:len(self.a)]
        return {"a": self.a, "b": self.b, "c": self.c, "overflow": self.overflow,
                "aliases": [[k, v] for k, v in self.index.items()],
                # inf (never marked) is kept as null: JSON has no infinity
                "seen": [None if not np.isfinite(x) else float(x) for x in seen.tolist()]
                if self.retire_after_s is not None else [],
                "retired": self.retired}

    def load_state(self, state: dict) -> None:
        self.a, self.b, self.c = list(state["a"]), list(state["b"]), list(state["c"])
        self.overflow = state["overflow"]
        self.index = {int(k): int(v) for k, v in state["aliases"]}
        seen = [np.inf if x is None else float(x) for x in state.get("seen", [])]
        self._seen = np.array(seen + [np.inf] * (len(self.a) - len(seen)), dtype=np.float64)
        self.retired = int(state.get("retired", 0))
        self._b_seen, self._c_seen = {}, {}
        for a, b, c in zip(self.a, self.b, self.c):
            if b >= 0:
                self._b_seen.setdefault(a, set()).add(b)
            else:
                self._b_seen.setdefault(a, set())
            if c >= 0:
                self._c_seen.setdefault(a, set()).add(c)
        self._arrays = None


class RequestSeries(_Table):
    """(service, endpoint, version) -> series index; endpoints and versions capped per service."""

    def __init__(self, interner: Interner, limits: Limits) -> None:
        super().__init__(interner, limits.max_endpoints_per_service, limits.max_versions_per_service,
                         limits.max_services)

    @property
    def service(self) -> np.ndarray:
        return self.arrays()[0]

    @property
    def endpoint(self) -> np.ndarray:
        return self.arrays()[1]

    @property
    def version(self) -> np.ndarray:
        return self.arrays()[2]


class MetricSeries(_Table):
    """(service, name, labels) -> metric series index, capped per service.

    Metric samples are infrastructure evidence (CPU, database latency); they
    are kept per service and name, across versions, which is how they are read.
    """

    def __init__(self, interner: Interner, limits: Limits) -> None:
        per = limits.max_metric_series_per_service
        super().__init__(interner, per, per, limits.max_services)
