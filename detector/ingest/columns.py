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
    reviewers: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs


@dataclass(frozen=True)
class CheckEvent:
    """One post-deploy smoke test result (rare: a plain object)."""

    pos: int
    ts: float
    service: str
    name: str
    passed: bool
    version: str | None = None
    deploy_id: str | None = None
    instance: str | None = None
    duration_ms: float | None = None
    message: str | None = None
    url: str | None = None


INCIDENT_STATUSES = ("opened", "resolved")
ROOT_CAUSES = ("code", "config", "data_or_infra", "unknown")


@dataclass(frozen=True)
class IncidentEvent:
    """What people found: the ground truth tuning learns from. Never moves event time."""

    pos: int
    ts: float
    service: str
    incident_id: str
    status: str = "opened"
    severity: str | None = None
    title: str | None = None
    deploy_id: str | None = None
    root_cause: str | None = None
    resolved_ts: float | None = None


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
    checks: list[CheckEvent] = field(default_factory=list)
    incidents: list[IncidentEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)  # positions the time guard left for the next batch

    @property
    def accepted(self) -> int:
        return (len(self.requests) + len(self.logs) + len(self.metrics) + len(self.deploys) + len(self.checks)
                + len(self.incidents))

    def max_ts(self) -> float | None:
        """The newest event time of the telemetry (incidents are labels: they never move event time)."""
        parts = [c.ts for c in (self.requests, self.logs, self.metrics) if len(c)]
        m = max((float(p.max()) for p in parts), default=None)
        for events in (self.deploys, self.checks):
            if events:
                d = max(e.ts for e in events)
                m = d if m is None else max(m, d)
        return m

    def times(self) -> tuple[np.ndarray, np.ndarray]:
        """(event time, position) of every accepted event, in no particular order."""
        cols = [c for c in (self.requests, self.logs, self.metrics) if len(c)]
        few = [*self.deploys, *self.checks, *self.incidents]
        ts = [c.ts for c in cols] + [np.fromiter((e.ts for e in few), np.float64, len(few))]
        pos = [c.pos for c in cols] + [np.fromiter((e.pos for e in few), np.int64, len(few))]
        return np.concatenate(ts), np.concatenate(pos)

    def drop(self, positions: np.ndarray) -> None:
        """Remove the events at these batch positions (from every type)."""
        for name in ("requests", "logs", "metrics"):
            c = getattr(self, name)
            if len(c):
                keep = ~np.isin(c.pos, positions)
                if not keep.all():
                    setattr(self, name, c.take(np.flatnonzero(keep)))
        gone = set(np.asarray(positions).tolist())
        for name in ("deploys", "checks", "incidents"):
            events = getattr(self, name)
            if events:
                setattr(self, name, [e for e in events if e.pos not in gone])
