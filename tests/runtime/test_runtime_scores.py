"""Live scores topic: `[metrics] scores_topic` publishes the rows `detector replay --scores` writes."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import orjson
import pytest
from sidecar import PARTITIONS, SidecarProcess, pipeline_for_test, read_topic, write_pipeline

from detector.config import ConfigError, parse_pipeline
from detector.ingest.partitioning import partition_of
from detector.replay import replay
from detector.runtime.topics import ensure_topics

pytestmark = pytest.mark.kafka

SERVICES = ("checkout", "search", "payments")
N = 120  # samples per series, one per 10 s window
T0 = 1_790_000_000.0  # in the past: events ahead of the wall clock go to the dead letters


def _events() -> list[bytes]:
    rng = np.random.default_rng(7)
    lines = []
    for k in range(N):
        for j, service in enumerate(SERVICES):
            v = 50.0 + 10 * j + rng.normal(0, 1.0) + (40.0 if service == "search" and k == 90 else 0.0)
            lines.append(orjson.dumps({"type": "metric", "ts": T0 + 10 * k + 1, "service": service,
                                       "name": "db_latency_ms", "value": round(v, 3)}))
    return lines


def _key(row: dict) -> tuple:
    return row["window_start"], row["service"], row["metric"], row["labels"]


def test_live_score_rows_equal_replay_rows(tmp_path, kafka_bootstrap, topic_prefix):
    from aiokafka import AIOKafkaProducer

    base = pipeline_for_test(topic_prefix, 1800.0)
    pipeline = dataclasses.replace(base, kafka=dataclasses.replace(base.kafka, source_idle_s=2.0),
                                   metrics=dataclasses.replace(base.metrics, scores_topic=f"{topic_prefix}.scores"))
    lines = _events()
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    expected: list[dict] = []
    replay([tmp_path / "events.jsonl"], pipeline, lambda r: None, partitions=PARTITIONS, scores=expected.append)
    expected = [orjson.loads(orjson.dumps(r)) for r in expected]
    assert any(r["anomaly"] for r in expected if r["service"] == "search")  # the spike is scored high
    # live, a window closes once the watermark (newest event - lateness) passes it: the last one stays open
    watermark = T0 + 10 * (N - 1) + 1 - pipeline.windows.lateness_s
    closable = {_key(r): r for r in expected if r["window_end"] <= watermark}
    assert len(closable) == len(SERVICES) * (N - 2)

    async def produce():
        await ensure_topics(kafka_bootstrap, [pipeline.topics.metrics], partitions=PARTITIONS)
        prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, linger_ms=20)
        await prod.start()
        try:
            futures = []
            for ln in lines:
                service = orjson.loads(ln)["service"]
                futures.append(await prod.send(pipeline.topics.metrics, ln, key=service.encode(),
                                               partition=partition_of(service, PARTITIONS)))
            await asyncio.gather(*futures)
        finally:
            await prod.stop()

    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        asyncio.run(produce())
        msgs = asyncio.run(read_topic(kafka_bootstrap, pipeline.metrics.scores_topic,
                                      lambda m: len(m) >= len(closable), 120, settle_s=1.0))
    finally:
        det.close()
    live = [orjson.loads(m.value) for m in msgs]
    assert all(m.key.decode() == row["service"] for m, row in zip(msgs, live))
    assert {_key(r): r for r in live} == closable
    assert len(live) == len(closable)  # no duplicates without a restart


def test_scores_topic_must_be_a_topic_of_its_own():
    assert parse_pipeline("").metrics.scores_topic == ""  # off by default
    with pytest.raises(ConfigError, match="metrics.scores_topic must be a topic of its own"):
        parse_pipeline('[metrics]\nscores_topic = "alerts"\n', "p.toml")
    with pytest.raises(ConfigError, match="p.toml: metrics.scores_topic must be a topic name without spaces"):
        parse_pipeline('[metrics]\nscores_topic = "my scores"\n', "p.toml")
