"""Populations the judge compares always line up on one endpoint table.

The new version may reach endpoints the reference never saw (and the
reverse), and a flood of never-seen paths folds into the service's `other`
bucket after the endpoint cap: every comparison must still be made row by
row on the same endpoints, without crashing and without mixing rows up.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest

from detector.aggregate import sketch
from detector.config import load_pipeline
from detector.judge import accumulate
from detector.stats import sequential
from detector.judge.evidence import Population, on_endpoints
from detector.replay import replay


def _pop(endpoints, n, errors, txn=None) -> Population:
    endpoints = np.asarray(endpoints, np.int32)
    n = np.asarray(n, np.int64)
    errors = np.asarray(errors, np.int64)
    txn = np.zeros(len(n), np.int64) if txn is None else np.asarray(txn, np.int64)
    rows = [sketch.Sketch(np.array([100], np.int32), np.array([int(k)], np.int64)) if k else sketch.empty()
            for k in n]
    return Population(endpoints, n, errors, txn, sketch.stack(rows), sketch.merge(*rows), int(n.sum()),
                      int(errors.sum()), int(txn.sum()), 1, 10.0)


def test_on_endpoints_moves_rows_and_zero_fills_missing_ones():
    p = _pop([3, 7, 9], [10, 20, 30], [1, 2, 3])
    q = on_endpoints(p, np.array([1, 7, 9, 12], np.int32))
    assert q.endpoints.tolist() == [1, 7, 9, 12]
    assert q.n.tolist() == [0, 20, 30, 0] and q.errors.tolist() == [0, 2, 3, 0]
    assert q.total_n == 60 and q.total_errors == 6  # totals keep every endpoint
    assert q.sketch_of(1).counts.tolist() == [20] and q.sketch_of(0).counts.tolist() == []
    assert on_endpoints(p, p.endpoints) is p


def test_evidence_compares_populations_with_different_endpoint_tables():
    """The reference saw endpoints 1, 2 and 9, the new version 1, 2, 5, 6 and 8; endpoint 2 fails."""
    new = _pop([1, 2, 5, 6, 8], [400, 400, 300, 300, 300], [2, 200, 300, 1, 1])
    stable = _pop([1, 2, 9], [4000, 4000, 50], [20, 20, 0])
    pre = _pop([2, 9], [900, 50], [4, 0])
    r_pre, m_pre = accumulate.before_counts("error_rate", on_endpoints(pre, new.endpoints))
    assert r_pre.tolist() == [0, 4, 0, 0, 0] and m_pre.tolist() == [0, 900, 0, 0, 0]
    for same_window in (True, False):
        llr, before = accumulate.window_llr("error_rate", new, stable, pre, same_window)
        assert llr.shape == (5, sequential.G) and before.shape == (5, 2)
        evidence = {}
        accumulate.add_window(evidence, "error_rate", new.endpoints, llr, before)
        e, _service = accumulate.log10_evidence(evidence, "error_rate", new.endpoints, r_pre, m_pre)
        # Endpoint 2 fails against its own reference row; endpoint 5 fails on every call but has
        # no reference row anywhere and is not compared with another endpoint's.
        assert e[1] > 10 and e[2] == 0.0
        compared_same = np.any(llr != 0, axis=1)
        if same_window:
            assert compared_same.tolist() == [True, True, False, False, False]
        else:
            assert not compared_same.any() and before[:, 1].tolist() == [0, 400, 0, 0, 0]
    k, n, r, m = accumulate.span_tables("error_rate", [new, new], [stable, stable], pre, [True, False],
                                        new.endpoints)
    assert k.shape == (2, 5) and k[0].tolist() == [2, 200, 300, 1, 1]
    assert r[0].tolist() == [20, 20, 0, 0, 0] and m[0].tolist() == [4000, 4000, 0, 0, 0]
    assert r[1].tolist() == [0, 4, 0, 0, 0] and m[1].tolist() == [0, 900, 0, 0, 0]


def _flood_events(seconds_before=900, seconds_after=1900, flood_after_s=1000, cap=20):
    """A service with 4 endpoints; a rolling deploy of v2 whose requests then hit never-seen paths,
    more than the endpoint cap, so the overflow folds into `other`. The flood starts long after
    the deploy (later than one replay chunk), so the reference was taken on the old endpoint table."""
    rng = np.random.default_rng(3)
    t0 = 1_764_140_400.0
    lines = []
    eps = ["GET /a", "GET /b", "POST /c", "GET /d"]
    t = t0
    fresh = 0
    while t < t0 + seconds_before + seconds_after:
        after = t >= t0 + seconds_before
        version = "v2" if after else "v1"
        if after and t >= t0 + seconds_before + flood_after_s:
            endpoint = f"GET /item/{fresh}"
            fresh += 1
        else:
            endpoint = eps[int(rng.integers(0, len(eps)))]
        lines.append({"type": "request", "ts": round(t, 3), "service": "shop", "endpoint": endpoint,
                      "status": 500 if rng.random() < 0.01 else 200, "latency_ms": float(rng.gamma(2.0, 40.0)),
                      "version": version, "instance": "shop-1"})
        if abs(t - (t0 + seconds_before)) < 0.1:
            lines.append({"type": "deploy", "ts": round(t, 3), "service": "shop", "deploy_id": "d-flood",
                          "version": "v2", "previous_version": "v1", "strategy": "rolling"})
        t += 0.1
    return lines, cap


def test_a_flood_of_never_seen_endpoints_under_verification_replays_without_crashing(tmp_path):
    lines, cap = _flood_events()
    path = tmp_path / "flood.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    pipeline = load_pipeline()
    pipeline = dataclasses.replace(pipeline, limits=dataclasses.replace(pipeline.limits,
                                                                        max_endpoints_per_service=cap))
    records = []
    replay([path], pipeline, lambda r: records.append(r.to_dict()))
    verdicts = [r for r in records if r["type"] == "verdict"]
    assert [v["deploy_id"] for v in verdicts] == ["d-flood"]
    # The flood's paths are healthy (1 % errors, like before): no alarm against the deploy.
    assert verdicts[0]["decision"] not in ("rollback", "page"), verdicts[0]
