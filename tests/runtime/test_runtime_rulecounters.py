"""`detector run` keeps tune's per-rule counters in /metrics, reading the incidents topic as it appears."""

from __future__ import annotations

import asyncio
import json
import re

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sidecar import SidecarProcess, pipeline_for_test, produce_scenario, scenario_events, write_pipeline

from detector.cli import main
from detector.simulate.incidents import incidents_from_truth

pytestmark = pytest.mark.kafka

_SAMPLE = re.compile(r'^(detector_rule_\w+)\{rule="([^"]+)"\} ([0-9.e+-]+)$')


def _rule_counters(det: SidecarProcess) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in det.http("/metrics")[1].splitlines():
        m = _SAMPLE.match(line)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def _as_tune(counters: dict[str, dict[str, float]]) -> dict[str, tuple[int, int]]:
    return {rule: (int(c["detector_rule_caught"]), int(c["detector_rule_false_alarms"]))
            for rule, c in counters.items()}


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"payments")
    finally:
        await producer.stop()


def test_rule_counters_follow_the_incidents_topic_and_agree_with_tune(tmp_path, kafka_bootstrap, topic_prefix):
    """Before the incident exists (and its topic with it) a firing rule counts as a false alarm; once the
    incident is published it counts as caught; the figures per rule are those of tune's rules.json."""
    truth, _, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    path = write_pipeline(tmp_path, pipeline)
    incidents = incidents_from_truth(truth)
    (tmp_path / "incidents.jsonl").write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in incidents))
    det = SidecarProcess(kafka_bootstrap, path, tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        assert set(_rule_counters(det)) == {r.name for r in pipeline.rules}   # every rule, at zero
        asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline, speed=400))
        det.wait_until("a rule fired", lambda: any(c["detector_rule_fired_deploys"] > 0
                                                   for c in _rule_counters(det).values()), 60)
        before = _rule_counters(det)
        assert all(c["detector_rule_caught"] == 0 for c in before.values())
        assert sum(c["detector_rule_false_alarms"] for c in before.values()) >= 1

        asyncio.run(_produce(kafka_bootstrap, pipeline.topics.incidents, [orjson.dumps(i) for i in incidents]))
        det.wait_until("the incident matched", lambda: any(c["detector_rule_caught"] > 0
                                                           for c in _rule_counters(det).values()), 60)
        after = _rule_counters(det)
        assert any(line.startswith('detector_incidents{matched="true"} 1.0')
                   for line in det.http("/metrics")[1].splitlines())
    finally:
        det.close()
    for rule, c in after.items():
        assert c["detector_rule_fired_deploys"] == before[rule]["detector_rule_fired_deploys"]
        assert c["detector_rule_caught"] + c["detector_rule_false_alarms"] == c["detector_rule_fired_deploys"]
        assert c["detector_rule_false_alarms"] == 0   # the one faulty deploy is the only one any rule fired on

    out = tmp_path / "tune"
    assert main(["tune", "--input", str(tmp_path / "events.jsonl"), "--incidents", str(tmp_path / "incidents.jsonl"),
                 "--out", str(out), "--pipeline", str(path), "--no-verify", "--quiet"]) == 0
    rules = json.loads((out / "rules.json").read_text())["rules"]
    assert _as_tune(after) == {r["name"]: (r["caught"], r["false_alarms"]) for r in rules}
