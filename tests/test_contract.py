"""Wire decoding: every event type round-trips; bad input is rejected, never raised."""

from __future__ import annotations

import math

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.columns import LEVEL_ERROR, LEVEL_FATAL, LEVEL_INFO, LEVEL_WARN
from detector.contract import decode_batch
from detector.interner import Interner

REQ = {"type": "request", "ts": 1764140400.5, "service": "checkout", "endpoint": "POST /pay", "status": 503,
       "latency_ms": 12.5, "version": "v43", "instance": "pod-1", "txn": "payment"}
LOG = {"type": "log", "ts": 1764140401, "service": "checkout", "level": "Warning", "message": "slow db 30 ms",
       "version": "v43", "instance": "pod-1", "logger": "db", "trace_id": "abc"}
MET = {"type": "metric", "ts": 1764140402.0, "service": "checkout", "name": "db_latency_ms", "value": 3.5,
       "labels": {"db": "orders", "az": "b"}, "version": "v43", "instance": "pod-1"}
DEP = {"type": "deploy", "ts": 1764140403.0, "service": "checkout", "deploy_id": "d-981", "version": "v43",
       "phase": "started", "previous_version": "v42", "strategy": "canary", "canary_weight": 0.1,
       "change_kind": "config", "commit": "abc123", "author": "ana"}


def _decode(*docs):
    it = Interner()
    return decode_batch([orjson.dumps(d) if isinstance(d, dict) else d for d in docs], it), it


def test_every_event_type_round_trips_into_columns():
    """Each contract type lands in its own columns with the values and strings it was sent with."""
    b, it = _decode(REQ, LOG, MET, DEP)
    assert not b.rejected
    r = b.requests
    assert list(r.pos) == [0] and r.ts[0] == 1764140400.5 and r.status[0] == 503 and r.latency_ms[0] == 12.5
    assert [it.lookup(int(x[0])) for x in (r.service, r.endpoint, r.version, r.instance, r.txn)] == \
        ["checkout", "POST /pay", "v43", "pod-1", "payment"]
    assert b.logs.level[0] == LEVEL_WARN and b.logs.message == ["slow db 30 ms"] and b.logs.pos[0] == 1
    assert it.lookup(int(b.metrics.labels[0])) == "az=b,db=orders" and b.metrics.value[0] == 3.5
    d = b.deploys[0]
    assert (d.deploy_id, d.version, d.previous_version, d.strategy, d.canary_weight, d.change_kind) == \
        ("d-981", "v43", "v42", "canary", 0.1, "config")


def test_levels_are_case_insensitive_and_unknown_levels_are_informational():
    """WARN/WARNING, ERROR, FATAL/CRITICAL are recognised in any case; anything else is info."""
    levels = ["warn", "WARNING", "error", "Fatal", "critical", "debug", "notice"]
    b, _ = _decode(*[{**LOG, "level": lv} for lv in levels])
    assert list(b.logs.level) == [LEVEL_WARN, LEVEL_WARN, LEVEL_ERROR, LEVEL_FATAL, LEVEL_FATAL, LEVEL_INFO, LEVEL_INFO]


def test_rfc3339_timestamps_are_accepted():
    """An RFC 3339 `ts` decodes to the same Unix seconds as the number."""
    b, _ = _decode({**REQ, "ts": "2026-11-26T06:00:00Z"}, {**REQ, "ts": "2026-11-26T07:00:00.250+01:00"})
    assert not b.rejected
    assert list(b.requests.ts) == [1795672800.0, 1795672800.25]


def test_optional_fields_may_be_absent_and_unknown_fields_are_ignored():
    """version/instance/txn absent become -1; extra fields do not matter."""
    doc = {k: v for k, v in REQ.items() if k not in ("version", "instance", "txn")}
    b, _ = _decode({**doc, "future_field": [1, 2]})
    assert not b.rejected and b.requests.version[0] == -1 and b.requests.txn[0] == -1


BAD = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (orjson.dumps({"ts": 1}), "missing field 'type'"),
    (orjson.dumps({**REQ, "type": "trace"}), "unknown type 'trace'"),
    (orjson.dumps({**REQ, "status": 99}), "status' must be within 100-599 (got 99)"),
    (orjson.dumps({**REQ, "status": "500"}), "'status' must be an integer (got string)"),
    (orjson.dumps({**REQ, "latency_ms": -1}), "'latency_ms' must be >= 0"),
    (orjson.dumps({k: v for k, v in REQ.items() if k != "endpoint"}), "missing field 'endpoint'"),
    (orjson.dumps({**REQ, "service": ""}), "'service' must not be empty"),
    (orjson.dumps({**REQ, "service": "s" * 201}), "longer than 200"),
    (orjson.dumps({**REQ, "ts": "yesterday"}), "RFC 3339"),
    (orjson.dumps({**REQ, "ts": True}), "'ts' must be a number"),
    (b'{"type":"request","ts":1,"service":"a","endpoint":"e","status":200,"latency_ms":1e999}', "infinity"),
    (orjson.dumps({**LOG, "message": 5}), "'message' must be a string"),
    (orjson.dumps({**MET, "labels": {"a": 1}}), "labels.a' must be a string"),
    (orjson.dumps({**MET, "value": None}), "missing field 'value'"),
    (orjson.dumps({**DEP, "canary_weight": 2}), "canary_weight' must be within 0-1"),
    (orjson.dumps({**DEP, "phase": "paused"}), "'phase' must be one of"),
]


def test_each_bad_event_gets_a_precise_reason_and_the_good_ones_survive():
    """One bad message never spoils the batch: good rows decode, each bad row names its fault."""
    values = []
    for bad, _ in BAD:
        values.extend([orjson.dumps(REQ), bad])
    it = Interner()
    b = decode_batch(values, it)
    assert len(b.requests) == len(BAD)
    assert [r.pos for r in b.rejected] == list(range(1, 2 * len(BAD), 2))
    for r, (_, reason) in zip(b.rejected, BAD):
        assert reason in r.reason, (reason, r.reason)


def test_oversize_messages_are_rejected_with_their_size():
    """A message over the byte limit is rejected, not parsed."""
    it = Interner()
    b = decode_batch([orjson.dumps({**LOG, "message": "x" * 5000}), orjson.dumps(REQ)], it, max_bytes=1000)
    assert len(b.requests) == 1 and "larger than the limit of 1000 bytes" in b.rejected[0].reason


def test_interner_is_capped_so_hostile_cardinality_cannot_grow_memory():
    """Past max_size distinct strings, new ones map to "other"."""
    it = Interner(max_size=50)
    b = decode_batch([orjson.dumps({**REQ, "endpoint": f"/x/{i}"}) for i in range(500)], it)
    assert len(it) <= 50 + it.max_keys and it.overflow > 0 and len(b.requests) == 500
    assert it.lookup(int(b.requests.endpoint[-1])) == "other"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["request", "log", "metric", "deploy", "x", 1])},
    optional={k: json_values | st.sampled_from([REQ[k] if k in REQ else 1, -1, "2026-11-26T06:00:00Z", 1e308])
              for k in ("ts", "service", "endpoint", "status", "latency_ms", "version", "level", "message", "name",
                        "value", "labels", "deploy_id", "phase", "canary_weight", "txn")},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64) | json_values.map(orjson.dumps) | event_like.map(orjson.dumps), max_size=12))
def test_arbitrary_bytes_and_json_are_accepted_or_rejected_never_raised(values):
    """Whatever arrives, every message ends up accepted or rejected exactly once."""
    b = decode_batch(values, Interner())
    positions = sorted([r.pos for r in b.rejected] + list(b.requests.pos) + list(b.logs.pos) +
                       list(b.metrics.pos) + [d.pos for d in b.deploys])
    assert positions == list(range(len(values)))
    assert all(math.isfinite(x) for x in b.requests.ts)
    assert np.all((b.requests.status >= 100) & (b.requests.status <= 599))
    assert np.all(b.requests.latency_ms >= 0)


def test_a_flood_of_endpoints_never_turns_a_new_service_or_version_into_other():
    """Key strings (service, version) keep reserved room past the bulk cap."""
    it = Interner(max_size=100)
    decode_batch([orjson.dumps({**REQ, "endpoint": f"/x/{i}"}) for i in range(1000)], it)
    b = decode_batch([orjson.dumps({**REQ, "service": "brand-new", "version": "v99", "endpoint": "/y"})], it)
    assert it.lookup(int(b.requests.service[0])) == "brand-new"
    assert it.lookup(int(b.requests.version[0])) == "v99"
    assert it.lookup(int(b.requests.endpoint[0])) == "other"
