"""The msgspec fast path plus its fallback decode exactly as the precise path alone.

Equality is the whole contract of `detector/ingest/fastpath.py`: on every
batch, `decode_batch` (fast path, or the precise path for a batch the fast
path declines) gives the same columns (dtypes and bits), the same events, the
same rejections with the same reasons and leaves the interner in the same
state as `decode_precise`. Each test also counts the batches the fast path
took, so that a fast path that declined everything could not pass.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest.contract import DEFAULT_MAX_BYTES, decode_batch, decode_precise
from detector.ingest.fastpath import decode_clean
from detector.ingest.interner import Interner
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario

SCENARIOS = ["baseline_day", "benign_surge", "busy_endpoint_small", "canary_endpoint_errors", "code_fault_canary",
             "config_fault", "fast_rollout_benign", "infra_slowdown", "late_exception_after_rollback",
             "log_only_code", "low_traffic", "morning_ramp", "new_exception_everywhere", "pod_restart_blip",
             "quiet_service_failing", "rare_endpoint", "rare_endpoint_broken", "retry_storm",
             "shared_db_three_services", "smoke_caught", "superseded", "traffic_loss", "txn_drop"]


def _copy(it: Interner) -> Interner:
    c = Interner(max_size=it.max_size, max_keys=it.max_keys)
    for s in it.strings()[1:]:
        c.intern(s, key=True)
    c.overflow = it.overflow
    return c


def _assert_same(got, want):
    for name in ("requests", "logs", "metrics"):
        g, w = getattr(got, name), getattr(want, name)
        for f in g.__dataclass_fields__:
            a, b = getattr(g, f), getattr(w, f)
            if f == "message":
                assert a == b and all(type(x) is str for x in a), (name, f)
            else:  # bits, so that -0.0 and 0.0 differ
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (name, f, a, b)
    assert (got.deploys, got.checks, got.incidents) == (want.deploys, want.checks, want.incidents)
    assert got.rejected == want.rejected


def _decode_both(batches, make_interner=Interner, max_bytes=DEFAULT_MAX_BYTES) -> int:
    """Decode every batch both ways with interners of their own; the number of batches the fast path took."""
    it_fast, it_precise = make_interner(), make_interner()
    fast = 0
    for values in batches:
        fast += decode_clean(values, _copy(it_fast), max_bytes) is not None
        _assert_same(decode_batch(values, it_fast, max_bytes), decode_precise(values, it_precise, max_bytes))
        assert it_fast.strings() == it_precise.strings() and it_fast.overflow == it_precise.overflow
    return fast


def _lines(tmp_path, name: str, **kw) -> list[bytes]:
    path = tmp_path / f"{name}.jsonl"
    simulate_to_file(load_scenario(resolve_scenario(name), **kw), path)
    return path.read_bytes().splitlines()


def _batches(lines: list[bytes], size: int) -> list[list[bytes]]:
    return [lines[i:i + size] for i in range(0, len(lines), size)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> list[bytes]:
    return _lines(tmp_path_factory.mktemp("demo"), "demo")


def test_the_demo_takes_the_fast_path_and_decodes_exactly_as_the_precise_path(demo):
    """The whole demo file, in the replay's chunks of 8,192 lines: every batch fast, every column equal."""
    batches = _batches(demo, 8_192)
    assert _decode_both(batches) == len(batches)


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_takes_the_fast_path_and_decodes_exactly_as_the_precise_path(tmp_path, name):
    """Simulator output of every shipped scenario (baseline_day's first 6 h) in batches of 3,000."""
    lines = _lines(tmp_path, name, **({"duration_s": 6 * 3600} if name == "baseline_day" else {}))
    batches = _batches(lines, 3_000)
    assert _decode_both(batches) == len(batches)
    # a small batch holds one type or two (a topic's getmany): the same
    assert _decode_both(_batches(lines[:20_000], 7)) == len(_batches(lines[:20_000], 7))


def test_rfc3339_times_take_the_fast_path_through_the_same_parser(demo):
    """Event times sent as RFC 3339 strings (Z, offsets, lower-case z) give the precise path's floats."""
    rng = np.random.default_rng(1)
    forms = ["%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S.%f+02:00", "%Y-%m-%dT%H:%M:%Sz"]
    from datetime import datetime, timezone

    lines = []
    for ln in demo[:30_000]:
        if rng.random() < 0.3:
            d = orjson.loads(ln)
            form = forms[int(rng.integers(3))]
            dt = datetime.fromtimestamp(d["ts"], timezone.utc)
            d["ts"] = dt.strftime(form)
            ln = orjson.dumps(d)
        lines.append(ln)
    batches = _batches(lines, 2_000)
    assert _decode_both(batches) == len(batches)


GOOD_REQ = {"type": "request", "ts": 1764140400.5, "service": "checkout", "endpoint": "POST /pay", "status": 503,
            "latency_ms": 12.5, "version": "v43", "instance": "pod-1"}
# Lines orjson and msgspec might read differently, or that the fast path must decline; each among good lines.
EDGE_LINES = [
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":"\xff"}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":"\xed\xa0\x80"}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":1e9999}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":"\\ud800"}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":1}',
    b'{"type":"request","ts":1e400,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":18446744073709551617,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":-0,"service":"a","endpoint":"/","status":200,"latency_ms":-0.0}',
    b'{"type":"request","ts":1,"service":"a","service":"b","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","type":"log","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"deploy","type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"req\\u0075est","ts":1,"serv\\u0069ce":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":1,"service":"\\u00e9","endpoint":"\xf0\x9f\x98\x80","status":200,"latency_ms":1}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200.0,"latency_ms":1}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":true,"latency_ms":1}',
    b'{"type":"request","ts":true,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":"1.5","service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":"2026-11-26T06:00:00","service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"version":""}',
    b'{"type":"request","ts":1,"service":"' + b"s" * 201 + b'","endpoint":"/","status":200,"latency_ms":1}',
    b'{"type":"request","ts":1,"service":"' + "\u00e9".encode() * 200 + b'","endpoint":"/","status":200,'
    b'"latency_ms":1}',
    b'{"type":"log","ts":1,"service":"a","level":"warning","message":"","trace_id":"' + b"t" * 2001 + b'"}',
    b'{"type":"log","ts":1,"service":"a","level":"Stra\xc3\x9fe","message":"m"}',
    b'{"type":"metric","ts":1,"service":"a","name":"m","value":1,"labels":{"b":"1","a":"2","a":"3"}}',
    b'{"type":"metric","ts":1,"service":"a","name":"m","value":1,"labels":{}}',
    b'{"type":"metric","ts":1,"service":"a","name":"m","value":1,"labels":{"a":1}}',
    b'{"type":"deploy","ts":1,"service":"a","deploy_id":"d","version":"v","x":"\xff"}',
    b'{"type":"deploy","ts":1,"service":"a","deploy_id":"d","version":"v","phase":"oops"}',
    b'{"type":"check","ts":1,"service":"a","name":"n","passed":true}',
    b'{"type":"incident","ts":1,"service":"a","incident_id":"i","status":"resolved"}',
    b'\xef\xbb\xbf{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1}',
    b' {"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1}\t\r\n',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1}, {"type":"log"}',
    b'{"type":"request","ts":1,"service":"a","endpoint":"/","status":200,"latency_ms":1,"x":'
    + b"[" * 1100 + b"]" * 1100 + b"}",
    b"", b"   ", b"null", b"[]", b"\x00\xff\xfe binary garbage \x80", b'{"type":"x"}', b'{"type":5}',
]


def test_each_edge_line_among_good_lines_decodes_exactly_as_the_precise_path(demo):
    """Each line where a JSON reader or the contract has a corner, before, between and after good lines."""
    good = demo[:40]
    batches = []
    for edge in EDGE_LINES:
        batches += [[edge, *good], [*good[:20], edge, *good[20:]], [*good, edge], [edge]]
    fast = _decode_both(batches)
    assert 0 < fast < len(batches)


def test_lines_msgspec_would_skip_but_orjson_refuses_are_rejected_with_orjson_reason():
    """Invalid UTF-8 or an infinite number in a field the contract does not name: bad JSON, as before."""
    for edge in EDGE_LINES[:3]:
        got = decode_batch([orjson.dumps(GOOD_REQ), edge], Interner())
        assert len(got.requests) == 1 and [r.pos for r in got.rejected] == [1]
        assert got.rejected[0].reason.startswith("not valid JSON")


def test_hostile_stream_lines_decode_exactly_as_the_precise_path(tmp_path):
    """The hostile-input test's insertions (BOM, blanks, garbage, misdated events) in a scenario's stream."""
    from ingest.test_hostile_input import _poison

    src = tmp_path / "clean.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("config_fault")), src)
    dst = tmp_path / "poisoned.jsonl"
    _poison(src, dst)
    lines = dst.read_bytes().splitlines()
    batches = _batches(lines, 1_000)
    fast = _decode_both(batches)
    assert 0 < fast < len(batches)


_ODD = [None, True, 0, -1, 99, 600, 200.0, 2**64 - 1, 1e308, -0.0, "", "x" * 201, "y" * 2001, "2026-11-26T06:00:00Z",
        "2026-11-26T06:00:00+01:00", "nope", [], {}, {"a": "b"}, {"a": 1}, "<drop>"]


def _random_batches(lines: list[bytes], seed: int, n: int, bad_share: float) -> list[list[bytes]]:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        start = int(rng.integers(len(lines) - 600))
        batch = list(lines[start:start + int(rng.integers(1, 600))])
        for i in np.flatnonzero(rng.random(len(batch)) < bad_share).tolist():
            d = orjson.loads(batch[i])
            field = list(d)[int(rng.integers(len(d)))]
            if rng.random() < 0.1:
                field = "unknown_field"
            odd = _ODD[int(rng.integers(len(_ODD)))]
            if odd == "<drop>":
                d.pop(field, None)
            else:
                d[field] = odd
            batch[i] = orjson.dumps(d)
        batches.append(batch)
    return batches


def test_random_batches_mixing_good_and_bad_lines_decode_exactly_as_the_precise_path(demo):
    """Random stretches of the demo, some with a few damaged lines, some clean; capped interners too."""
    for seed, bad_share in ((1, 0.0), (2, 0.002), (3, 0.02)):
        batches = _random_batches(demo, seed, 150, bad_share)
        fast = _decode_both(batches)
        assert fast == len(batches) if bad_share == 0 else 0 < fast < len(batches)
        _decode_both(batches[:60], lambda: Interner(max_size=60, max_keys=5))


def test_an_interner_near_its_cap_leaves_the_batch_to_the_precise_path(demo):
    """New strings that would not all fit below max_size: the precise path's per-event overflow count."""
    batches = _batches(demo[:20_000], 500)
    fast = _decode_both(batches, lambda: Interner(max_size=75, max_keys=3))  # the first batch needs 68
    assert 0 < fast < len(batches)
    it = Interner(max_size=5, max_keys=1)
    assert decode_clean(batches[0], it, DEFAULT_MAX_BYTES) is None and it.strings() == ["other"]


def test_an_oversize_or_non_bytes_value_leaves_the_batch_to_the_precise_path(demo):
    """The byte limit and values that are no message (None, a number) are the precise path's to reject."""
    batches = [demo[:50], [*demo[:10], None, *demo[10:20]], [*demo[:10], 5], [*demo[:10], demo[10].decode()]]
    assert _decode_both(batches, max_bytes=200) < len(batches)
    assert _decode_both(batches) == 2


_field = st.sampled_from(["ts", "service", "endpoint", "status", "latency_ms", "version", "instance", "txn",
                          "level", "message", "logger", "trace_id", "name", "value", "labels", "other"])
_value = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
          | st.text(max_size=6) | st.sampled_from(["2026-11-26T06:00:00Z", "checkout", "v1", "WARN"])
          | st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(0, 9), max_size=3))


@functools.lru_cache(maxsize=1)
def _demo_head() -> tuple[bytes, ...]:
    """The demo's first 15 minutes (a cache, not a fixture: hypothesis would print a fixture's value)."""
    path = Path(tempfile.mkdtemp(prefix="fastpath-")) / "demo.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo"), duration_s=900), path)
    lines = tuple(path.read_bytes().splitlines())
    shutil.rmtree(path.parent)
    return lines


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 199), st.dictionaries(_field, _value, max_size=3)), max_size=8),
       st.integers(0, 5_000))
def test_any_damage_to_a_stretch_of_the_demo_decodes_exactly_as_the_precise_path(damage, start):
    """Fields overwritten with anything JSON holds, in a stretch of real lines: the precise path's result."""
    lines = list(_demo_head()[start:start + 200])
    for i, fields in damage:
        d = orjson.loads(lines[i])
        d.update(fields)
        lines[i] = orjson.dumps(d)
    _decode_both([lines])


def _numeral(rng: np.random.Generator) -> str:
    """A JSON number as a producer might write it: long mantissas, exponents, integers past 2**53 and 2**64."""
    k = rng.integers(5)
    if k == 0:
        return str(int(rng.integers(0, 2**62)) * int(rng.integers(1, 2**40)))
    if k == 1:
        digits = "".join(map(str, rng.integers(0, 10, size=int(rng.integers(1, 30)))))
        frac = "".join(map(str, rng.integers(0, 10, size=int(rng.integers(1, 30)))))
        return f"{digits.lstrip('0') or '0'}.{frac}e{int(rng.integers(-20, 12))}"
    if k == 2:
        return repr(float(rng.uniform(0, 2e9)))
    if k == 3:
        return f"{rng.uniform(0, 1e4):.{int(rng.integers(0, 25))}f}"
    x = abs(float(np.frombuffer(rng.bytes(8), dtype=np.float64)[0]))  # any double's shortest repr
    return repr(x) if np.isfinite(x) else "1e308"


def test_numbers_written_any_way_parse_to_the_same_bits_on_both_paths():
    """ts, latency_ms and value as numerals orjson and msgspec might round differently: the same float64 bits."""
    rng = np.random.default_rng(17)
    batches = []
    for _ in range(40):
        batch = []
        for _ in range(250):
            ts, lat, value = _numeral(rng), _numeral(rng), _numeral(rng)
            batch.append(b'{"type":"request","ts":%s,"service":"a","endpoint":"/","status":200,"latency_ms":%s}'
                         % (ts.encode(), lat.encode()))
            batch.append(b'{"type":"metric","ts":%s,"service":"a","name":"m","value":%s}'
                         % (ts.encode(), value.encode()))
        batches.append(batch)
    assert _decode_both(batches) == len(batches)
