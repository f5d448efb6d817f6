"""A closed window's fleet summary: every service's totals in one grouped pass, wire-only fields on the wire only.

The summary's per-service totals must be exactly what `population` gives for
that service with its versions under verification left out (blame compares
them, and the golden records depend on them); a core that publishes nothing
skips the quantiles and the expected requests, and nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.core import Core
from detector.fleet.summarize import summarize
from detector.ingest.contract import decode_batch
from detector.judge.evidence import population, window_sums
from detector.simulate.scoring import pipeline_for
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    sc = load_scenario(resolve_scenario("shared_db_three_services"))
    events = tmp_path_factory.mktemp("summarize") / "events.jsonl"
    truth = simulate_to_file(sc, events)
    return truth, events


def _run(truth, events, check) -> None:
    """Feed the events through one core (fleet view on), calling `check(core, window)` as each window closes."""
    core = Core(pipeline_for(truth))
    core.window_listeners.append(lambda w: check(core, w))
    lines = events.read_bytes().splitlines()
    for i in range(0, len(lines), 4096):
        core.process(decode_batch(lines[i:i + 4096], core.interner, core.pipeline.limits.max_message_bytes))
    core.finish()


def test_each_services_totals_equal_its_population_with_versions_under_verification_left_out(shared_db):
    """Also: its metric levels are its own metric series with samples, in series order."""
    seen = {"services": 0, "excluded": 0, "metrics": 0}

    def check(core: Core, w) -> None:
        rs = core.requests
        verifying = {o.service: (o.version,) for o in core.judge.verifications.values() if o.open}
        s = summarize(core, w, 0, 1, set(), wire=False)
        sums = window_sums([w], len(rs))
        for svc in s.services:
            sid = core.interner.intern(svc.service)
            pop = population(sums, rs.service, rs.endpoint, rs.version, sid, exclude_versions=verifying.get(sid, ()))
            assert (svc.requests, svc.errors, svc.txn) == (pop.total_n, pop.total_errors, pop.total_txn)
            assert svc.lat_buckets.dtype == pop.whole.buckets.dtype and svc.lat_counts.dtype == pop.whole.counts.dtype
            assert np.array_equal(svc.lat_buckets, pop.whole.buckets)
            assert np.array_equal(svc.lat_counts, pop.whole.counts)
            ms, mn, ml = core.metrics.arrays()
            m_k = min(len(w.metric_n), len(ms))
            levels = tuple((core.interner.lookup(int(mn[m])), core.interner.lookup(int(ml[m])) if ml[m] >= 0 else "",
                            float(w.metric_sum[m]), int(w.metric_n[m]))
                           for m in np.flatnonzero((ms[:m_k] == sid) & (w.metric_n[:m_k] > 0)))
            assert tuple((m.name, m.labels, m.total, m.samples) for m in svc.metrics) == levels
            seen["services"] += 1
            seen["metrics"] += len(levels)
            if sid in verifying and pop.total_n < int(sums.count[rs.service == sid].sum()):
                seen["excluded"] += 1  # the new version's own traffic was left out of this total

    _run(*shared_db, check)
    assert seen["services"] > 100 and seen["excluded"] > 10  # the case that matters was met
    assert seen["metrics"] > 100


def test_a_summary_kept_off_the_wire_differs_only_in_its_quantiles_and_expected_requests(shared_db):
    seen = {"quantiles": 0, "expected": 0}

    def check(core: Core, w) -> None:
        on = summarize(core, w, 0, 2, set(), wire=True)
        off = summarize(core, w, 0, 2, set(), wire=False)
        assert [s.service for s in on.services] == [s.service for s in off.services]
        for a, b in zip(on.services, off.services):
            assert (a.requests, a.errors, a.txn, a.metrics, a.templates) == \
                (b.requests, b.errors, b.txn, b.metrics, b.templates)
            assert np.array_equal(a.lat_buckets, b.lat_buckets) and np.array_equal(a.lat_counts, b.lat_counts)
            assert all(math.isnan(q) for q in b.quantiles) and b.expected_requests is None
            seen["quantiles"] += a.requests > 0 and not any(math.isnan(q) for q in a.quantiles)
            seen["expected"] += a.expected_requests is not None

    _run(*shared_db, check)
    assert seen["quantiles"] > 100 and seen["expected"] > 10


def test_totals_of_many_windows_at_once_equal_each_windows_own(shared_db):
    """`service_totals_many` (windows closed together, one grouped pass) against `_service_totals`
    window by window, with the versions under verification then and with every service's
    busiest version left out."""
    from detector.fleet.summarize import _service_totals, service_totals_many

    windows, seen = [], {"compared": 0, "excluded": 0}
    truth, events = shared_db
    core = Core(pipeline_for(truth))
    core.window_listeners.append(windows.append)
    lines = events.read_bytes().splitlines()
    rng = np.random.default_rng(6)

    def same(got, want) -> None:
        assert got[0] == want[0]
        assert list(got[1]) == list(want[1])
        for sid, (n, e, t, lat) in want[1].items():
            gn, ge, gt, glat = got[1][sid]
            assert (gn, ge, gt) == (n, e, t) and type(gn) is int
            assert glat.buckets.dtype == lat.buckets.dtype and glat.counts.dtype == lat.counts.dtype
            assert np.array_equal(glat.buckets, lat.buckets) and np.array_equal(glat.counts, lat.counts)

    for i in range(0, len(lines), 4096):
        core.process(decode_batch(lines[i:i + 4096], core.interner, core.pipeline.limits.max_message_bytes))
        if len(windows) < 2:
            continue
        rs = core.requests
        now = {o.service: (o.version,) for o in core.judge.verifications.values() if o.open}
        busiest = {}
        for sid in np.unique(rs.service).tolist():
            mine = rs.service == sid
            busiest[sid] = (int(rs.version[mine][0]),)
        some = windows[-int(rng.integers(2, min(len(windows), 30) + 1)):]
        for verifying in (now, busiest, {}):
            for w, got in zip(some, service_totals_many(some, rs.service, rs.version, verifying)):
                k = len(w.count)
                services = np.unique(rs.service[:k][w.count > 0]).tolist() if k else []
                same(got, (services, _service_totals(w, rs.service, rs.version, services, verifying)))
                seen["compared"] += 1
                seen["excluded"] += bool(verifying) and any(
                    got[1][s][0] < int(w.count[:k][rs.service[:k] == s].sum()) for s in got[0])
    assert seen["compared"] > 300 and seen["excluded"] > 50


def test_a_core_summarising_windows_ahead_gives_the_same_records_and_summaries(shared_db):
    truth, events = shared_db
    lines = events.read_bytes().splitlines()
    ahead, alone = Core(pipeline_for(truth)), Core(pipeline_for(truth))
    alone.gate._totals_ahead = lambda core, out: None  # every window's totals on their own
    records = {id(ahead): [], id(alone): []}
    summaries = {id(ahead): [], id(alone): []}
    for core in (ahead, alone):
        publish = core.gate.publish
        core.gate.publish = lambda s, _p=publish, _out=summaries[id(core)]: (_out.append(s), _p(s))[1]
    for i in range(0, len(lines), 8192):
        for core in (ahead, alone):
            records[id(core)].extend(core.process(decode_batch(lines[i:i + 8192], core.interner)))
    for core in (ahead, alone):
        records[id(core)].extend(core.finish())
    assert records[id(ahead)] == records[id(alone)] and len(records[id(ahead)]) > 5
    assert len(summaries[id(ahead)]) == len(summaries[id(alone)]) > 100
    for a, b in zip(summaries[id(ahead)], summaries[id(alone)]):
        assert (a.start, a.end, [s.service for s in a.services]) == (b.start, b.end, [s.service for s in b.services])
        for x, y in zip(a.services, b.services):
            assert (x.requests, x.errors, x.txn, x.metrics, x.templates) == (y.requests, y.errors, y.txn, y.metrics,
                                                                            y.templates)
            assert np.array_equal(x.lat_buckets, y.lat_buckets) and np.array_equal(x.lat_counts, y.lat_counts)
