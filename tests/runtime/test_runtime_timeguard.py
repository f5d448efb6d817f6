"""`detector run` with misdated events: the year 3000 goes to the dead letters, 1970 is late, verdicts stand."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sidecar import (PARTITIONS, SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events,
                     verdicts, write_pipeline)

from detector.records import encode
from detector.replay import replay

pytestmark = pytest.mark.kafka


def test_a_live_run_refuses_a_year_3000_event_and_keeps_every_verdict(tmp_path, kafka_bootstrap, topic_prefix):
    from aiokafka import AIOKafkaProducer

    truth, _services, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        t = pipeline.topics
        first = orjson.loads((tmp_path / "events.jsonl").read_bytes().splitlines()[0])
        future = orjson.dumps({**first, "ts": 32503680000})
        past = orjson.dumps({**first, "ts": 1})

        async def send():
            prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
            await prod.start()
            try:
                topic = {"request": t.requests, "log": t.logs, "metric": t.metrics, "deploy": t.deploys}[first["type"]]
                for v in (future, past):
                    await prod.send_and_wait(topic, v, key=first["service"].encode())
            finally:
                await prod.stop()
            await produce_scenario(sc, kafka_bootstrap, pipeline)

        asyncio.run(send())
        expected: dict[str, dict] = {}

        def emit(rec):
            d = orjson.loads(encode(rec))
            if d["type"] == "verdict":
                expected[d["id"]] = d

        replay([tmp_path / "events.jsonl"], pipeline, emit, partitions=PARTITIONS)
        assert expected
        dlq = asyncio.run(read_topic(kafka_bootstrap, t.dlq, lambda m: len(m) >= 1, 60))
        assert [m.value for m in dlq] == [future]
        assert "ahead of the" in dict(dlq[0].headers)["error"].decode()
        alerts = asyncio.run(read_topic(kafka_bootstrap, t.alerts, lambda m: set(verdicts(m)) >= set(expected), 120))
        live = verdicts(alerts)
        assert {k: v[0] for k, v in live.items()} == expected
    finally:
        det.close()
