"""Series tables: (service, endpoint, version) and metric series -> dense indices.

Window aggregates are dense arrays indexed by series, so every closed window
of a partition lines up with every other and rollups are array reductions.
Cardinality is capped per service: past the cap a new endpoint, version or
metric series folds into the service's `other` bucket and the overflow is
counted, so a flood of distinct paths cannot grow memory without bound.
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

    def _slot(self, a: int, b: int, c: int) -> tuple[int, bool]:
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
                c = self._other
                self.overflow += 1
            cs.add(c)
        code = (a << (2 * _SHIFT)) | ((_NONE if b < 0 else b) << _SHIFT) | (_NONE if c < 0 else c)
        idx = self.index.get(code)
        if idx is None:
            idx = len(self.a)
            self.index[code] = idx
            self.a.append(a)
            self.b.append(b)
            self.c.append(c)
        return idx, self.overflow != overflow_before

    def map(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Series index per row; new keys are added (or folded into `other`)."""
        if len(a) == 0:
            return np.empty(0, dtype=np.int64)
        codes = _code3(a, b, c)
        uniq, inv = np.unique(codes, return_inverse=True)
        get = self.index.get
        out = np.empty(len(uniq), dtype=np.int64)
        for i, code in enumerate(uniq.tolist()):
            idx = get(code)
            if idx is None:
                idx, folded = self._slot(*_decode(code))
                if not folded:
                    self.index[code] = idx
                # folded keys are not remembered: a flood of distinct keys costs
                # time on each sighting, never memory
            out[i] = idx
        return out[inv]

    def to_state(self) -> dict:
        return {"a": self.a, "b": self.b, "c": self.c, "overflow": self.overflow,
                "aliases": [[k, v] for k, v in self.index.items()]}

    def load_state(self, state: dict) -> None:
        self.a, self.b, self.c = list(state["a"]), list(state["b"]), list(state["c"])
        self.overflow = state["overflow"]
        self.index = {int(k): int(v) for k, v in state["aliases"]}
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
