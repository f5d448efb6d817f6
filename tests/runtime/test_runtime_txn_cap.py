"""The sidecar says once per service that its transaction names met limits.max_txn_names_per_service."""

from __future__ import annotations

import dataclasses

import orjson
import structlog

from detector.config import load_pipeline
from detector.core import Core
from detector.runtime.app import Sidecar
from detector.runtime.partitions import PartitionState

T0 = 1764140400.0


def _values(service: str, names: range) -> list[bytes]:
    return [orjson.dumps({"type": "request", "ts": T0 + i * 0.01, "service": service, "endpoint": "POST /buy",
                          "status": 200, "latency_ms": 5.0, "txn": f"t{i}"}) for i in names]


def test_a_service_over_the_txn_name_cap_is_logged_once():
    """Two batches past the cap of one service and one of another give one warning per service,
    naming it and the cap; a batch under the cap gives none."""
    base = load_pipeline()
    pipeline = dataclasses.replace(base, limits=dataclasses.replace(base.limits, max_txn_names_per_service=4))
    sidecar = Sidecar(pipeline, "127.0.0.1:1", http_port=-1)
    st = PartitionState(Core(pipeline))
    with structlog.testing.capture_logs() as logs:
        for service, names in (("cart", range(3)), ("shop", range(10)), ("shop", range(10, 20)),
                               ("search", range(6))):
            sidecar._run_core(st.core, _values(service, names), "requests")
            sidecar._watch_txn_cap(3, st)
    told = [e for e in logs if "per-service cap" in e["event"]]
    assert [(e["service"], e["cap"], e["partition"]) for e in told] == [("shop", 4, 3), ("search", 4, 3)]
    assert all(e["log_level"] == "warning" for e in told)
    assert st.core.windows.txn_names.folded == 6 + 10 + 2
