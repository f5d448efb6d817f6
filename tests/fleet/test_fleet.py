"""The fleet view: per-window service summaries shared between partitions (issue 19).

Blame's evidence of a shared cause (other services, their log templates, a
dependency's metric) must not depend on how services are spread over
partitions: replaying with 1, 2 or 8 partitions gives the same decisions.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import orjson
import pytest

from detector.aggregate import sketch
from detector.config import ConfigError, load_pipeline, parse_pipeline
from detector.core import Core
from detector.simulate.scoring import pipeline_for, replay_scenario
from detector.fleet.summary import (MetricLevel, ServiceSummary, SummaryError, TemplateNote, WindowSummary, decode,
                                    encode)
from detector.fleet.evidence import FleetEvidence
from detector.fleet.view import FleetView
from detector.records import encode as encode_record
from detector.replay import replay


def _service(name: str, n: int = 100, errors: int = 2, lat=(50.0, 80.0, 120.0)) -> ServiceSummary:
    s = sketch.from_values(np.repeat(np.asarray(lat), n // len(lat) + 1)[:n]) if lat else sketch.empty()
    qs = (50.0, 120.0, 120.0) if lat else (math.nan,) * 3
    return ServiceSummary(service=name, requests=n, errors=errors, txn=n - errors, lat_buckets=s.buckets,
                          lat_counts=s.counts, quantiles=qs, expected_requests=95.5,
                          metrics=(MetricLevel("db_latency_ms", "db=main", 42.0, 3),),
                          templates=(TemplateNote("t-1", "connection", 100.0, "connection refused <*>"),))


def _window(p: int, n: int, end: float, *services: ServiceSummary) -> WindowSummary:
    return WindowSummary(partition=p, partitions=n, start=end - 10, end=end, services=services)


def test_a_summary_survives_encoding_exactly():
    w = _window(1, 4, 100.0, _service("ledger"), _service("limits", n=0, errors=0, lat=()))
    back = decode(encode(w))
    assert (back.partition, back.partitions, back.start, back.end) == (1, 4, 90.0, 100.0)
    a, b = back.services
    assert a.service == "ledger" and a.requests == 100 and a.errors == 2 and a.txn == 98
    assert np.array_equal(a.lat_buckets, w.services[0].lat_buckets)
    assert np.array_equal(a.lat_counts, w.services[0].lat_counts)
    assert a.metrics == w.services[0].metrics and a.templates == w.services[0].templates
    assert a.quantiles == (50.0, 120.0, 120.0) and a.expected_requests == 95.5
    assert b.requests == 0 and all(math.isnan(q) for q in b.quantiles) and len(b.lat_buckets) == 0


def test_a_metric_sum_that_overflowed_survives_encoding():
    """Two valid samples of 1e308 in one window sum to inf; orjson wrote it as null and every
    other partition failed to decode the summary (a replay with --partitions 2 crashed)."""
    levels = (MetricLevel("m", "", math.inf, 2), MetricLevel("m", "a=b", -math.inf, 2),
              MetricLevel("n", "", math.nan, 1))
    w = _window(0, 2, 100.0, dataclasses.replace(_service("a"), metrics=levels))
    (back,) = decode(encode(w)).services
    assert [m.total for m in back.metrics[:2]] == [math.inf, -math.inf] and math.isnan(back.metrics[2].total)
    with pytest.raises(SummaryError):
        decode(encode(w).replace(b'"inf"', b'"lots"'))


def test_a_replay_with_huge_metric_values_runs_at_any_partition_count(tmp_path):
    t0 = 1764140400.0
    events = [{"type": "request", "ts": t0 + i, "service": "a", "endpoint": "/", "status": 200, "latency_ms": 5}
              for i in range(60)]
    events += [{"type": "metric", "ts": t0 + i, "service": "a", "name": "m", "value": 1e308} for i in range(2)]
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=lambda e: e["ts"])))
    sent: list[bytes] = []
    replay([path], load_pipeline(), lambda r: None, partitions=2, fleet_messages=sent.append)
    assert any(b'"inf"' in m for m in sent)


@pytest.mark.parametrize("bad", [b"not json", b"{}", orjson.dumps({"v": 99}),
                                 orjson.dumps({"v": 1, "p": 5, "n": 2, "start": 0, "end": 10, "s": []}),
                                 orjson.dumps({"v": 1, "p": 0, "n": 1, "start": 0, "end": 10, "s": [
                                     {"svc": "a", "req": 1, "err": 0, "txn": 0, "lb": [5, 3], "lc": [1, 1],
                                      "q": [None, None, None], "exp": None, "m": [], "t": []}]})])
def test_a_malformed_summary_is_refused_with_a_reason(bad):
    with pytest.raises(SummaryError):
        decode(bad)


def test_the_view_knows_which_partitions_have_summarised_a_window():
    view = FleetView(partitions=3, windows_kept=10)
    view.add(_window(0, 3, 100.0, _service("a")))
    view.add(_window(2, 3, 110.0))  # partition 2 had no traffic up to 110: its horizon says so
    assert view.missing(100.0) == [1]
    assert not view.complete(100.0)
    view.add(_window(1, 3, 100.0, _service("b")))
    assert view.complete(100.0) and view.missing(110.0) == [0, 1]
    assert view.services(90.0, 100.0) == ["a", "b"]
    assert view.add(_window(0, 4, 100.0)) is False  # another partition count: not this fleet's


def test_the_view_adds_a_services_windows_exactly_and_is_idempotent():
    view = FleetView(partitions=1, windows_kept=10)
    for end in (100.0, 110.0, 120.0):
        view.add(_window(0, 1, end, _service("a", n=30, errors=3)))
    view.add(_window(0, 1, 110.0, _service("a", n=30, errors=3)))  # the same summary again
    t = view.totals("a", 90.0, 120.0)
    assert (t.total_n, t.total_errors, t.total_txn) == (90, 9, 81)
    assert sketch.count(t.whole) == 90
    assert view.totals("a", 100.0, 120.0).total_n == 60  # windows inside [100, 120) only


def test_the_view_is_bounded_by_the_windows_it_keeps():
    view = FleetView(partitions=2, windows_kept=5)
    for k in range(50):
        for p in range(2):
            view.add(_window(p, 2, 10.0 * (k + 1), _service(f"s{p}")))
    windows, services = view.size()
    assert windows == 5 and services == 10
    assert view.add(_window(0, 2, 10.0, _service("s0"))) is False  # older than what is kept


def test_fleet_settings_are_validated_strictly():
    p = parse_pipeline("[fleet]\nmax_wait_s = 12\nwindows_kept = 400\n")
    assert p.fleet.max_wait_s == 12.0 and p.fleet.windows_kept == 400 and p.fleet.topic == "detector.fleet"
    for bad in ("[fleet]\nmax_wait_s = 0\n", "[fleet]\nwindows_kept = 0\n", "[fleet]\nwait = 3\n",
                "[fleet]\nenabled = 1\n", "[fleet]\ntopic = \"fleet summaries\"\n", "[fleet]\ntopic = \"\"\n"):
        with pytest.raises(ConfigError):
            parse_pipeline(bad)
    assert load_pipeline().fleet.enabled
    too_few = dataclasses.replace(load_pipeline(), fleet=dataclasses.replace(load_pipeline().fleet, windows_kept=3))
    with pytest.raises(ConfigError, match="windows_kept"):
        Core(too_few)


# --- the same decisions at any partition count ---------------------------------------------------------


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    """A benign deploy that lands just before a shared database slows down for three services."""
    truth, _records, events = replay_scenario("shared_db_three_services", tmp_path_factory.mktemp("fleet"))
    return truth, events


def _decisions(truth, events, partitions: int, fleet: bool = True) -> list[tuple]:
    p = pipeline_for(truth)
    p = dataclasses.replace(p, fleet=dataclasses.replace(p.fleet, enabled=fleet))
    records: list[dict] = []
    replay([events], p, lambda r: records.append(orjson.loads(encode_record(r))), partitions=partitions)
    return sorted((r["deploy_id"], r["decision"], r["root_cause"]["category"], tuple(r["reasons"]))
                  for r in records if r["type"] == "verdict")


def test_without_the_fleet_view_the_decision_depends_on_the_partition_count(shared_db):
    """The problem: a partition sees only its own services, so blame for the shared database
    changes with how services happen to be spread."""
    truth, events = shared_db
    one, eight = _decisions(truth, events, 1, fleet=False), _decisions(truth, events, 8, fleet=False)
    assert [d[:3] for d in one] != [d[:3] for d in eight]


def test_with_the_fleet_view_decisions_are_identical_at_1_2_and_8_partitions(shared_db):
    truth, events = shared_db
    one = _decisions(truth, events, 1)
    assert _decisions(truth, events, 2) == one
    assert _decisions(truth, events, 8) == one
    expected = {d["deploy_id"]: (d["expect"], d.get("expect_root_cause")) for d in truth["deploys"]}
    for deploy_id, decision, category, reasons in one:
        want, want_cause = expected[deploy_id]
        assert decision == want and category == (want_cause or category)
        assert any("other services" in r for r in reasons), reasons  # blamed on services of other partitions


@pytest.mark.parametrize("name", ["infra_slowdown", "new_exception_everywhere", "canary_endpoint_errors"])
def test_scenarios_get_the_same_decisions_at_1_2_and_8_partitions(name, tmp_path):
    """Scenarios with several services: a shared slowdown, the same exception in every service,
    a canary. (The whole suite was checked the same way; see README "Scale-out and the fleet view".)"""
    truth, _records, events = replay_scenario(name, tmp_path)
    one = _decisions(truth, events, 1)
    assert one and _decisions(truth, events, 2) == one and _decisions(truth, events, 8) == one


# --- waiting for partitions ---------------------------------------------------------------------------


def _deploys_partition(shared_db):
    """The core of the deploy's partition (of 2), the input lines, and a function routing a chunk of
    lines to that partition (decoded with the core's interner)."""
    truth, events = shared_db
    from detector.ingest.contract import decode_batch
    from detector.ingest.interner import Interner
    from detector.ingest.partitioning import Router, partition_of

    own = partition_of(truth["deploys"][0]["service"], 2)
    p = pipeline_for(truth)
    interner = Interner(max_size=p.limits.max_interned_strings)
    core = Core(p, interner=interner, partition=own, partitions=2)
    router = Router(interner, 2)
    lines = [ln for ln in events.read_bytes().splitlines() if ln.strip()]

    def route(chunk):
        return router.split(decode_batch(chunk, interner, p.limits.max_message_bytes))[own]

    return truth, p, own, core, lines, route


def test_a_silent_partition_is_named_in_the_records_judged_without_it(shared_db):
    """The core of the deploy's partition (of 2) never hears from the other: what it judges
    at the end of input says which partition it judged without."""
    truth, p, own, core, lines, route = _deploys_partition(shared_db)
    records = []
    for i in range(0, len(lines), 8192):
        part = route(lines[i:i + 8192])
        records.extend(core.process(part, source="events"))
    assert not any(r.__class__.__name__ == "Verdict" for r in records)  # waiting for partition 1
    assert core.gate.queue  # windows held back, not judged without the fleet
    records.extend(core.finish())
    judged = [r for r in records if getattr(r, "detail", None) and "fleet_missing" in r.detail]
    assert judged and all(r.detail["fleet_missing"] == [1 - own] for r in judged)
    assert any(r.__class__.__name__ == "Verdict" for r in judged)


def test_a_restored_core_rebuilds_its_part_of_the_fleet_view(shared_db):
    truth, events = shared_db
    from detector.ingest.contract import decode_batch

    p = pipeline_for(truth)
    core = Core(p)
    lines = [ln for ln in events.read_bytes().splitlines() if ln.strip()][:60_000]
    core.process(decode_batch(lines, core.interner, p.limits.max_message_bytes), source="events")
    held = core.fleet.size()
    assert held[1] > 0
    back = Core.restore(p, core.snapshot())
    assert back.fleet.size()[1] > 0 and back.fleet.horizon == {0: core.history[-1].end}
    assert back.fleet.services(core.history[0].start, core.history[-1].end) == \
        core.fleet.services(core.history[0].start, core.history[-1].end)


def test_a_checkpoint_keeps_the_windows_that_wait_for_the_fleet(shared_db):
    """Closed windows held back for the fleet exist nowhere else in the core: a snapshot taken while
    they wait restores them (as partition 0 of 2), and the restored core judges them exactly as the
    original does."""
    truth, p, own, core, lines, route = _deploys_partition(shared_db)
    for i in range(0, len(lines) * 2 // 3, 8192):
        core.process(route(lines[i:i + 8192]), source="events")
    # the other partition summarised every window before the head: the head is prepared and waits
    head = core.gate.queue[0]
    core.fleet.add(WindowSummary(1 - own, 2, head.start - p.windows.width_s, head.start, ()))
    core.judge_ready()
    waiting = [w.end if not isinstance(w, float) else w for w in core.gate.queue]
    assert len(waiting) > 3 and core.gate.head_ready
    back = Core.restore(p, core.snapshot(), own, 2)
    assert (back.partition, back.partitions) == (own, 2)
    assert [w.end if not isinstance(w, float) else w for w in back.gate.queue] == waiting
    assert back.gate.head_ready and back.gate.queue[0] is back.history[-1]
    assert back.gate._templates_sent == core.gate._templates_sent
    assert [orjson.loads(encode_record(r)) for r in back.finish()] == \
        [orjson.loads(encode_record(r)) for r in core.finish()]


def test_infra_evidence_when_the_median_window_passes_and_no_single_window_does():
    """Stress seed 171: two span windows of 1e308 average to inf, so the span's median deviates while
    neither window does on its own; the time range the series was up is then the whole span (it
    raised IndexError)."""
    def at(end: float, value: float) -> WindowSummary:
        return _window(0, 1, end, dataclasses.replace(
            _service("a"), metrics=(MetricLevel("db_latency_ms", "db=main", value, 1),)))

    view = FleetView(partitions=1, windows_kept=20)
    for i, v in enumerate((0.0, 3e307, 6e307, 9e307, 1.2e308)):
        view.add(at(10.0 * (i + 1), v))
    view.add(at(60.0, 1e308))
    view.add(at(70.0, 1e308))
    evidence = FleetEvidence(view, ("db_latency_ms",), lambda labels: False)
    ((service, text, on),) = evidence.infra_series((50.0, 70.0), (0.0, 50.0))
    assert service == "a" and text.startswith("db_latency_ms{db=main} of a") and on == (50.0, 70.0)
