"""A partition whose service falls silent still closes the fleet's windows (as empty ones of its own).

Two services on different partitions of 3 (`partition_of`): `svc-a` is deployed and falls
silent two minutes later while `svc-c` goes on. With one partition every window `svc-c` has
events in is judged for the deploy, and `traffic-lost` pages; over three partitions the deploy's
partition used to close no window after the silence, and the verdict never came.
"""

from __future__ import annotations

import random

import orjson

from detector.config import load_pipeline
from detector.ingest.partitioning import partition_of
from detector.records import Verdict
from detector.replay import replay

T0 = 1_800_000_000.0
DEPLOY = T0 + 2400


def _events(silent_at: float, until: float) -> list[dict]:
    rng = random.Random(1)
    out = []
    for name, end in (("svc-a", silent_at), ("svc-c", until)):
        t = T0
        while t < end:
            version = "v2" if name == "svc-a" and t >= DEPLOY else "v1"
            out.append({"type": "request", "ts": round(t, 3), "service": name, "endpoint": "GET /x", "status": 200,
                        "latency_ms": round(rng.uniform(10, 30), 1), "version": version})
            t += rng.expovariate(2.0)
    out.append({"type": "deploy", "ts": DEPLOY, "service": "svc-a", "deploy_id": "d-1", "version": "v2",
                "previous_version": "v1"})
    return sorted(out, key=lambda e: e["ts"])


def _verdicts(path, partitions: int) -> list[tuple]:
    out = []
    replay([path], load_pipeline(), out.append, partitions=partitions)
    return [(v.deploy_id, v.ts, v.decision, v.reasons) for v in out if isinstance(v, Verdict)]


def test_a_silent_partitions_verdict_is_the_one_of_one_partition(tmp_path):
    assert partition_of("svc-a", 3) != partition_of("svc-c", 3)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _events(DEPLOY + 120, DEPLOY + 2400)))
    one = _verdicts(path, 1)
    assert [(d, decision) for d, _ts, decision, _r in one] == [("d-1", "page")]
    assert "traffic-lost" in one[0][3][0]
    assert _verdicts(path, 3) == one
