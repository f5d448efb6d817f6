"""Events make a keyed round trip through the broker, and a consumer group resumes where it committed.

Also pins down topic creation (``ensure_topics``), which every round trip
starts with. Group timings are kept short (2 s sessions) because the embedded
broker delays a group's first join by about half the session timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from detector.runtime.topics import (
    TopicSetupError,
    consumer_settings,
    ensure_topics,
    producer_settings,
    topic_configs,
)

PARTITIONS = 4
N_MESSAGES = 400
SERVICES = [f"svc-{i:02d}" for i in range(12)]
SEED = 20261126
SESSION_TIMEOUT_MS = 2_000
HEARTBEAT_INTERVAL_MS = 500
DEADLINE_S = 20.0


async def _read_exactly(consumer: AIOKafkaConsumer, count: int, deadline_s: float) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            records.extend(batch)
    assert len(records) == count, f"read {len(records)} of {count} records within {deadline_s} s"
    return records


async def _describe_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        )
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            found[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    return found


@pytest.mark.kafka
async def test_group_reads_every_keyed_message_and_resumes_at_committed_offsets(
    kafka_bootstrap: str, unique_topic
) -> None:
    """A group reads each produced message once, keyed messages stay on one partition in order, and
    after a commit a new member of the group starts exactly at the committed offsets with
    nothing left to read.
    """
    topic = unique_topic("requests")
    group = unique_topic("detector")
    assert await ensure_topics(kafka_bootstrap, {topic: PARTITIONS}) == {topic: PARTITIONS}

    rng = random.Random(SEED)
    sent = [(rng.choice(SERVICES), f"event-{i}") for i in range(N_MESSAGES)]
    producer = AIOKafkaProducer(**producer_settings(kafka_bootstrap))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=service.encode(), value=value.encode())
            for service, value in sent
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()

    partition_of: dict[str, int] = {}
    for (service, _), record_metadata in zip(sent, metadata):
        assert partition_of.setdefault(service, record_metadata.partition) == record_metadata.partition
    produced_per_partition = Counter(record_metadata.partition for record_metadata in metadata)
    # With these services every partition gets messages, so every partition has a commit to check.
    assert sorted(produced_per_partition) == list(range(PARTITIONS))
    expected_offsets = {TopicPartition(topic, p): n for p, n in produced_per_partition.items()}

    settings = consumer_settings(
        kafka_bootstrap,
        group,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    first = AIOKafkaConsumer(topic, **settings)
    await first.start()
    try:
        records = await _read_exactly(first, N_MESSAGES, DEADLINE_S)
        await first.commit()
        committed = {tp: await first.committed(tp) for tp in expected_offsets}
    finally:
        await first.stop()

    received = [(record.key.decode(), record.value.decode()) for record in records]
    assert Counter(received) == Counter(sent)
    assert all(record.partition == partition_of[record.key.decode()] for record in records)
    sent_order: dict[str, list[str]] = defaultdict(list)
    for service, value in sent:
        sent_order[service].append(value)
    read_order: dict[str, list[str]] = defaultdict(list)
    for service, value in received:
        read_order[service].append(value)
    assert read_order == sent_order
    offsets_read: dict[int, list[int]] = defaultdict(list)
    for record in records:
        offsets_read[record.partition].append(record.offset)
    assert {p: sorted(o) for p, o in offsets_read.items()} == {
        p: list(range(n)) for p, n in produced_per_partition.items()
    }
    assert committed == expected_offsets

    second = AIOKafkaConsumer(topic, **settings)
    await second.start()
    try:
        leftover: list[ConsumerRecord] = []
        deadline = time.monotonic() + DEADLINE_S
        # end_offsets()/seek_to_end() can be short on the embedded broker; the
        # high watermark from a fetch is exact, so fetch until all are known.
        while time.monotonic() < deadline and (
            second.assignment() != set(expected_offsets)
            or any(second.highwater(tp) is None for tp in expected_offsets)
        ):
            for batch in (await second.getmany(timeout_ms=500)).values():
                leftover.extend(batch)
        assert second.assignment() == set(expected_offsets)
        positions = {tp: await second.position(tp) for tp in expected_offsets}
        highwaters = {tp: second.highwater(tp) for tp in expected_offsets}
    finally:
        await second.stop()
    assert leftover == []
    assert positions == expected_offsets
    assert highwaters == expected_offsets


@pytest.mark.kafka
async def test_ensure_topics_sets_configs_and_tolerates_existing_topics(
    kafka_bootstrap: str, unique_topic
) -> None:
    """Topics are created with explicit configs (state compacted, others deleted by age), and
    ensuring them again changes nothing and raises nothing.
    """
    events, state = unique_topic("logs"), unique_topic("detector.state")
    counts = await ensure_topics(
        kafka_bootstrap,
        {events: 3, state: 2},
        configs={events: {"retention.ms": "3600000"}},
    )
    assert counts == {events: 3, state: 2}
    # Existing topics keep their layout; the caller sees the real counts.
    assert await ensure_topics(kafka_bootstrap, [events, state], partitions=5) == counts

    configs = await _describe_configs(kafka_bootstrap, [events, state])
    assert configs[state]["cleanup.policy"] == "compact"
    assert configs[events]["cleanup.policy"] == "delete"
    assert configs[events]["retention.ms"] == "3600000"


async def test_ensure_topics_reports_unreachable_broker() -> None:
    """An address with no broker fails with TopicSetupError naming the address, not a hang."""
    started = time.monotonic()
    with pytest.raises(TopicSetupError, match="127.0.0.1:1"):
        await ensure_topics("127.0.0.1:1", ["nowhere"], timeout_s=3)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("topics", "partitions", "configs", "message"),
    [
        (["ok"], 0, None, "partitions for topic 'ok' must be an int >= 1"),
        ({"ok": -2}, 1, None, "got -2"),
        (["bad name"], 1, None, "invalid Kafka topic name 'bad name'"),
        (["ok"], 1, {"other": {"retention.ms": "1"}}, "not being created"),
        (["ok"], 1, {"ok": {"retention.ms": 1}}, "must be a string"),
        ([], 1, None, "topics is empty"),
    ],
)
async def test_ensure_topics_rejects_bad_requests_before_contacting_a_broker(
    topics, partitions, configs, message
) -> None:
    """Bad names, partition counts and configs are refused locally (the embedded broker would
    accept 0 partitions).
    """
    with pytest.raises((ValueError, TypeError), match=message):
        await ensure_topics("127.0.0.1:1", topics, partitions, configs, timeout_s=1)


def test_state_topic_is_compacted_even_behind_a_prefix() -> None:
    """The state topic, bare or prefixed, is compacted; other topics are deleted by age."""
    assert topic_configs("detector.state") == {"cleanup.policy": "compact"}
    assert topic_configs("staging.detector.state") == {"cleanup.policy": "compact"}
    assert topic_configs("requests", retention_ms=1000) == {
        "cleanup.policy": "delete",
        "retention.ms": "1000",
    }
    assert topic_configs("mydetector.state")["cleanup.policy"] == "delete"


def test_client_settings_keep_idempotence_off_and_heartbeats_inside_the_session() -> None:
    """Idempotence is opt-in (the embedded broker rejects it), and a heartbeat too slow for the
    session is refused.
    """
    assert producer_settings("b:9092")["enable_idempotence"] is False
    assert producer_settings("b:9092", idempotence=True)["enable_idempotence"] is True
    assert consumer_settings("b:9092", "g")["enable_auto_commit"] is False
    with pytest.raises(ValueError, match="heartbeat_interval_ms=1000"):
        consumer_settings("b:9092", "g", session_timeout_ms=2000, heartbeat_interval_ms=1000)
