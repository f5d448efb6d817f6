"""Columnar batches: what decoding hands to the core.

One struct of numpy arrays per event type. Strings the core groups by are
interned to int32 ids (see `interner.Interner`); -1 means absent. `pos` is the
event's position in the batch of raw messages it came from, so the edges can
map any row back to its (topic, partition, offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LEVEL_INFO, LEVEL_WARN, LEVEL_ERROR, LEVEL_FATAL = 0, 1, 2, 3
LEVEL_NAMES = ("info", "warn", "error", "fatal")

PHASES = ("started", "finished", "rolled_back")
STRATEGIES = ("rolling", "canary", "blue_green", "recreate")


def _i32(n: int = 0) -> np.ndarray:
    return np.empty(n, dtype=np.int32)


def _f64(n: int = 0) -> np.ndarray:
    return np.empty(n, dtype=np.float64)


@dataclass
class RequestColumns:
    pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: np.ndarray = field(default_factory=_f64)
    service: np.ndarray = field(default_factory=_i32)
    endpoint: np.ndarray = field(default_factory=_i32)
    version: np.ndarray = field(default_factory=_i32)
    instance: np.ndarray = field(default_factory=_i32)
    status: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))
    latency_ms: np.ndarray = field(default_factory=_f64)
    txn: np.ndarray = field(default_factory=_i32)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> "RequestColumns":
        return RequestColumns(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass
class LogColumns:
    pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: np.ndarray = field(default_factory=_f64)
    service: np.ndarray = field(default_factory=_i32)
    version: np.ndarray = field(default_factory=_i32)
    instance: np.ndarray = field(default_factory=_i32)
    level: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    logger: np.ndarray = field(default_factory=_i32)
    message: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> "LogColumns":
        cols = {f: getattr(self, f)[idx] for f in self.__dataclass_fields__ if f != "message"}
        msgs = self.message
        return LogColumns(**cols, message=[msgs[i] for i in np.asarray(idx).tolist()])


@dataclass
class MetricColumns:
    pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: np.ndarray = field(default_factory=_f64)
    service: np.ndarray = field(default_factory=_i32)
    name: np.ndarray = field(default_factory=_i32)
    labels: np.ndarray = field(default_factory=_i32)  # id of canonical "k=v,k=v" (sorted keys); -1 none
    value: np.ndarray = field(default_factory=_f64)
    version: np.ndarray = field(default_factory=_i32)
    instance: np.ndarray = field(default_factory=_i32)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> "MetricColumns":
        return MetricColumns(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class DeployEvent:
    """Deploys are rare: plain objects, strings kept as strings."""

    pos: int
    ts: float
    service: str
    deploy_id: str
    version: str
    phase: str = "started"
    previous_version: str | None = None
    strategy: str | None = None
    canary_weight: float | None = None
    change_kind: str | None = None
    commit: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Rejected:
    pos: int
    reason: str


@dataclass
class DecodedBatch:
    requests: RequestColumns = field(default_factory=RequestColumns)
    logs: LogColumns = field(default_factory=LogColumns)
    metrics: MetricColumns = field(default_factory=MetricColumns)
    deploys: list[DeployEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.requests) + len(self.logs) + len(self.metrics) + len(self.deploys)

    def max_ts(self) -> float | None:
        parts = [c.ts for c in (self.requests, self.logs, self.metrics) if len(c)]
        m = max((float(p.max()) for p in parts), default=None)
        if self.deploys:
            d = max(e.ts for e in self.deploys)
            m = d if m is None else max(m, d)
        return m
