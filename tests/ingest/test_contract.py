"""Wire decoding: every event type round-trips; bad input is rejected, never raised."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest import contract as C
from detector.ingest.columns import (
    LEVEL_ERROR,
    LEVEL_FATAL,
    LEVEL_INFO,
    LEVEL_WARN,
    LogColumns,
    MetricColumns,
    RequestColumns,
)
from detector.ingest.contract import decode_batch
from detector.ingest.eventchecks import decode_deploy
from detector.ingest.fields import LEVELS
from detector.ingest.interner import Interner

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


# --- differential tests: the decoder against a plain reference ---------------------------------------------------
# The decoder's column checks work on distinct values, struct packing and C
# loops. `_ref_decode` is the plain rule they must agree with, frozen from the
# decoder that came before them: every column checked value by value, strings
# interned event by event, failed groups re-checked event by event. It differs
# from that decoder in two fixes only, each pinned by a test of its own below:
# a `type` that is an array or an object is rejected (it used to raise), and an
# empty optional string in a group rebuilt from checked events is accepted (it
# used to raise).


class _Fail(Exception):
    pass


def _ref_num(values):
    if not set(map(type, values)) <= {int, float}:
        raise _Fail
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise _Fail
    return arr


def _ref_str(values, it, max_chars, optional, key, empty_ok):
    kinds = set(map(type, values))
    if kinds == {str}:
        uniq = set(values)
        if ("" in uniq and not (optional and empty_ok)) or max(map(len, uniq)) > max_chars:
            raise _Fail
        return np.asarray(it.intern_many(values, key), dtype=np.int32)
    if not optional or not kinds <= {str, type(None)}:
        raise _Fail
    if kinds == {type(None)}:
        return np.full(len(values), -1, dtype=np.int32)
    if max(len(v) for v in values if v is not None) > max_chars:
        raise _Fail
    return np.asarray([-1 if v is None else it.intern(v, key) for v in values], dtype=np.int32)


def _ref_requests(docs, pos, it, ok):
    col = lambda k: [d.get(k) for d in docs]  # noqa: E731
    ts, status = _ref_num(col("ts")), col("status")
    if set(map(type, status)) != {int}:
        raise _Fail
    status = np.asarray(status, dtype=np.int64)
    lat = _ref_num(col("latency_ms"))
    if status.min() < 100 or status.max() > 599 or lat.min() < 0:
        raise _Fail
    return RequestColumns(pos, ts, _ref_str(col("service"), it, 200, False, True, ok),
                          _ref_str(col("endpoint"), it, 2000, False, False, ok),
                          _ref_str(col("version"), it, 2000, True, True, ok),
                          _ref_str(col("instance"), it, 2000, True, False, ok), status.astype(np.int16), lat,
                          _ref_str(col("txn"), it, 2000, True, False, ok))


def _ref_logs(docs, pos, it, ok):
    col = lambda k: [d.get(k) for d in docs]  # noqa: E731
    ts, levels, msgs = _ref_num(col("ts")), col("level"), col("message")
    if set(map(type, levels)) != {str} or set(map(type, msgs)) != {str}:
        raise _Fail
    if "" in set(levels) or max(map(len, levels)) > 64 or not set(map(type, col("trace_id"))) <= {str, type(None)}:
        raise _Fail
    return LogColumns(pos, ts, _ref_str(col("service"), it, 200, False, True, ok),
                      _ref_str(col("version"), it, 2000, True, True, ok),
                      _ref_str(col("instance"), it, 2000, True, False, ok),
                      np.asarray([LEVELS.get(lv.upper(), LEVEL_INFO) for lv in levels], dtype=np.int8),
                      _ref_str(col("logger"), it, 2000, True, False, ok), msgs)


def _ref_metrics(docs, pos, it, ok):
    col = lambda k: [d.get(k) for d in docs]  # noqa: E731
    ts, value, label_ids = _ref_num(col("ts")), _ref_num(col("value")), []
    for lab in col("labels"):
        if lab is None:
            label_ids.append(-1)
        elif type(lab) is dict and set(map(type, lab.values())) <= {str}:
            label_ids.append(it.intern(",".join(f"{k}={lab[k]}" for k in sorted(lab))) if lab else -1)
        else:
            raise _Fail
    return MetricColumns(pos, ts, _ref_str(col("service"), it, 200, False, True, ok),
                         _ref_str(col("name"), it, 2000, False, False, ok),
                         np.asarray(label_ids, dtype=np.int32), value,
                         _ref_str(col("version"), it, 2000, True, True, ok),
                         _ref_str(col("instance"), it, 2000, True, False, ok))


# The per-event rule, written from the wire contract (shared contract README),
# not from the decoder: the first field (in the contract's order) that breaks
# it, or None. The decoder's reasons must name that field.
_TEXT, _NAME = 200, 2000
_SPEC = {
    "request": [("ts", "ts"), ("service", "service"), ("endpoint", "name"), ("status", "status"),
                ("latency_ms", "nonneg"), ("version", "opt"), ("instance", "opt"), ("txn", "opt")],
    "log": [("ts", "ts"), ("service", "service"), ("level", "level"), ("message", "text"), ("version", "opt"),
            ("instance", "opt"), ("logger", "opt"), ("trace_id", "opt")],
    "metric": [("ts", "ts"), ("service", "service"), ("name", "name"), ("value", "num"), ("labels", "labels"),
               ("version", "opt"), ("instance", "opt")],
}


def _finite_number(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _field_ok(rule: str, v) -> bool:
    if rule == "ts":
        if _finite_number(v):
            return True
        if type(v) is not str:
            return False
        try:
            return datetime.fromisoformat(v.replace("z", "Z")).tzinfo is not None
        except ValueError:
            return False
    if rule in ("service", "name", "level"):
        limit = {"service": _TEXT, "name": _NAME, "level": 64}[rule]
        return type(v) is str and 0 < len(v) <= limit
    if rule == "status":
        return type(v) is int and 100 <= v <= 599
    if rule == "num":
        return _finite_number(v)
    if rule == "nonneg":
        return _finite_number(v) and v >= 0
    if rule == "text":
        return type(v) is str
    if rule == "opt":
        return v is None or (type(v) is str and len(v) <= _NAME)
    if rule == "labels":
        return v is None or (type(v) is dict and all(type(x) is str for x in v.values()))
    raise AssertionError(rule)


def _ref_check(kind: str, d: dict) -> str | None:
    for name, rule in _SPEC[kind]:
        if not _field_ok(rule, d.get(name)):
            return name
    return None


_REF = {"request": _ref_requests, "log": _ref_logs, "metric": _ref_metrics}


def _ref_decode(values, it, max_bytes=C.DEFAULT_MAX_BYTES):
    out = C.DecodedBatch()
    try:
        if max(map(len, values)) > max_bytes:
            raise ValueError
        docs = [orjson.loads(v) for v in values]
    except Exception:
        docs = [C._loads_one(v, max_bytes) for v in values]
    groups = {}
    for i, d in enumerate(docs):
        k = d.get("type") if type(d) is dict else None
        if type(k) is str and k in C.EVENT_TYPES:
            groups.setdefault(k, ([], []))[0].append(d)
            groups[k][1].append(i)
        elif isinstance(d, C.BadEvent):
            out.rejected.append(C.Rejected(i, str(d)))
        elif type(d) is not dict:
            out.rejected.append(C.Rejected(i, f"message must be a JSON object (got {C._jtype(d)})"))
        elif k is None:
            out.rejected.append(C.Rejected(i, "missing field 'type'"))
        elif type(k) is not str:
            out.rejected.append(C.Rejected(i, f"field 'type' must be a string (got {C._jtype(k)})"))
        else:
            out.rejected.append(C.Rejected(i, f"unknown type {k[:64]!r} (expected one of {', '.join(C.EVENT_TYPES)})"))
    for kind, (gdocs, gpos) in groups.items():
        if kind == "deploy":
            for d, p in zip(gdocs, gpos):
                try:
                    out.deploys.append(decode_deploy(d, p))
                except C.BadEvent as e:
                    out.rejected.append(C.Rejected(p, f"deploy: {e}"))
            continue
        build = _REF[kind]
        name = {"request": "requests", "log": "logs", "metric": "metrics"}[kind]
        try:
            cols = build(gdocs, np.asarray(gpos, dtype=np.int64), it, False)
        except (_Fail, OverflowError, ValueError):
            good = []
            for d, p in zip(gdocs, gpos):
                bad = _ref_check(kind, d)
                if bad is None:
                    if type(d["ts"]) is str:
                        d = {**d, "ts": datetime.fromisoformat(d["ts"].replace("z", "Z")).timestamp()}
                    good.append((d, p))
                else:
                    out.rejected.append(C.Rejected(p, f"{kind}: field {bad!r}"))
            cols = (build([d for d, _ in good], np.asarray([p for _, p in good], dtype=np.int64), it, True)
                    if good else type(getattr(out, name))())
        setattr(out, name, cols)
    out.rejected.sort(key=lambda r: r.pos)
    return out


def _assert_same(got, want):
    for name in ("requests", "logs", "metrics"):
        g, w = getattr(got, name), getattr(want, name)
        for f in g.__dataclass_fields__:
            a, b = getattr(g, f), getattr(w, f)
            if f == "message":
                assert a == b, (name, f)
            else:
                assert a.dtype == b.dtype and np.array_equal(a, b), (name, f, a, b)
    assert got.deploys == want.deploys
    assert [r.pos for r in got.rejected] == [r.pos for r in want.rejected]
    for g, w in zip(got.rejected, want.rejected):
        if w.reason.startswith(("request: field ", "log: field ", "metric: field ")):
            kind, field = w.reason.split(": field ")
            # the decoder's reason names the field the contract's rule finds broken first
            assert g.reason.startswith(f"{kind}: ") and field[:-1] in g.reason, (g.reason, w.reason)
        else:
            assert g.reason == w.reason
    assert all(type(r.pos) is int for r in got.rejected)


def _assert_decodes_like_reference(batches, make_interner):
    it_got, it_want = make_interner(), make_interner()
    for values in batches:
        _assert_same(decode_batch(values, it_got), _ref_decode(values, it_want))
        assert it_got.strings() == it_want.strings() and it_got.overflow == it_want.overflow


_DROP = "<drop>"
_ODD = [None, True, False, 0, 1, 1.0, 0.0, -1, -0.5, 99, 100, 599, 600, 200.0, 2**63, 2**64 - 1, 1e308, "", "x" * 201, "y" * 2001,
        "2026-11-26T06:00:00Z", "2026-11-26T06:00:00", "WARN", [], [1], {}, {"a": "b"}, {"b": "c", "a": "d"},
        {"a": 1}, _DROP]
_TEMPLATES = [REQ, LOG, MET, DEP]
_KIND_FIELDS = [sorted({*t, *extra}) for t, extra in zip(_TEMPLATES, (["txn"], ["trace_id", "logger"], ["labels"], []))]
# Good values, a few per field, so that batches repeat tuples of strings and
# carry nulls and absent optional fields.
_GOOD = [
    {"service": ["checkout", "cart"], "endpoint": ["/a", "/b"], "version": ["v1", "v2", None, _DROP],
     "instance": ["p1", "p2", _DROP], "txn": [_DROP, None, "pay"], "status": [200, 404, 503],
     "latency_ms": [0, 1, 0.5, 12, 30.25]},
    {"service": ["checkout", "cart"], "level": ["WARN", "info", "Error"], "logger": ["db", None, _DROP],
     "trace_id": ["t1", None, _DROP], "message": ["m1", "m2"]},
    {"service": ["checkout", "cart"], "name": ["cpu", "mem"], "value": [0, 1, 0.25, 7],
     "labels": [None, _DROP, {}, {"db": "orders"}, {"az": "b", "db": "orders"}]},
    {"phase": ["started", "finished"], "canary_weight": [0.1, _DROP]},
]


def _event(template: dict, picks: dict) -> bytes:
    doc = dict(template)
    for k, v in picks.items():
        if v == _DROP:
            doc.pop(k, None)
        else:
            doc[k] = v
    return orjson.dumps(doc)


def _good_event(kind: int, rng: np.random.Generator) -> bytes:
    return _event(_TEMPLATES[kind], {k: v[rng.integers(len(v))] for k, v in _GOOD[kind].items()})


def _damaged_batches(seed: int, n: int, damages: int) -> list[list[bytes]]:
    """Batches of good events of all types with `damages` events given one odd field each."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        values = [_good_event(int(rng.integers(4)), rng) for _ in range(int(rng.integers(1, 12)))]
        for _ in range(damages):
            kind = int(rng.integers(3)) if rng.random() < 0.9 else 3
            fields = _KIND_FIELDS[kind]
            odd = {fields[rng.integers(len(fields))]: _ODD[rng.integers(len(_ODD))]}
            doc = orjson.loads(_good_event(kind, rng))
            values.insert(int(rng.integers(len(values) + 1)), _event(doc, odd))
        batches.append(values)
    return batches


def test_a_type_that_is_an_array_or_object_is_rejected_not_raised():
    """A non-string `type` of any JSON kind is bad input with a reason, like any other."""
    b, _ = _decode({**REQ, "type": [1]}, {**REQ, "type": {"a": 1}}, REQ)
    assert len(b.requests) == 1
    assert [r.reason for r in b.rejected] == ["field 'type' must be a string (got array)",
                                             "field 'type' must be a string (got object)"]


def test_an_empty_optional_string_is_accepted_like_the_per_event_check_accepts_it():
    """An optional field sent as "" by every event of a group is a value, not a reason to fail the batch."""
    b, it = _decode({**REQ, "version": ""}, {**LOG, "logger": ""}, {**MET, "instance": ""})
    assert not b.rejected and b.accepted == 3
    assert (it.lookup(int(b.requests.version[0])), it.lookup(int(b.logs.logger[0])),
            it.lookup(int(b.metrics.instance[0]))) == ("", "", "")


def _simulated(tmp_path, seconds: float) -> list[bytes]:
    from detector.simulate.main import resolve_scenario
    from detector.simulate.output import simulate_to_file
    from detector.simulate.scenario import load_scenario

    path = tmp_path / "sim.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("low_traffic"), seed=11, duration_s=seconds), path)
    return path.read_bytes().splitlines()


def test_simulator_output_decodes_exactly_like_the_reference(tmp_path):
    """Simulated traffic, mixed or requests only, capped interner or not: the reference's columns, ids and state."""
    lines = _simulated(tmp_path, 660)
    assert any(b'"type":"deploy"' in ln for ln in lines) and any(b'"labels"' in ln for ln in lines)
    for size in (4_000, 777):
        batches = [lines[i:i + size] for i in range(0, len(lines), size)]
        _assert_decodes_like_reference(batches, Interner)
        _assert_decodes_like_reference(batches, lambda: Interner(max_size=40, max_keys=4))
        _assert_decodes_like_reference([[ln for ln in b if b'"type":"request"' in ln] for b in batches], Interner)


def test_damaged_simulator_output_decodes_exactly_like_the_reference(tmp_path):
    """With one event in fifty damaged (a field dropped or given an odd value), decoding still matches the reference."""
    rng = np.random.default_rng(5)
    lines = []
    for ln in _simulated(tmp_path, 240):
        if rng.random() < 0.02:
            doc = orjson.loads(ln)
            fields = _KIND_FIELDS[[t["type"] for t in _TEMPLATES].index(doc["type"])]
            ln = _event(doc, {fields[rng.integers(len(fields))]: _ODD[rng.integers(len(_ODD))]})
        lines.append(ln)
    batches = [lines[i:i + 1_000] for i in range(0, len(lines), 1_000)]
    _assert_decodes_like_reference(batches, Interner)
    _assert_decodes_like_reference(batches, lambda: Interner(max_size=30, max_keys=3))


def test_every_single_odd_field_decodes_exactly_like_the_reference():
    """Each field of each type, given each odd value, among good events: the reference's decision and interning."""
    rng = np.random.default_rng(3)
    batches = []
    for kind, fields in enumerate(_KIND_FIELDS):
        for field in fields:
            for odd in _ODD:
                values = [_good_event(int(k), rng) for k in rng.integers(4, size=6)]
                values.insert(int(rng.integers(7)), _event(orjson.loads(_good_event(kind, rng)), {field: odd}))
                batches.append(values)
    _assert_decodes_like_reference(batches, Interner)
    _assert_decodes_like_reference(batches, lambda: Interner(max_size=9, max_keys=2))


def test_every_pair_of_odd_fields_decodes_exactly_like_the_reference():
    """Two events of a type damaged in two fields: the columns fail in the reference's order, with its interning."""
    values_tried = [None, True, 1, -1, 200.0, "", "y" * 2001, [1], _DROP]
    rng = np.random.default_rng(4)
    batches = []
    for kind in range(3):
        damages = [(f, v) for f in _KIND_FIELDS[kind] for v in values_tried]
        # One good event of each type, and nulls in every optional field on the first one.
        good = [_good_event(k, rng) for k in range(4)]
        good.insert(0, _event(_TEMPLATES[kind], {f: None for f in _GOOD[kind] if None in _GOOD[kind][f]}))
        for i, (f1, v1) in enumerate(damages):
            for f2, v2 in damages[i + 1:]:
                batches.append([_event(_TEMPLATES[kind], {f1: v1}), *good, _event(_TEMPLATES[kind], {f2: v2})])
    _assert_decodes_like_reference(batches, Interner)
    _assert_decodes_like_reference(batches[::7], lambda: Interner(max_size=12, max_keys=2))


def test_batches_with_several_odd_fields_decode_exactly_like_the_reference():
    """Up to three damaged events among good ones of every type decode like the reference."""
    batches = _damaged_batches(2, 1_000, 3)
    _assert_decodes_like_reference(batches, Interner)
    _assert_decodes_like_reference(batches, lambda: Interner(max_size=12, max_keys=2))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=64) | json_values.map(orjson.dumps) | event_like.map(orjson.dumps),
                         min_size=1, max_size=12), min_size=1, max_size=3),
       st.sampled_from([None, 3, 9]))
def test_arbitrary_batches_decode_exactly_like_the_reference(batches, cap):
    """Whatever arrives, the columns, rejections and interner state are the reference's."""
    _assert_decodes_like_reference(batches, Interner if cap is None else lambda: Interner(max_size=cap, max_keys=2))
