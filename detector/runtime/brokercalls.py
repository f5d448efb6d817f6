"""The sidecar's Kafka clients and how it waits for the broker (a mixin of `Sidecar`).

Every broker operation goes through `_retry` (retries with backoff and jitter,
bounded by kafka.op_timeout_s per attempt and kafka.connect_timeout_s at
start) and `_unless_stopping`/`_until_stop`, so that a stop request never
waits for a broker that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from aiokafka import AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from detector.runtime.checkpoints import MAX_CHECKPOINT_BYTES
from detector.runtime.clientkw import client_kwargs
from detector.runtime.failures import RunFailure, Stopped, short_error
from detector.runtime.topics import BrokerUnavailable


class BrokerCalls:
    """Client settings and bounded, interruptible broker operations; state lives on `Sidecar`."""

    def _client_kwargs(self) -> dict:
        return client_kwargs(self.k, self.bootstrap)

    def _consumer_kwargs(self) -> dict:
        k = self.k
        kw = {**self._client_kwargs(), "group_id": self.group_id, "enable_auto_commit": False,
              "auto_offset_reset": "earliest", "session_timeout_ms": k.session_timeout_ms,
              "heartbeat_interval_ms": k.heartbeat_interval_ms,
              "partition_assignment_strategy": (RangePartitionAssignor,),
              "max_partition_fetch_bytes": 8 * 1024 * 1024}
        if k.group_instance_id:
            kw["group_instance_id"] = k.group_instance_id
        return kw

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self._client_kwargs(), acks="all", enable_idempotence=self.k.enable_idempotence,
                                linger_ms=5, max_request_size=MAX_CHECKPOINT_BYTES)

    async def _retry(self, what: str, op, *args, give_up_at: float | None = None):
        """Run a broker operation until it succeeds; backoff with jitter.

        Before shutdown, a stop request interrupts the wait (`Stopped`), also one
        made before the call. During shutdown (the final checkpoint) an operation
        gets one attempt. With `give_up_at` (monotonic), retrying ends there with
        `RunFailure`.
        """
        delay = 0.5
        interruptible = not self._closing
        if interruptible and self.stopping.is_set():
            raise Stopped(what)
        while True:
            try:
                attempt = asyncio.wait_for(op(*args), self.k.op_timeout_s)
                return await (self._unless_stopping(attempt, what) if interruptible else attempt)
            except (KafkaError, asyncio.TimeoutError, OSError, BrokerUnavailable) as e:
                self.metrics.broker_errors.labels(what).inc()
                if self.stopping.is_set():
                    if interruptible:
                        raise Stopped(what) from None
                    raise
                now = time.monotonic()
                if give_up_at is not None and now >= give_up_at:
                    raise RunFailure(
                        f"no Kafka broker answered at {self.bootstrap} within kafka.connect_timeout_s="
                        f"{self.k.connect_timeout_s:g} s (last error: {short_error(e)}); check --bootstrap-servers / "
                        f"KAFKA_BOOTSTRAP_SERVERS and that the broker is up") from None
                wait_s = delay * (0.5 + random.random())
                if give_up_at is not None:
                    wait_s = max(0.0, min(wait_s, give_up_at - now))
                self.log.warning("broker not answering, retrying", operation=what, error=short_error(e),
                                 retry_in_s=round(wait_s, 2), bootstrap=self.bootstrap,
                                 **({"gives_up_in_s": round(give_up_at - now, 1)} if give_up_at else {}))
                await self._unless_stopping(asyncio.sleep(wait_s), what)
                delay = min(delay * 2, 30.0)

    async def _unless_stopping(self, aw, what: str):
        """Await `aw`, but give up with `Stopped` as soon as a stop is requested."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                # A client call stuck on a frozen broker may take its own time to honour the
                # cancellation: give it a moment, never the whole operation timeout.
                with contextlib.suppress(BaseException):
                    await asyncio.wait({task}, timeout=0.5)
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a late failure is not logged as never retrieved
        if task in done:
            return task.result()
        raise Stopped(what)

    async def _until_stop(self, make, what: str):
        """Await `make()`; before shutdown a stop request interrupts it (`Stopped`), so a broker that
        does not answer cannot hold the main loop for an operation timeout after the user asked to stop."""
        if self._closing:
            return await make()
        if self.stopping.is_set():
            raise Stopped(what)  # before make(): no coroutine is left never awaited
        return await self._unless_stopping(make(), what)
