"""Checkpoints: a partition's core state with the input offsets it reflects.

One record per checkpoint on the compacted state topic, keyed
"<group>/<partition>" and written to state partition `p % n`, so the newest
record per key is the partition's state. Value layout: 4-byte big-endian
header length, an orjson header (format, version, group, partition, offsets
per input topic = next offset to read), then the core snapshot bytes.
Restoring never executes anything from the topic: the header is JSON and the
snapshot has its own non-pickle codec.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

FORMAT = "detector.checkpoint"
VERSION = 1
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024

log = structlog.get_logger("detector.checkpoints")


class CheckpointError(ValueError):
    """A checkpoint record cannot be read; the message says which and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    partition: int
    offsets: dict[str, int]
    state: bytes
    wall_ts: float


def encode_checkpoint(group: str, partition: int, offsets: dict[str, int], state: bytes) -> bytes:
    header = orjson.dumps({"format": FORMAT, "version": VERSION, "group": group, "partition": partition,
                           "offsets": offsets, "wall_ts": time.time()}, option=orjson.OPT_SORT_KEYS)
    return struct.pack(">I", len(header)) + header + state


def decode_checkpoint(value: bytes, where: str) -> Checkpoint:
    if len(value) < 4:
        raise CheckpointError(f"{where}: checkpoint of {len(value)} bytes is truncated; delete it to start cold")
    (n,) = struct.unpack(">I", value[:4])
    try:
        header = orjson.loads(value[4:4 + n])
    except orjson.JSONDecodeError as e:
        raise CheckpointError(f"{where}: checkpoint header is not JSON ({e}); delete it to start cold") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(f"{where}: not a {FORMAT} v{VERSION} record; delete it to start cold")
    offsets = header.get("offsets")
    if not isinstance(offsets, dict) or not all(isinstance(v, int) for v in offsets.values()):
        raise CheckpointError(f"{where}: checkpoint offsets are malformed; delete it to start cold")
    return Checkpoint(int(header["partition"]), {str(k): int(v) for k, v in offsets.items()}, value[4 + n:],
                      float(header.get("wall_ts", 0.0)))


def checkpoint_key(group: str, partition: int) -> bytes:
    return f"{group}/{partition}".encode()


async def save_checkpoint(producer: AIOKafkaProducer, topic: str, state_partitions: int, group: str,
                          partition: int, offsets: dict[str, int], state: bytes, timeout_s: float) -> int:
    """Write one checkpoint and wait for the broker's acknowledgement; returns its size."""
    value = encode_checkpoint(group, partition, offsets, state)
    await asyncio.wait_for(
        producer.send_and_wait(topic, value, key=checkpoint_key(group, partition),
                               partition=partition % state_partitions), timeout_s)
    return len(value)


async def load_checkpoints(client_kwargs: dict, topic: str, state_partitions: int, group: str,
                           partitions: list[int], timeout_s: float) -> dict[int, Checkpoint]:
    """Newest checkpoint per wanted partition, read from the beginning of the state topic.

    The end of each state partition is the high watermark reported by a fetch
    (exact), not a ListOffsets answer (which some brokers give short).
    """
    if not partitions:
        return {}
    wanted = {checkpoint_key(group, p): p for p in partitions}
    tps = sorted({TopicPartition(topic, p % state_partitions) for p in partitions})
    consumer = AIOKafkaConsumer(**client_kwargs,
                                group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=MAX_CHECKPOINT_BYTES, fetch_max_bytes=MAX_CHECKPOINT_BYTES)
    found: dict[int, Checkpoint] = {}
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            if time.monotonic() > deadline:
                raise CheckpointError(f"reading {topic} took longer than {timeout_s:g} s; raise kafka.op_timeout_s")
            batch = await consumer.getmany(*[tp for tp in tps if tp not in done], timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    p = wanted.get(m.key or b"")
                    if p is None:
                        continue
                    if m.value is None:  # tombstone
                        found.pop(p, None)
                        continue
                    found[p] = decode_checkpoint(m.value, f"{topic}[{tp.partition}]@{m.offset}")
            for tp in tps:
                if tp in done or consumer.last_poll_timestamp(tp) is None:
                    continue
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    done.add(tp)
    finally:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    return found
