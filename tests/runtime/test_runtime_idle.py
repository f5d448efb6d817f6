"""A silent input topic stops holding the watermark back after `kafka.source_idle_s`.

The log shipper dies part-way through: requests go on, logs stop. Without the
idle rule the partition's watermark would stay where the logs stopped and the
verdict that comes later in event time would never be emitted.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from sidecar import (PARTITIONS, SidecarProcess, pipeline_for_test, read_topic, scenario_events, verdicts,
                     write_pipeline)

from detector.ingest.partitioning import partition_of
from detector.records import Verdict, encode
from detector.replay import replay
from detector.runtime.topics import ensure_topics

pytestmark = pytest.mark.kafka


def test_a_topic_that_goes_silent_stops_holding_the_watermark(tmp_path, kafka_bootstrap, topic_prefix):
    from aiokafka import AIOKafkaProducer

    truth, _services, _sc = scenario_events("config_fault", tmp_path / "all.jsonl", rate_scale=0.5)
    base = pipeline_for_test(topic_prefix, truth["verification_s"])
    pipeline = dataclasses.replace(base, kafka=dataclasses.replace(base.kafka, source_idle_s=2.0))

    full: dict[str, dict] = {}
    replay([tmp_path / "all.jsonl"], pipeline,
           lambda r: full.setdefault(r.id, orjson.loads(encode(r))) if isinstance(r, Verdict) else None,
           partitions=PARTITIONS)
    assert full
    cut = min(v["ts"] for v in full.values()) - 300  # logs stop five minutes before the first verdict
    lines = [ln for ln in (tmp_path / "all.jsonl").read_bytes().splitlines()
             if not (b'"type":"log"' in ln and orjson.loads(ln)["ts"] > cut)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    expected: dict[str, dict] = {}
    replay([tmp_path / "events.jsonl"], pipeline,
           lambda r: expected.setdefault(r.id, orjson.loads(encode(r))) if isinstance(r, Verdict) else None,
           partitions=PARTITIONS)
    assert expected

    t = pipeline.topics
    topic_of = {"request": t.requests, "log": t.logs, "metric": t.metrics, "deploy": t.deploys}

    async def produce():
        await ensure_topics(kafka_bootstrap, sorted(set(topic_of.values())), partitions=PARTITIONS)
        prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, linger_ms=20)
        await prod.start()
        try:
            futures = []
            for ln in lines:
                d = orjson.loads(ln)
                futures.append(await prod.send(topic_of[d["type"]], ln, key=d["service"].encode(),
                                               partition=partition_of(d["service"], PARTITIONS)))
            await asyncio.gather(*futures)
        finally:
            await prod.stop()

    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        asyncio.run(produce())
        alerts = asyncio.run(read_topic(kafka_bootstrap, t.alerts, lambda m: set(verdicts(m)) >= set(expected), 120))
        assert {k: v[0] for k, v in verdicts(alerts).items()} == expected
    finally:
        det.close()
