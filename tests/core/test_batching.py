"""The records do not depend on how the input is batched: a live run reads a few hundred
events at a time, a replay thousands, and both must give the same records, reasons included."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from sidecar import PARTITIONS, pipeline_for_test, scenario_events

import detector.replay as replay_mod
from detector.records import encode


def _records(path, pipeline, chunk_lines: int, monkeypatch) -> list[dict]:
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    out: list[dict] = []
    replay_mod.replay([path], pipeline, lambda r: out.append(orjson.loads(encode(r))), partitions=PARTITIONS)
    return out


@pytest.fixture(scope="module")
def config_fault(tmp_path_factory):
    """The live ticket test's events and pipeline (tests/runtime/test_runtime_ticket.py)."""
    path = tmp_path_factory.mktemp("batching") / "events.jsonl"
    truth, _services, _sc = scenario_events("config_fault", path, rate_scale=0.5)
    base = pipeline_for_test("batching", truth["verification_s"])
    rules = tuple(dataclasses.replace(r, dry_run=True) if "rollback" in (r.action, r.critical_action) else r
                  for r in base.rules)
    # A 120 s hold keeps the ticket open until the generalised template's own rule holds (60 s later
    # than the config template's), so the reasons quote the line count that once depended on batching.
    verification = dataclasses.replace(base.verification, ticket_hold_s=120, ticket_hold="always")
    return path, dataclasses.replace(base, rules=rules, verification=verification)


@pytest.mark.parametrize("chunk_lines", [1000, 100])
def test_a_template_rule_quotes_the_same_line_count_whatever_the_batching(config_fault, chunk_lines, monkeypatch):
    """A new template generalised by later lines ("unhandled <*> while processing ...") was counted
    under its old id in the windows judged before the generalising lines arrived; how many windows
    that was depended on the batch size, and the ticket's reason said 12 lines or 11."""
    path, pipeline = config_fault
    want = _records(path, pipeline, replay_mod.CHUNK_LINES, monkeypatch)
    (verdict,) = [r for r in want if r["type"] == "verdict"]
    assert verdict["decision"] == "ticket"
    assert any('new log template (exception) "unhandled <*> while processing' in r for r in verdict["reasons"])
    assert _records(path, pipeline, chunk_lines, monkeypatch) == want
