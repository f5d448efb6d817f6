"""Which records a topic already holds: the check before producing unacknowledged records again.

A producer without idempotence (the embedded broker refuses it) cannot tell
"the broker never got it" from "the broker stored it and the answer was lost":
a broker that freezes with a produce request in its socket buffer stores the
records when it resumes, long after the client gave up waiting. Producing
them again would emit a verdict twice. Alerts records carry deterministic
ids, so before a resend the sidecar reads the target partitions from the
last acknowledged offset and resends only the ids that are not there.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

#: Without an acknowledged offset to start from, read this many records back from the end.
TAIL_RECORDS = 10_000


def record_id(value: bytes) -> str | None:
    """The `id` of an alerts record (anomaly, verdict, root_cause, action), None for anything else."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    rid = doc.get("id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) else None


async def ids_in(client_kwargs: dict, starts: dict[TopicPartition, int | None], timeout_s: float) -> set[str]:
    """Record ids on each partition from its start offset (None: the last TAIL_RECORDS) to its end.

    The end is the high watermark a fetch reports (exact), not ListOffsets
    (which some brokers answer short).
    """
    consumer = AIOKafkaConsumer(**client_kwargs, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await asyncio.wait_for(consumer.start(), timeout_s)
    found: set[str] = set()
    try:
        tps = sorted(starts)
        consumer.assign(tps)
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout_s)
        for tp in tps:
            start = starts[tp]
            consumer.seek(tp, start if start is not None else max(0, ends[tp] - TAIL_RECORDS))
        deadline = time.monotonic() + timeout_s
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"reading back {tps} took longer than {timeout_s:g} s")
            batch = await consumer.getmany(*[tp for tp in tps if tp not in done], timeout_ms=300)
            for msgs in batch.values():
                for m in msgs:
                    rid = record_id(m.value) if m.value is not None else None
                    if rid is not None:
                        found.add(rid)
            for tp in tps:
                if tp in done or consumer.last_poll_timestamp(tp) is None:
                    continue
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    done.add(tp)
    finally:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    return found
