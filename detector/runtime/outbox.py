"""What the sidecar produces to Kafka, held until the broker acknowledged it.

Every record the sidecar writes (alerts, dead letters, score rows, fleet
summaries) goes through `Outbox.send`, which keeps its delivery future.
`drain` waits for all of them: a checkpoint drains first, so the offsets it
commits never pass a record that is not stored. A record whose
acknowledgement failed stays here (without a future) until it is produced
again, so an interrupted drain loses nothing. Before producing alerts records
again the partition is read back (see readback): a frozen broker that
resumes may have stored them without answering.

Broker calls go through the sidecar's `retry` and `until_stop`, so a stop
request interrupts a wait here as it does everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from detector.ingest.partitioning import partition_of
from detector.runtime.readback import ids_in, record_id

Message = tuple[str, bytes, bytes | None, Any]  # topic, value, key, headers

DRAIN_AT_RECORDS = 5_000  # unacknowledged records that make `send` wait for acknowledgements first


class Outbox:
    def __init__(self, *, new_producer: Callable[[], AIOKafkaProducer], retry: Callable[..., Awaitable[Any]],
                 until_stop: Callable[..., Awaitable[Any]], client_kwargs: Callable[[], dict], alerts_topic: str,
                 op_timeout_s: float, broker_errors: Any, log: Any) -> None:
        self._new_producer = new_producer
        self._retry = retry
        self._until_stop = until_stop
        self._client_kwargs = client_kwargs
        self.alerts_topic = alerts_topic
        self.op_timeout_s = op_timeout_s
        self._broker_errors = broker_errors  # Counter labelled by operation
        self.log = log
        self.producer: AIOKafkaProducer | None = None
        self.unacked: list[tuple[asyncio.Future | None, Message]] = []
        self.topic_partitions: dict[str, int] = {}  # partition count per topic, for the read-back
        self.acked_end: dict[TopicPartition, int] = {}  # next offset after our last acknowledged record

    async def start(self, give_up_at: float | None = None) -> None:
        self.producer = self._new_producer()
        await self._retry("producer start", self.producer.start, give_up_at=give_up_at)

    async def send(self, topic: str, value: bytes, key: bytes | None, headers) -> None:
        msg = (topic, value, key, headers)
        fut = await self._retry("produce", self._send_once, msg)
        self.unacked.append((fut, msg))
        if len(self.unacked) >= DRAIN_AT_RECORDS:
            await self.drain()

    async def _send_once(self, msg: Message):
        topic, value, key, headers = msg
        return await self.producer.send(topic, value, key=key, headers=headers)

    async def drain(self) -> None:
        """Wait until every record produced so far is acknowledged; resend the failed ones that
        did not land. Failed records stay in `unacked` (without a future) until they are
        produced again, so an interrupted drain loses nothing and no checkpoint passes them."""
        while self.unacked:
            pending = self.unacked
            # shield: a stop request cancels the wait, not the records' delivery futures
            done = await self._until_stop(lambda: asyncio.gather(
                *(asyncio.wait_for(asyncio.shield(f), self.op_timeout_s) if f is not None else _no_future()
                  for f, _ in pending), return_exceptions=True), "produce ack")
            failed = []
            for (_, msg), res in zip(pending, done):
                if isinstance(res, BaseException):
                    failed.append(msg)
                else:  # RecordMetadata: reading back after an outage starts after it
                    tp = TopicPartition(res.topic, res.partition)
                    self.acked_end[tp] = max(self.acked_end.get(tp, 0), res.offset + 1)
            self.unacked = [(None, msg) for msg in failed]
            if not failed:
                return
            self._broker_errors.labels("produce ack").inc(len(failed))
            await self._recreate_producer()
            missing = await self._not_landed(failed)
            self.log.warning("records not acknowledged, producing them again", count=len(missing),
                             already_stored=len(failed) - len(missing))
            self.unacked = [(None, msg) for msg in missing]
            for i, msg in enumerate(missing):
                self.unacked[i] = (await self._retry("produce", self._send_once, msg), msg)

    async def _not_landed(self, msgs: list[Message]) -> list[Message]:
        """The alerts records among `msgs` that their partition does not hold yet (see readback)."""
        alerts = self.alerts_topic
        n = self.topic_partitions.get(alerts)
        ident = {id(m): (record_id(m[1]) if m[0] == alerts and m[2] else None) for m in msgs}
        if n is None or not any(ident.values()):
            return msgs
        starts = {}
        for m in msgs:
            if ident[id(m)] is not None:
                tp = TopicPartition(alerts, partition_of(m[2].decode("utf-8", "replace"), n))
                starts[tp] = self.acked_end.get(tp)
        stored = await self._retry("read back", ids_in, self._client_kwargs(), starts, self.op_timeout_s)
        return [m for m in msgs if ident[id(m)] is None or ident[id(m)] not in stored]

    async def _recreate_producer(self) -> None:
        """A producer can stay wedged after an outage; a new one starts clean. The old one must not
        deliver anything later (after the read-back): if it does not stop in time its sender is cancelled."""
        old = self.producer
        try:
            await asyncio.wait_for(old.stop(), 5.0)
        except Exception:
            sender = getattr(getattr(old, "_sender", None), "sender_task", None)  # aiokafka internals
            if sender is not None:
                sender.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.client.close(), 2.0)
        self.producer = self._new_producer()
        await self._retry("producer start", self.producer.start)


async def _no_future():
    raise KafkaError("produced again after a failed drain")
