"""A service deployed more often than `limits.max_versions_per_service` keeps being judged.

Versions silent for longer than the history a core keeps give their series
slots to new versions; before, the 17th version of a service folded into
`other` and was never compared again.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson

from detector.aggregate.series import RequestSeries
from detector.config import load_pipeline
from detector.ingest.interner import Interner
from detector.replay import replay


def _table(cap_versions: int, retire_after_s: float | None) -> tuple[RequestSeries, Interner]:
    pipeline = load_pipeline()
    limits = dataclasses.replace(pipeline.limits, max_versions_per_service=cap_versions)
    interner = Interner()
    table = RequestSeries(interner, limits)
    table.retire_after_s = retire_after_s
    return table, interner


def _map(table, interner, service, endpoint, version, now):
    col = lambda s: np.array([interner.intern(s)], dtype=np.int32)  # noqa: E731
    return int(table.map(col(service), col(endpoint), col(version), now=now)[0])


def test_a_silent_version_gives_its_slots_to_a_new_one():
    table, it = _table(cap_versions=2, retire_after_s=600.0)
    a = _map(table, it, "shop", "GET /a", "v1", now=0.0)
    _map(table, it, "shop", "GET /a", "v2", now=100.0)
    # v1 silent for 700 s > 600 s: v3 takes its slot, not `other`
    c = _map(table, it, "shop", "GET /a", "v3", now=800.0)
    assert c == a
    assert it.lookup(int(table.version[c])) == "v3"
    assert table.overflow == 0
    # v2 was seen 700 s ago too, v3 just now: v4 takes v2's slot
    d = _map(table, it, "shop", "GET /a", "v4", now=801.0)
    assert it.lookup(int(table.version[d])) == "v4"
    # nothing is silent long enough now: v5 folds into `other`
    e = _map(table, it, "shop", "GET /a", "v5", now=802.0)
    assert it.lookup(int(table.version[e])) == "other"
    assert table.overflow == 1


def test_versions_recently_seen_are_never_retired():
    table, it = _table(cap_versions=2, retire_after_s=600.0)
    _map(table, it, "shop", "GET /a", "v1", now=0.0)
    _map(table, it, "shop", "GET /a", "v2", now=0.0)
    _map(table, it, "shop", "GET /a", "v1", now=500.0)
    e = _map(table, it, "shop", "GET /a", "v3", now=599.0)
    assert it.lookup(int(table.version[e])) == "other"


def test_turnover_survives_a_snapshot():
    table, it = _table(cap_versions=2, retire_after_s=600.0)
    _map(table, it, "shop", "GET /a", "v1", now=0.0)
    _map(table, it, "shop", "GET /a", "v2", now=100.0)
    state = orjson.loads(orjson.dumps(table.to_state()))
    again, _ = _table(cap_versions=2, retire_after_s=600.0)
    again.interner = it
    again.load_state(state)
    c = _map(again, it, "shop", "GET /a", "v3", now=800.0)
    assert it.lookup(int(again.version[c])) == "v3"


def _deploys(n_deploys: int, bad_last: bool, gap_s: float = 2400.0):
    rng = np.random.default_rng(11)
    t0 = 1_764_140_400.0
    lines = []
    eps = ["GET /a", "GET /b", "POST /checkout"]
    t, version, k = t0, "v0", 0
    end = t0 + gap_s * (n_deploys + 1)
    while t < end:
        if k < n_deploys and t >= t0 + gap_s * (k + 1):
            k += 1
            lines.append({"type": "deploy", "ts": round(t, 3), "service": "shop", "deploy_id": f"d-{k}",
                          "version": f"v{k}", "previous_version": version, "strategy": "rolling"})
            version = f"v{k}"
        bad = bad_last and k == n_deploys
        p_err = 0.3 if bad else 0.01
        lines.append({"type": "request", "ts": round(t, 3), "service": "shop",
                      "endpoint": eps[int(rng.integers(0, len(eps)))],
                      "status": 500 if rng.random() < p_err else 200, "latency_ms": float(rng.gamma(2.0, 40.0)),
                      "version": version, "instance": "shop-1"})
        t += 0.5
    return lines


def test_the_twentieth_version_of_a_service_is_still_judged(tmp_path):
    path = tmp_path / "deploys.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in _deploys(8, bad_last=True)))
    pipeline = load_pipeline()
    pipeline = dataclasses.replace(pipeline, limits=dataclasses.replace(pipeline.limits,
                                                                        max_versions_per_service=3))
    records = []
    replay([path], pipeline, lambda r: records.append(r.to_dict()))
    verdicts = {r["deploy_id"]: r["decision"] for r in records if r["type"] == "verdict"}
    assert set(verdicts) == {f"d-{k}" for k in range(1, 9)}
    assert all(verdicts[f"d-{k}"] == "confirmed" for k in range(1, 8)), verdicts
    assert verdicts["d-8"] in ("rollback", "page"), verdicts
