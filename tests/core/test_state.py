"""Core state snapshots: a restored core continues exactly as the one that wrote the snapshot.

The key property is the crash-restart contract of the runtime: cut a replay
anywhere, snapshot, restore into a new core and carry on; the records (and
the final state) are byte-identical to an uninterrupted run. The rest pins
the format down: canonical bytes, and a clear `StateError` for anything
truncated, corrupt, foreign or incompatible.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.aggregate import sketch
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.simulate.scoring import pipeline_for
from detector.records import Verdict, encode
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario
from detector.state import _PREFIX, FORMAT_VERSION, StateError, _unvalue, _value
from detector.aggregate.windows import _OpenWindow

CHUNK_LINES = 500  # ~20 s of event time: small enough to cut inside a fast rollback's verification
STATE_EVERY = 10
SCENARIOS = ["config_fault", "code_fault_canary", "infra_slowdown", "log_only_code"]
RATE_SCALE = 0.25
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_576


@dataclasses.dataclass
class Scenario:
    pipeline: object
    chunks: list[list[bytes]]
    uninterrupted: tuple[list[list[bytes]], dict[int, bytes]] | None = None


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict[str, Scenario]:
    workdir = tmp_path_factory.mktemp("state")
    out = {}
    for name in SCENARIOS:
        sc = load_scenario(resolve_scenario(name), rate_scale=RATE_SCALE)
        path = Path(workdir) / f"{name}.jsonl"
        truth = simulate_to_file(sc, path)
        lines = [line.rstrip(b"\n") for line in path.read_bytes().splitlines() if line.strip()]
        out[name] = Scenario(pipeline_for(truth), [lines[i:i + CHUNK_LINES] for i in range(0, len(lines), CHUNK_LINES)])
    return out


def _feed(core: Core, chunk: list[bytes]) -> list:
    return core.process(decode_batch(chunk, core.interner))


def _uninterrupted(sc: Scenario) -> tuple[list[list[bytes]], dict[int, bytes]]:
    """Encoded records per chunk (the last entry is `finish`) and the snapshot after every
    `STATE_EVERY`-th chunk and after `finish` (key -1); computed once per scenario."""
    if sc.uninterrupted is None:
        sc.uninterrupted = _run_uninterrupted(sc)
    return sc.uninterrupted


def _run_uninterrupted(sc: Scenario) -> tuple[list[list[bytes]], dict[int, bytes]]:
    core = Core(sc.pipeline)
    records, snaps = [], {}
    for i, chunk in enumerate(sc.chunks):
        records.append([encode(r) for r in _feed(core, chunk)])
        if i % STATE_EVERY == 0:
            snaps[i] = core.snapshot()
    records.append([encode(r) for r in core.finish()])
    snaps[-1] = core.snapshot()
    return records, snaps


@pytest.mark.parametrize("name", SCENARIOS)
def test_restoring_after_every_batch_changes_no_record_and_no_state(name, scenarios):
    """Restoring into a new core after every batch changes no record of any batch and no state byte."""
    sc = scenarios[name]
    want_records, want_snaps = _uninterrupted(sc)
    assert any(want_records), "the scenario should produce records, or the comparison proves nothing"
    kinds: set[str] = set()
    core = Core(sc.pipeline)
    for i, chunk in enumerate(sc.chunks):
        got = [encode(r) for r in _feed(core, chunk)]
        assert got == want_records[i], f"{name}: records of batch {i} differ after restores"
        data = core.snapshot()
        if i in want_snaps:
            assert data == want_snaps[i], f"{name}: state after batch {i} differs from the uninterrupted run's"
        kinds |= _cut_kinds(core, got)
        core = Core.restore(sc.pipeline, data)
    assert [encode(r) for r in core.finish()] == want_records[-1]
    assert core.snapshot() == want_snaps[-1]
    # the cuts covered the interesting moments of a deploy's life
    assert {"before any deploy", "mid-verification", "right after a verdict"} <= kinds, kinds


def _cut_kinds(core: Core, records: list[bytes]) -> set[str]:
    kinds = set()
    if core.stats.events and not core.judge.verifications and not core.judge.done:
        kinds.add("before any deploy")
    if any(v.slices for v in core.judge.open_verifications()):
        kinds.add("mid-verification")
    if any(orjson.loads(r)["type"] == "verdict" for r in records):
        kinds.add("right after a verdict")
    return kinds


def test_a_restore_mid_verification_continues_to_the_same_verdict(scenarios):
    """A core restored while a deploy is verified emits the rest of the records, verdict included, byte for byte."""
    sc = scenarios["config_fault"]
    want_records, _ = _uninterrupted(sc)
    core = Core(sc.pipeline)
    got: list[bytes] = []
    restored_mid_verification = False
    for chunk in sc.chunks:
        got += [encode(r) for r in _feed(core, chunk)]
        if not restored_mid_verification and any(v.slices for v in core.judge.open_verifications()):
            core = Core.restore(sc.pipeline, core.snapshot())
            restored_mid_verification = True
            assert core.judge.open_verifications(), "the open verification should survive the restore"
    got += [encode(r) for r in core.finish()]
    assert restored_mid_verification
    assert got == [r for batch in want_records for r in batch]
    assert any(orjson.loads(r)["type"] == "verdict" for r in got)


def test_snapshot_of_a_restored_core_is_byte_identical(scenarios):
    """snapshot -> restore -> snapshot gives the same bytes, with open windows, history and an open verification."""
    sc = scenarios["code_fault_canary"]
    core = Core(sc.pipeline)
    for chunk in sc.chunks:
        _feed(core, chunk)
        if core.judge.open_verifications() and core.windows.open and len(core.history) > 10:
            break
    assert core.judge.open_verifications() and core.windows.open
    data = core.snapshot()
    assert Core.restore(sc.pipeline, data).snapshot() == data
    assert core.snapshot() == data, "taking a snapshot must not change the core"


def test_snapshot_of_the_demo_like_state_is_small_and_quick(scenarios, capsys):
    """A partition with ~90 windows of history, log templates and an open verification fits well within one
    Kafka message of the default maximum size."""
    sc = scenarios["infra_slowdown"]
    core = Core(sc.pipeline)
    data = b""
    for chunk in sc.chunks:
        _feed(core, chunk)
        if core.judge.open_verifications():
            data = core.snapshot()
    assert data and len(core.history) >= 60
    t0 = time.perf_counter()
    data = core.snapshot()
    t1 = time.perf_counter()
    Core.restore(sc.pipeline, data)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n  core snapshot: {len(data):,} bytes ({len(core.history)} closed windows, {len(core.requests)} "
              f"request series, {len(core.logs)} log templates); snapshot {1e3 * (t1 - t0):.0f} ms, "
              f"restore {1e3 * (t2 - t1):.0f} ms")
    assert len(data) < KAFKA_DEFAULT_MAX_MESSAGE_BYTES / 4


def test_pending_deploys_and_counters_survive_a_restore(scenarios):
    """A deploy event whose window is still open, the stats and the late-event count are part of the state."""
    sc = scenarios["config_fault"]
    core = Core(sc.pipeline)
    for chunk in sc.chunks:
        _feed(core, chunk)
        if core._pending_deploys:
            break
    assert core._pending_deploys, "a batch should end before the window holding the deploy closes"
    restored = Core.restore(sc.pipeline, core.snapshot())
    assert restored._pending_deploys == core._pending_deploys
    assert restored.stats == core.stats
    assert restored.late_events == core.late_events
    assert restored.windows.watermark == core.windows.watermark


# --------------------------------------------------------------------------- bad snapshots


@pytest.fixture(scope="module")
def good(scenarios) -> tuple[object, bytes]:
    sc = scenarios["log_only_code"]
    core = Core(sc.pipeline)
    for chunk in sc.chunks[: len(sc.chunks) // 2]:
        _feed(core, chunk)
    return sc.pipeline, core.snapshot()


def _reframe(data: bytes, edit) -> bytes:
    """The snapshot with its header edited by `edit(header)` and a valid frame around it."""
    raw = zlib.decompress(data[_PREFIX.size:])
    n = struct.unpack_from("<I", raw)[0]
    header = orjson.loads(raw[4:4 + n])
    edit(header)
    head = orjson.dumps(header)
    raw = struct.pack("<I", len(head)) + head + raw[4 + n:]
    payload = zlib.compress(raw)
    return _PREFIX.pack(b"DETSTATE", FORMAT_VERSION, zlib.crc32(payload), len(payload), len(raw)) + payload


@pytest.mark.parametrize("cut", [0, 7, 31, 32, 100, -1])
def test_a_truncated_snapshot_is_refused(good, cut):
    """A snapshot cut short anywhere raises StateError saying it is truncated and how to start cold."""
    pipeline, data = good
    with pytest.raises(StateError, match="truncated.*start this partition cold"):
        Core.restore(pipeline, data[:cut] if cut >= 0 else data[:len(data) + cut])


def test_a_flipped_bit_is_refused_by_the_checksum(good):
    """One flipped bit in the payload raises StateError naming the checksum."""
    pipeline, data = good
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(StateError, match="corrupt: payload checksum"):
        Core.restore(pipeline, bytes(bad))


def test_foreign_bytes_and_other_versions_are_refused(good):
    """Bytes that are not a snapshot, or a snapshot of another format version, raise StateError saying so."""
    pipeline, data = good
    with pytest.raises(StateError, match="not a core state snapshot"):
        Core.restore(pipeline, b'{"format": 1}' + b" " * 40)
    newer = bytearray(data)
    struct.pack_into("<I", newer, 8, FORMAT_VERSION + 1)
    with pytest.raises(StateError, match=f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"):
        Core.restore(pipeline, bytes(newer))


def test_a_snapshot_written_for_other_windows_or_without_logs_is_refused(good):
    """Restoring under another window width, or with the log step switched off, raises StateError naming the setting."""
    pipeline, data = good
    wider = dataclasses.replace(pipeline, windows=dataclasses.replace(pipeline.windows, width_s=30.0))
    with pytest.raises(StateError, match=r"windows.width_s = 10.0.*has 30.0"):
        Core.restore(wider, data)
    no_logs = dataclasses.replace(pipeline, logs=dataclasses.replace(pipeline.logs, enabled=False))
    with pytest.raises(StateError, match="logs.enabled"):
        Core.restore(no_logs, data)


def test_settings_that_do_not_shape_the_state_may_change(good):
    """Thresholds and lateness may change across a restart: the state is restored under the new pipeline."""
    pipeline, data = good
    changed = dataclasses.replace(pipeline, windows=dataclasses.replace(pipeline.windows, lateness_s=20.0),
                                  tests=dataclasses.replace(pipeline.tests, min_requests=50))
    core = Core.restore(changed, data)
    assert core.pipeline is changed and core.windows.lateness_s == 20.0


def test_an_unknown_class_in_the_state_is_refused_not_built(good):
    """A snapshot naming a class outside the fixed table raises StateError; nothing is imported or called."""
    pipeline, data = good

    def plant(header):
        header["state"]["pending_deploys"] = [{"$c": "Popen", "v": {"args": ["true"]}}]

    with pytest.raises(StateError, match=r"pending_deploys section is malformed.*unknown tagged value"):
        Core.restore(pipeline, _reframe(data, plant))


def test_a_malformed_section_is_named(good):
    """A structurally broken section raises StateError naming the section."""
    pipeline, data = good

    def break_history(header):
        header["state"]["history"]["rows"] += 1

    def break_array_ref(header):
        header["state"]["requests"]["a"] = 10 ** 6

    def object_dtype(header):
        header["arrays"][header["state"]["requests"]["a"]][0] = "|O"

    with pytest.raises(StateError, match="history section is malformed"):
        Core.restore(pipeline, _reframe(data, break_history))
    with pytest.raises(StateError, match="requests section is malformed.*array reference"):
        Core.restore(pipeline, _reframe(data, break_array_ref))
    with pytest.raises(StateError, match="requests section is malformed.*allowed dtypes"):
        Core.restore(pipeline, _reframe(data, object_dtype))


def test_a_damaged_embedded_baseline_bank_is_refused(good):
    """A seasonal bank that does not parse raises StateError naming the seasonal baselines."""
    pipeline, data = good

    def empty_bank(header):
        header["arrays"][header["state"]["seasonal"]["bank"]][1] = [3]

    with pytest.raises(StateError, match="seasonal baselines are damaged"):
        Core.restore(pipeline, _reframe(data, empty_bank))


# --------------------------------------------------------------------------- building blocks


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=True),
                     st.text(max_size=8))
_keys = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.tuples(st.text(max_size=3), st.integers(0, 9)))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=200, deadline=None)
@given(_values)
def test_plain_values_round_trip_through_json_with_their_types(v):
    """Tuples, tuple-keyed dicts, '$' keys, NaN and infinities come back with the same types and order."""
    assert _same(_unvalue(orjson.loads(orjson.dumps(_value(v)))), v)


def test_an_open_window_restored_from_its_state_closes_to_the_same_facts():
    """An open window with several chunks closes to the same facts after to_state/from_state as before."""
    rng = np.random.default_rng(7)
    win = _OpenWindow()
    for _ in range(5):
        n = int(rng.integers(1, 200))
        s = rng.integers(0, 40, n)
        txn = np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), -1).astype(np.int32)
        win.add_requests(s, rng.random(n) < 0.1, sketch.bucket_index(rng.lognormal(4, 1, n)).astype(np.int64),
                         txn, 40)
        win.add_metrics(rng.integers(0, 20, 30), rng.normal(size=30), 20)
        win.add_logs(rng.integers(0, 1 << 30, 25))
    state = win.to_state()
    copy = _OpenWindow.from_state({k: np.array(a, copy=True) for k, a in state.items()})
    a, b = win.close(0.0, 10.0, 45, 25), copy.close(0.0, 10.0, 45, 25)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, sketch.GroupedSketch):
            assert all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in zip(x, y)), f.name
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y) and x.dtype == y.dtype, f.name
        else:
            assert x == y, f.name


def test_a_core_before_any_event_round_trips(scenarios):
    """An empty core snapshots and restores to an empty core with the same bytes."""
    pipeline = scenarios["config_fault"].pipeline
    data = Core(pipeline).snapshot()
    restored = Core.restore(pipeline, data)
    assert restored.snapshot() == data and not restored.history and restored.windows.watermark is None
    assert not any(isinstance(r, Verdict) for r in restored.finish())
