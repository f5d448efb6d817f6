"""The rare event types: deploy metadata, smoke `check` results and `incident` reports."""

from __future__ import annotations

import orjson

from detector.ingest.contract import decode_batch
from detector.ingest.interner import Interner
from detector.ingest.partitioning import split_batch, partition_of

import numpy as np


def _decode(*docs):
    return decode_batch([orjson.dumps(d) for d in docs], Interner())


def test_checks_and_incidents_decode_with_their_optional_fields():
    b = _decode(
        {"type": "check", "ts": 1.7e9, "service": "a", "name": "home", "passed": False, "version": "v2",
         "deploy_id": "d-1", "duration_ms": 12, "message": "HTTP 500", "url": "http://a/"},
        {"type": "incident", "ts": 1.7e9, "service": "a", "incident_id": "i-1", "root_cause": "config",
         "resolved_ts": "2026-11-26T06:00:00Z", "severity": "sev2", "title": "checkout down"},
        {"type": "deploy", "ts": 1.7e9, "service": "a", "deploy_id": "d", "version": "v2", "reviewers": ["bob"],
         "labels": {"team": "pay", "migration": "true"}})
    assert not b.rejected
    [c] = b.checks
    assert (c.name, c.passed, c.version, c.deploy_id, c.duration_ms, c.message) == \
        ("home", False, "v2", "d-1", 12.0, "HTTP 500")
    [i] = b.incidents
    assert (i.incident_id, i.status, i.root_cause, i.resolved_ts) == ("i-1", "opened", "config", 1795672800.0)
    [d] = b.deploys
    assert d.reviewers == ("bob",) and d.labels == (("migration", "true"), ("team", "pay"))
    assert b.accepted == 3


def test_bad_rare_events_are_rejected_with_the_field_named():
    b = _decode({"type": "check", "ts": 1.7e9, "service": "a", "name": "home", "passed": "no"},
                {"type": "check", "ts": 1.7e9, "service": "a", "passed": True},
                {"type": "incident", "ts": 1.7e9, "service": "a", "incident_id": "i", "status": "closed"},
                {"type": "incident", "ts": 1.7e9, "service": "a", "incident_id": "i", "root_cause": "aliens"},
                {"type": "deploy", "ts": 1.7e9, "service": "a", "deploy_id": "d", "version": "v", "reviewers": "bob"},
                {"type": "deploy", "ts": 1.7e9, "service": "a", "deploy_id": "d", "version": "v", "labels": {"a": 1}})
    assert [r.reason for r in b.rejected] == [
        "check: field 'passed' must be a boolean (got string)",
        "check: missing field 'name'",
        "incident: field 'status' must be one of opened, resolved (got 'closed')",
        "incident: field 'root_cause' must be one of code, config, data_or_infra, unknown (got 'aliens')",
        "deploy: field 'reviewers' must be an array of strings or absent (got string)",
        "deploy: field 'labels.a' must be a string (got integer)",
    ]


def test_incidents_never_move_event_time_and_rare_events_follow_their_service():
    b = _decode({"type": "incident", "ts": 2e9, "service": "a", "incident_id": "i"},
                {"type": "check", "ts": 1.7e9, "service": "b", "name": "n", "passed": True})
    assert b.max_ts() == 1.7e9
    parts = split_batch(b, 4, np.zeros(0, np.int32))
    assert parts[partition_of("a", 4)].incidents and parts[partition_of("b", 4)].checks
