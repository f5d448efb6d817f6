"""Event-time windows: order within the lateness never matters, late events are counted, caps hold."""

from __future__ import annotations

import numpy as np
import orjson

from detector.aggregate import sketch
from detector.config import Limits
from detector.ingest.contract import decode_batch
from detector.ingest.interner import Interner
from detector.aggregate.series import MetricSeries, RequestSeries
from detector.aggregate.windows import WindowStore

T0 = 1764140400.0


def _events(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.uniform(0, 120, n))
    out = []
    for i, t in enumerate(ts):
        out.append({"type": "request", "ts": float(t), "service": f"s{i % 2}", "endpoint": f"e{rng.integers(4)}",
                    "status": int(rng.choice([200, 200, 200, 503])), "latency_ms": float(rng.lognormal(3, 1)),
                    "version": f"v{rng.integers(2)}", "txn": "buy" if i % 7 == 0 else None})
        if i % 50 == 0:
            out.append({"type": "metric", "ts": float(t), "service": "s0", "name": "cpu", "value": float(rng.random())})
            out.append({"type": "log", "ts": float(t), "service": "s1", "level": "ERROR", "message": "boom"})
    return out


def _run(events, batch=200, lateness=5.0, limits=Limits()):
    it = Interner()
    store = WindowStore(10, lateness, RequestSeries(it, limits), MetricSeries(it, limits))
    closed = []
    for i in range(0, len(events), batch):
        store.add(decode_batch([orjson.dumps(e) for e in events[i:i + batch]], it))
        closed.extend(store.close_ready())
    closed.extend(store.close_all())
    return store, closed, it


def _digest(store, closed, it):
    """Windows keyed by strings, so stores with different interning compare equal."""
    rs = store.requests
    out = {}
    for w in closed:
        q = sketch.quantiles_grouped(w.lat, [0.5, 0.99])
        for s in range(len(w.count)):
            if w.count[s]:
                key = (w.start, it.lookup(int(rs.service[s])), it.lookup(int(rs.endpoint[s])),
                       it.lookup(int(rs.version[s])))
                out[key] = (int(w.count[s]), int(w.errors[s]), tuple(np.round(q[s], 9)))
    return out


def test_shuffling_within_the_lateness_gives_identical_closed_windows():
    """Out-of-order arrival inside the allowed lateness never changes any aggregate."""
    events = _events()
    rng = np.random.default_rng(1)
    # arrival = event time + a delay below the lateness: never later than allowed
    jittered = sorted(events, key=lambda e: e["ts"] + rng.uniform(0.0, 4.9))
    a = _run(events)
    b = _run(jittered)
    assert b[0].late == 0
    assert _digest(*a) == _digest(*b)
    assert sum(int(w.count.sum()) for w in a[1]) == sum(1 for e in events if e["type"] == "request")


def test_a_late_event_is_counted_and_not_folded_into_a_closed_window():
    """An event older than the watermark's closed windows is a statistic, never silently lost."""
    events = _events(500)
    late = {**events[0], "ts": T0 + 1.0}
    store, closed, _ = _run(events + [late], batch=len(events))
    assert store.late == 1
    assert sum(int(w.count.sum()) for w in closed) == sum(1 for e in events if e["type"] == "request")


def test_window_aggregates_match_a_direct_count():
    """Counts, errors and transactions per window equal a plain recount of the events."""
    events = _events()
    store, closed, it = _run(events)
    for w in closed:
        inside = [e for e in events if e["type"] == "request" and w.start <= e["ts"] < w.end]
        assert int(w.count.sum()) == len(inside)
        assert int(w.errors.sum()) == sum(e["status"] >= 500 for e in inside)
        assert int(w.txn_count.sum()) == sum(e["txn"] is not None for e in inside)
        assert int(w.log_count.sum()) == sum(1 for e in events if e["type"] == "log" and w.start <= e["ts"] < w.end)


def test_the_cardinality_cap_holds_under_a_flood_of_distinct_endpoints():
    """A million-path attack folds into `other`: series and alias tables stay bounded."""
    limits = Limits(max_endpoints_per_service=20)
    flood = [{"type": "request", "ts": T0 + i * 0.001, "service": "api", "endpoint": f"/item/{i}", "status": 200,
              "latency_ms": 1.0} for i in range(20_000)]
    store, closed, it = _run(flood, batch=5000, limits=limits)
    assert len(store.requests) <= 21
    assert len(store.requests.index) <= 21
    assert store.requests.overflow > 0
    assert sum(int(w.count.sum()) for w in closed) == 20_000
