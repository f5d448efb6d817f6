"""`detector run` on a real broker: an early ticket and its escalation, as replay gives them.

`config_fault` with the rollback rules in dry-run mode: the new log template's
ticket goes out `verification.ticket_hold_s` after its rule holds, and the
page rule holding later sends one escalation anomaly. The hold and the watch
are driven by event time only, so the live run emits the same two records as
the replay, each once, at the same event time.

Compared whole, reasons and root cause included: they quote log templates
with their line counts, and a template's text (so its id) is mined from the
lines of the windows closed so far, never from lines read ahead of them (see
detector/logs/pending.py), so the live run's small batches and the replay's
large chunks count the same lines under the same template.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from sidecar import PARTITIONS, SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events, \
    write_pipeline

from detector.records import encode
from detector.replay import replay

pytestmark = pytest.mark.kafka


def _decisive(messages) -> list[dict]:
    recs = [orjson.loads(m.value) if hasattr(m, "value") else m for m in messages]
    return [r for r in recs if r["type"] == "verdict" or (r["type"] == "anomaly" and "escalates" in r["detail"])]


def _comparable(rec: dict) -> dict:
    if rec["type"] != "verdict":
        return rec
    return {**rec, "anomalies": sorted(rec["anomalies"])}


def test_live_run_sends_the_early_ticket_and_its_escalation_as_replay_does(tmp_path, kafka_bootstrap, topic_prefix):
    """The ticket verdict and the one anomaly escalating it arrive live exactly as replay writes them."""
    truth, _services, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    base = pipeline_for_test(topic_prefix, truth["verification_s"])
    rules = tuple(dataclasses.replace(r, dry_run=True) if "rollback" in (r.action, r.critical_action) else r
                  for r in base.rules)
    pipeline = dataclasses.replace(base, rules=rules)
    want: list[dict] = []
    replay([tmp_path / "events.jsonl"], pipeline, lambda r: want.append(orjson.loads(encode(r))),
           partitions=PARTITIONS)
    want = _decisive(want)
    assert [r["type"] for r in want] == ["verdict", "anomaly"] and want[0]["decision"] == "ticket"
    assert want[1]["detail"]["escalates"] == want[0]["id"]

    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline, speed=200))
        msgs = asyncio.run(read_topic(kafka_bootstrap, pipeline.topics.alerts,
                                      lambda m: len(_decisive(m)) >= len(want), 120, settle_s=2.0))
    finally:
        det.close()
    got = [_comparable(r) for r in _decisive(msgs)]
    assert got == [_comparable(r) for r in want]
    assert got[1]["detail"]["escalates"] == "v-d-cfg-1" and got[1]["severity"] == "critical"
