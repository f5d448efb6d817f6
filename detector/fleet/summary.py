"""One partition's summary of one closed window: what the rest of the fleet needs for blame.

Per service the partition owns: requests, errors and completed transactions of
its established versions (versions under verification excluded: they may be
failing on their own), their latency sketch (mergeable, so a span's latency is
exact) and quantiles, requests against the time-of-day expectation, the level
of every metric series (name, labels, sum, samples), and the log templates
logged above INFO for the first time in the window (id, kind, first seen, text). Encoded with orjson; `decode` validates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from detector.aggregate import sketch

VERSION = 1


class SummaryError(ValueError):
    """A fleet message that is not a summary of this format."""


@dataclass(frozen=True)
class MetricLevel:
    name: str
    labels: str  # "k=v,k=v", "" for none
    total: float
    samples: int


@dataclass(frozen=True)
class TemplateNote:
    """A log template of the service logged above INFO for the first time in the window."""

    id: str
    kind: str
    first_seen_ts: float
    text: str


@dataclass(frozen=True)
class ServiceSummary:
    service: str
    requests: int
    errors: int
    txn: int
    lat_buckets: np.ndarray  # int32 sketch buckets, increasing
    lat_counts: np.ndarray  # int64
    quantiles: tuple[float, float, float]  # p50, p95, p99 ms (nan without requests)
    expected_requests: float | None  # time-of-day expectation, None while not learnt
    metrics: tuple[MetricLevel, ...]
    templates: tuple[TemplateNote, ...]  # templates first logged above INFO in this window

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency(self) -> sketch.Sketch:
        return sketch.Sketch(self.lat_buckets, self.lat_counts)


@dataclass(frozen=True)
class WindowSummary:
    """Everything partition `partition` of `partitions` publishes for the window [start, end)."""

    partition: int
    partitions: int
    start: float
    end: float
    services: tuple[ServiceSummary, ...]


def quantiles_of(s: sketch.Sketch) -> tuple[float, float, float]:
    if not sketch.count(s):
        return (float("nan"),) * 3
    q = np.atleast_1d(sketch.quantile(s, np.array([0.5, 0.95, 0.99])))
    return float(q[0]), float(q[1]), float(q[2])


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 3)


def _real(x: float) -> float | str:
    """A float JSON can carry: a metric series' window sum overflows to inf on valid samples near
    1.8e308 (orjson would write null), so non-finite values travel as "inf", "-inf" or "nan"."""
    x = float(x)
    return x if np.isfinite(x) else repr(x)


def _unreal(v) -> float:
    if type(v) is str and v not in ("inf", "-inf", "nan"):
        raise SummaryError(f"not a number: {v[:32]!r}")
    return float("nan") if v is None else float(v)  # null: nan, as written before non-finite values travelled


def encode(w: WindowSummary) -> bytes:
    return orjson.dumps({
        "v": VERSION, "p": w.partition, "n": w.partitions, "start": w.start, "end": w.end,
        "s": [{
            "svc": s.service, "req": s.requests, "err": s.errors, "txn": s.txn,
            "lb": s.lat_buckets.tolist(), "lc": s.lat_counts.tolist(),
            "q": [_num(x) for x in s.quantiles],
            "exp": None if s.expected_requests is None else round(s.expected_requests, 3),
            "m": [[m.name, m.labels, _real(m.total), m.samples] for m in s.metrics],
            "t": [[t.id, t.kind, t.first_seen_ts, t.text] for t in s.templates],
        } for s in w.services]})


def decode(data: bytes) -> WindowSummary:
    try:
        d = orjson.loads(data)
        if d.get("v") != VERSION:
            raise SummaryError(f"fleet summary format {d.get('v')!r}, this build reads {VERSION}")
        services = []
        for s in d["s"]:
            lb = np.asarray(s["lb"], dtype=np.int32)
            lc = np.asarray(s["lc"], dtype=np.int64)
            if len(lb) != len(lc) or (len(lb) > 1 and not (np.diff(lb) > 0).all()) or (lc <= 0).any():
                raise SummaryError(f"latency sketch of {s['svc']!r} is malformed")
            q = tuple(float("nan") if x is None else float(x) for x in s["q"])
            if len(q) != 3:
                raise SummaryError("three latency quantiles expected")
            services.append(ServiceSummary(
                service=str(s["svc"]), requests=int(s["req"]), errors=int(s["err"]), txn=int(s["txn"]),
                lat_buckets=lb, lat_counts=lc, quantiles=q,  # type: ignore[arg-type]
                expected_requests=None if s["exp"] is None else float(s["exp"]),
                metrics=tuple(MetricLevel(str(m[0]), str(m[1]), _unreal(m[2]), int(m[3])) for m in s["m"]),
                templates=tuple(TemplateNote(str(t[0]), str(t[1]), float(t[2]), str(t[3])) for t in s["t"])))
        p, n = int(d["p"]), int(d["n"])
        if not 0 <= p < n:
            raise SummaryError(f"partition {p} of {n}")
        return WindowSummary(partition=p, partitions=n, start=float(d["start"]), end=float(d["end"]),
                             services=tuple(services))
    except SummaryError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise SummaryError(f"not a fleet summary: {e}") from None
