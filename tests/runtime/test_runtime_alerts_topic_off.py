"""`sinks.alerts_topic = false`: `detector run` produces nothing to the alerts topic, the webhook still gets
every verdict, and checkpoints still happen (after the sink has attempted the records they cover)."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from recorder import recording_server
from sidecar import SidecarProcess, pipeline_for_test, produce_scenario, scenario_events, write_pipeline

from detector.records import encode
from detector.replay import replay

pytestmark = pytest.mark.kafka

SCENARIO = "config_fault"  # two services, one bad deploy; verdict well before the stream ends
RATE = 0.5


@pytest.fixture
def webhook():
    """A webhook receiver: the JSON bodies it was posted, in arrival order."""
    with recording_server() as rec:
        yield rec.url + "/hook", rec


async def _alerts_topic_messages(bootstrap: str, topic: str) -> int | None:
    """Messages on `topic` (None when it does not exist), read without creating it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return None
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        return sum([await consumer.position(tp) for tp in tps])
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def test_with_the_alerts_topic_off_records_reach_only_the_other_sinks(tmp_path, kafka_bootstrap, topic_prefix,
                                                                      webhook):
    """The config_fault scenario through a sidecar with sinks.alerts_topic = false and a webhook: the webhook
    receives exactly replay's verdicts (the rollback included), the alerts topic is never written (not even
    created), and the sidecar checkpoints and stops cleanly."""
    url, receiver = webhook
    truth, _services, sc = scenario_events(SCENARIO, tmp_path / "events.jsonl", rate_scale=RATE)
    base = pipeline_for_test(topic_prefix, truth["verification_s"])
    pipeline = dataclasses.replace(base, sinks=dataclasses.replace(base.sinks, alerts_topic=False, webhook_url=url))
    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline))
        expected = {}

        def emit(rec):
            d = orjson.loads(encode(rec))
            if d["type"] == "verdict":
                expected[d["id"]] = d

        replay([tmp_path / "events.jsonl"], pipeline, emit, partitions=4)
        assert any(v["decision"] == "rollback" for v in expected.values())

        def triggered() -> dict[str, dict]:
            return {b["record"]["id"]: b["record"] for b in receiver.bodies() if b["event_action"] == "trigger"}

        det.wait_until("every verdict at the webhook", lambda: set(triggered()) >= set(expected), 120)
        assert triggered() == expected
        det.wait_until("a checkpoint", lambda: det.metric("detector_checkpoints_total") > 0, 30)
        assert det.metric("detector_records_out_total") == 0
        code, _took = det.terminate(15)
        assert code == 0
        stopped = next(r for r in det.log_lines() if r.get("event") == "stopped")
        assert stopped["final_checkpoint"] == "written" and stopped["verdicts"] == len(expected)
    finally:
        det.close()
    assert asyncio.run(_alerts_topic_messages(kafka_bootstrap, pipeline.topics.alerts)) is None
