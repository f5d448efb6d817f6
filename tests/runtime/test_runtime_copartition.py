"""Co-partitioning that a producer breaks: librdkafka's default partitioner (CRC32) next to
aiokafka's murmur2 puts one service on two partitions; the sidecar says so in its log and /metrics.

The producer nobody here wrote is confluent-kafka (librdkafka), the client most non-JVM services use.
"""

from __future__ import annotations

import asyncio
import time
import zlib

import orjson
import pytest
from realparts import missing
from sidecar import PARTITIONS, SidecarProcess, pipeline_for_test, write_pipeline

from detector.ingest.partitioning import partition_of
from detector.runtime.copartition import CoPartitionWatch
from detector.runtime.topics import ensure_topics


def test_a_service_on_a_second_partition_is_reported_once_with_where_murmur2_puts_it():
    """The watch reports a service seen on two partition numbers once, naming the topics and murmur2's partition."""
    w = CoPartitionWatch()
    assert w.observe("requests", 2, ["payments", "orders"], partitions=4) == []
    assert w.observe("logs", 2, ["payments"], partitions=4) == []  # same partition, other topic: fine
    found = w.observe("logs", 0, ["payments"], partitions=4)
    assert [(f.service, f.seen) for f in found] == [("payments", (("logs", 0), ("logs", 2), ("requests", 2)))]
    assert found[0].murmur2_partition == partition_of("payments", 4)
    assert "partitioner=murmur2_random" in found[0].describe()
    assert w.observe("logs", 0, ["payments"], partitions=4) == []
    assert w.observe("metrics", 3, ["payments"], partitions=4) == []  # still one service, reported already
    assert w.split == ["payments"]


def test_a_service_off_murmur2s_partition_is_reported_once_per_topic():
    """One sidecar cannot see a split between two sidecars, but it can see a service off murmur2's partition."""
    import doctest

    import detector.runtime.copartition as module

    assert doctest.testmod(module).failed == 0
    w = CoPartitionWatch()
    home = partition_of("payments", 4)
    assert w.off_default("requests", home, ["payments"], partitions=4) == []
    away = (home + 1) % 4
    assert w.off_default("logs", away, ["payments"], partitions=4) == ["payments"]
    assert w.off_default("logs", away, ["payments"], partitions=4) == []
    assert w.off_default("metrics", away, ["payments"], partitions=4) == ["payments"]
    assert w.off_services == 1


def test_the_watch_remembers_a_bounded_number_of_services():
    """A flood of service names cannot grow the watch without bound; the excess is counted."""
    w = CoPartitionWatch(max_services=10)
    w.observe("requests", 0, [f"s{i}" for i in range(25)], partitions=4)
    assert w.untracked == 15
    assert w.observe("logs", 1, ["s3"], partitions=4)[0].service == "s3"


def _service_where_crc32_and_murmur2_differ(partitions: int) -> str:
    for i in range(1000):
        name = f"svc-{i}"
        if zlib.crc32(name.encode()) % partitions != partition_of(name, partitions):
            return name
    raise AssertionError("no such service name")


def _confluent_produce(bootstrap: str, topic: str, key: str, value: bytes, **conf) -> int:
    """Produce one keyed message with confluent-kafka; return the partition it landed on."""
    try:
        import confluent_kafka
    except ImportError:
        missing("confluent-kafka is not installed (pip install '.[test]')")
    landed: list = []
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, **conf})
    producer.produce(topic, value, key=key.encode(),
                     on_delivery=lambda err, msg: landed.append((err, msg.partition())))
    assert producer.flush(30) == 0, "confluent-kafka did not deliver within 30 s"
    err, partition = landed[0]
    assert err is None, err
    return partition


async def _aiokafka_produce(bootstrap: str, topic: str, key: str, value: bytes) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()
    return meta.partition


@pytest.mark.kafka
def test_confluent_kafka_defaults_to_another_partition_and_murmur2_random_fixes_it(kafka_bootstrap, unique_topic):
    """librdkafka's default partitioner and aiokafka's disagree for some keys; partitioner=murmur2_random agrees."""
    topic = unique_topic("keys")
    asyncio.run(ensure_topics(kafka_bootstrap, [topic], partitions=PARTITIONS))
    service = _service_where_crc32_and_murmur2_differ(PARTITIONS)
    java_like = asyncio.run(_aiokafka_produce(kafka_bootstrap, topic, service, b"x"))
    assert java_like == partition_of(service, PARTITIONS)
    assert _confluent_produce(kafka_bootstrap, topic, service, b"x") != java_like
    assert _confluent_produce(kafka_bootstrap, topic, service, b"x", partitioner="murmur2_random") == java_like


@pytest.mark.kafka
def test_a_service_split_by_a_confluent_kafka_producer_is_logged_and_exported(tmp_path, kafka_bootstrap,
                                                                              topic_prefix):
    """Requests from aiokafka and logs from confluent-kafka (defaults) for one service: the sidecar logs a
    warning naming the service and both topics, and /metrics exports the split service."""
    pipeline = pipeline_for_test(topic_prefix, 600.0)
    t = pipeline.topics
    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "d.log")
    try:
        det.wait_for_log("partition started cold", 30)
        service = _service_where_crc32_and_murmur2_differ(PARTITIONS)
        now = time.time()
        request = orjson.dumps({"type": "request", "ts": now, "service": service, "endpoint": "GET /",
                                "status": 200, "latency_ms": 12.0, "version": "v1"})
        log_line = orjson.dumps({"type": "log", "ts": now, "service": service, "level": "INFO",
                                 "message": "served in 12 ms", "version": "v1"})
        asyncio.run(_aiokafka_produce(kafka_bootstrap, t.requests, service, request))
        _confluent_produce(kafka_bootstrap, t.logs, service, log_line)
        warning = det.wait_for_log("service split across partitions", 30)
        assert warning["service"] == service
        assert warning["topics"] == sorted([t.requests, t.logs])
        assert warning["murmur2_partition"] == partition_of(service, PARTITIONS)
        assert "partitioner=murmur2_random" in warning["detail"]
        det.wait_until("split exported", lambda: det.metric("detector_services_split_across_partitions") == 1, 10)
        assert det.metric("detector_services_off_default_partition") == 1
        off = det.wait_for_log("service off the default partition", 10)
        assert (off["service"], off["topic"]) == (service, t.logs)
        assert f'detector_service_split_across_partitions{{service="{service}"}} 1.0' in det.http("/metrics")[1]
    finally:
        det.close()
