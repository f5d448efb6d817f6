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


def test_a_second_input_holds_the_watermark_back_until_it_is_read(tmp_path, monkeypatch):
    """Requests in one file, deploys in another: the first file's chunk (all of it) closed every
    window before the deploys file was read, so the deploys came late and were judged from what
    history still held: the first one `inconclusive` with 0 requests to its version instead of
    `superseded` by the second, as the merged file (or smaller chunks) had it."""
    from detector.config import load_pipeline

    t0 = 1764140400.0
    reqs = [{"type": "request", "ts": t0 + i, "service": "a", "endpoint": "/", "status": 200, "latency_ms": 5,
             "version": "v1" if i < 1000 else ("v2" if i < 1300 else "v3")} for i in range(3600)]
    deploys = [{"type": "deploy", "ts": t0 + 1000, "service": "a", "deploy_id": "d1", "version": "v2"},
               {"type": "deploy", "ts": t0 + 1300, "service": "a", "deploy_id": "d2", "version": "v3"}]

    def write(name, events):
        path = tmp_path / name
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=lambda e: e["ts"])))
        return path

    def verdicts(paths, chunk_lines):
        monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
        out: list[dict] = []
        replay_mod.replay(paths, load_pipeline(), lambda r: out.append(orjson.loads(encode(r))))
        return [r for r in out if r["type"] == "verdict"]

    merged = verdicts([write("all.jsonl", reqs + deploys)], 8192)
    assert [(v["deploy_id"], v["decision"]) for v in merged][:1] == [("d1", "superseded")]
    assert merged[0]["detail"]["new_version_requests"] == 300
    two = [write("requests.jsonl", reqs), write("deploys.jsonl", deploys)]
    assert verdicts(two, 8192) == merged
    assert verdicts(two, 100) == merged


@pytest.mark.parametrize("chunk_lines", [8192, 50])
def test_a_deploy_before_any_traffic_is_judged_whatever_the_batching(tmp_path, monkeypatch, chunk_lines):
    """A deploy 500 s before the first request, in a first batch of 50 lines: the time guard took
    it for an event far older than the batch (10 times its spread) and dropped it as late, so the
    deploy never got a verdict; with the whole file in one batch it did."""
    from detector.config import load_pipeline

    t0 = 1764140400.0
    events = [{"type": "deploy", "ts": t0 - 500, "service": "a", "deploy_id": "d1", "version": "v2"}]
    events += [{"type": "request", "ts": t0 + i, "service": "a", "endpoint": "/", "status": 200, "latency_ms": 5,
                "version": "v2"} for i in range(2400)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    out: list[dict] = []
    res = replay_mod.replay([path], load_pipeline(), lambda r: out.append(orjson.loads(encode(r))))
    assert [(r["deploy_id"], r["decision"]) for r in out if r["type"] == "verdict"] == [("d1", "inconclusive")]
    assert res.late == 0


def test_what_an_inconclusive_verdict_could_have_seen_does_not_depend_on_the_batching(tmp_path, monkeypatch):
    """Endpoints the old version alone reached after the deploy: a batch holding them created their
    series before the deploy's first window was judged, so the endpoint count that splits the
    false-alarm budget (and with it 'a regression of +N points would have been seen') was 11 with
    the whole file in one batch and 3 with chunks of 100 lines."""
    from detector.config import load_pipeline

    t0 = 1764140400.0
    events = [{"type": "request", "ts": t0 + i * 5, "service": "a", "endpoint": f"/e{i % 3}", "status": 200,
               "latency_ms": 5 + i % 7, "version": "v1" if i * 5 < 900 else "v2"} for i in range(600)]
    events.append({"type": "deploy", "ts": t0 + 900, "service": "a", "deploy_id": "d1", "version": "v2"})
    events += [{"type": "request", "ts": t0 + 1500 + k, "service": "a", "endpoint": f"/old{k}", "status": 200,
                "latency_ms": 5, "version": "v1"} for k in range(8)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=lambda e: e["ts"])))
    got = []
    for chunk_lines in (8192, 100):
        monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
        out: list[dict] = []
        replay_mod.replay([path], load_pipeline(), lambda r: out.append(orjson.loads(encode(r))))
        (verdict,) = [r for r in out if r["type"] == "verdict"]
        got.append(verdict)
    assert got[0]["decision"] == "inconclusive"
    assert got[0]["detail"]["detectable"]["endpoints"][0]["error_points"] == 28.25  # 3 endpoints, not 11
    assert got[1] == got[0]
