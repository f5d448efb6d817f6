"""Delivery after a lost acknowledgement: a record the broker stored without answering
(a frozen broker resuming) is not produced again; one it never got is."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from sidecar import PARTITIONS, pipeline_for_test, read_topic

from detector.runtime.app import Sidecar
from detector.runtime.readback import record_id
from detector.runtime.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _failed_future() -> asyncio.Future:
    f = asyncio.get_running_loop().create_future()
    f.set_exception(KafkaTimeoutError())
    return f


async def test_a_stored_but_unacknowledged_record_is_not_produced_again(kafka_bootstrap, topic_prefix):
    """Two alerts records whose acks failed: the one already on its partition is skipped, the other resent;
    each id ends up exactly once on the topic."""
    pipeline = pipeline_for_test(topic_prefix, 600.0)
    alerts = pipeline.topics.alerts
    sidecar = Sidecar(pipeline, kafka_bootstrap, http_port=-1)
    sidecar.out.topic_partitions = await ensure_topics(kafka_bootstrap, {alerts: PARTITIONS}, PARTITIONS)
    await sidecar.out.start()
    try:
        await sidecar.out.send(alerts, b'{"id":"a-first","type":"anomaly"}', b"payments", None)
        await sidecar.out.drain()  # acknowledged: the read-back on this partition starts after it
        stored = b'{"id":"v-stored","type":"verdict"}'
        lost = b'{"id":"v-lost","type":"verdict"}'
        other = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
        await other.start()
        try:  # the broker has it, the sidecar never heard back
            await other.send_and_wait(alerts, stored, key=b"payments")
        finally:
            await other.stop()
        sidecar.out.unacked = [(_failed_future(), (alerts, stored, b"payments", None)),
                            (_failed_future(), (alerts, lost, b"orders", None))]
        await sidecar.out.drain()
        assert sidecar.out.unacked == []
    finally:
        await sidecar.out.producer.stop()
    msgs = await read_topic(kafka_bootstrap, alerts,
                            lambda m: {"v-stored", "v-lost"} <= {record_id(x.value) for x in m}, 30, settle_s=1.0)
    assert Counter(orjson.loads(m.value)["id"] for m in msgs) == {"a-first": 1, "v-stored": 1, "v-lost": 1}
