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
