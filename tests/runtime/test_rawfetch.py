"""The sidecar's consumer hands out fetched records without a ConsumerRecord each (runtime/rawfetch.py):
the same offsets, keys and values as a plain consumer, and nothing changed when aiokafka differs."""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord
from sidecar import pipeline_for_test

from detector.runtime import rawfetch
from detector.runtime.app import Sidecar
from detector.runtime.topics import ensure_topics


def test_probe_passes_on_the_installed_aiokafka() -> None:
    assert rawfetch.probe() is None


def test_install_changes_nothing_when_records_are_built_elsewhere(monkeypatch) -> None:
    # an aiokafka whose PartitionRecords builds ConsumerRecords without _consumer_record
    def unpack(self):
        for batch in iter(self._records.next_batch, None):
            for r in batch:
                self.next_fetch_offset = r.offset + 1
                yield ConsumerRecord(self._tp.topic, self._tp.partition, r.offset, r.timestamp, r.timestamp_type,
                                     r.key, r.value, None, 0, 0, ())

    monkeypatch.setattr(fetcher.PartitionRecords, "_unpack_records", unpack)
    records = collections.OrderedDict()
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_records=records))
    why = rawfetch.install(consumer)
    assert why is not None and "_consumer_record" in why
    assert consumer._fetcher._records is records


def test_install_changes_nothing_when_the_fetcher_keeps_records_otherwise() -> None:
    records: dict = {}
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_records=records))
    assert "OrderedDict" in rawfetch.install(consumer)
    assert consumer._fetcher._records is records
    assert "OrderedDict" in rawfetch.install(SimpleNamespace())


def _batch(base: int, n: int, producer_id: int = -1, control: bytes | None = None) -> bytes:
    """A v2 record batch of `n` records from offset `base` (transactional with a producer id; a
    control batch holding one marker with `control`, its key)."""
    builder = DefaultRecordBatchBuilder(2, 0, int(producer_id >= 0), producer_id, 0 if producer_id >= 0 else -1,
                                        -1, 1 << 16)
    for i in range(n):
        builder.append(i, 1_700_000_000_000, control if control else f"k{base + i}".encode(),
                       b"" if control else f"v{base + i}".encode(), [])
    data = builder.build()
    data[0:8] = base.to_bytes(8, "big")
    if control:
        data[22] |= 0x20  # attributes, low byte: the control bit (the CRC is not checked here)
    return bytes(data)


ABORT = (0).to_bytes(2, "big") + (0).to_bytes(2, "big")  # control record key: version 0, type 0 (abort)


@pytest.mark.parametrize("isolation", [fetcher.READ_UNCOMMITTED, fetcher.READ_COMMITTED])
def test_transactions_and_control_batches_as_aiokafka_reads_them(isolation: int) -> None:
    """An aborted transaction, its abort marker, then plain records, read from offset 1: the records
    and the next fetch offset are those of aiokafka's own reading, with or without the hook."""
    buf = _batch(0, 2, producer_id=7) + _batch(2, 1, producer_id=7, control=ABORT) + _batch(3, 3)
    tp = TopicPartition("t", 0)

    def read(hooked: bool) -> tuple[list, int]:
        records = fetcher.PartitionRecords(tp, MemoryRecords(buf), [(7, 0)], 1, None, None, False, isolation)
        results = rawfetch._RawResults() if hooked else collections.OrderedDict()
        results[tp] = fetcher.FetchResult(tp, assignment=None, partition_records=records, backoff=0)
        return [(r.offset, r.key, r.value) for r in records], records.next_fetch_offset

    want, got = read(False), read(True)
    assert got == want
    offsets = [o for o, _, _ in got[0]]
    assert offsets == ([3, 4, 5] if isolation == fetcher.READ_COMMITTED else [1, 3, 4, 5]) and got[1] == 6


async def _read(bootstrap: str, tp: TopicPartition, start: int, end: int, raw: bool) -> tuple[list, list]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if raw:
            assert rawfetch.install(consumer) is None
        consumer.assign([tp])
        consumer.seek(tp, start)
        got, positions = [], []
        deadline = time.monotonic() + 20
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(tp, timeout_ms=300, max_records=7)).values():
                got.extend(msgs)
                positions.append(await consumer.position(tp))
        return got, positions
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_same_records_as_a_plain_consumer(kafka_bootstrap: str, unique_topic) -> None:
    """Compressed batches read from an offset inside one, tombstones, keys: the records, in order,
    and the positions are the plain consumer's."""
    topic = unique_topic("rawfetch")
    await ensure_topics(kafka_bootstrap, {topic: 1})
    tp = TopicPartition(topic, 0)
    sent = []
    gz = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type="gzip", linger_ms=50)
    await gz.start()
    try:
        # tombstones (every fifth) are keyed; other messages every third without a key
        futures = [await gz.send(topic, key=None if i % 3 == 0 and i % 5 != 4 else f"k{i}".encode(),
                                 value=None if i % 5 == 4 else f'{{"i": {i}}}'.encode()) for i in range(40)]
        for f in futures:
            sent.append((await f).offset)
    finally:
        await gz.stop()
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await plain.start()
    try:
        last = await plain.send_and_wait(topic, b'{"last": true}', key=b"z")
    finally:
        await plain.stop()
    assert len(set(sent)) == 40

    want, want_pos = await _read(kafka_bootstrap, tp, 3, last.offset + 1, raw=False)
    got, got_pos = await _read(kafka_bootstrap, tp, 3, last.offset + 1, raw=True)

    assert all(isinstance(m, ConsumerRecord) for m in want)
    assert not any(isinstance(m, ConsumerRecord) for m in got)  # the hook is on
    assert [(m.offset, m.key, m.value) for m in got] == [(m.offset, m.key, m.value) for m in want]
    assert got_pos == want_pos
    values = [m.value for m in got]
    assert got[0].offset == 3 and None in values and values[-1] == b'{"last": true}'
    assert len(got) == last.offset + 1 - 3


@pytest.mark.kafka
async def test_the_sidecar_reads_through_the_hook_with_its_start_up_objects_frozen(kafka_bootstrap, topic_prefix):
    """While `detector run` runs, its consumer hands out records as fetched and what existed at its start
    is out of the collector's full passes; after the run, nothing stays frozen."""
    sidecar = Sidecar(pipeline_for_test(topic_prefix, 600.0), kafka_bootstrap, http_port=-1)
    task = asyncio.create_task(sidecar.run())
    try:
        deadline = time.monotonic() + 30
        while not (sidecar.started and gc.get_freeze_count()) and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.05)
        assert type(sidecar.consumer._fetcher._records) is rawfetch._RawResults
        assert gc.get_freeze_count() > 0
    finally:
        sidecar.stopping.set()
        assert await asyncio.wait_for(task, 60) == 0
    assert gc.get_freeze_count() == 0
