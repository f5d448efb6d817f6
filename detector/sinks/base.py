"""The sink contract and the bounded queue every sink sits behind.

A sink receives anomaly and verdict records from the detector and delivers
them somewhere slow and unreliable (an HTTP API, a command). Detection must
never wait for that, so the contract is:

* ``submit(record)``: synchronous and non-blocking. The sink turns the record
  into zero or more work items and appends them to a bounded queue; when the
  queue is full the *oldest* item is dropped and counted (the newest findings
  matter most to whoever is paged). Call it from the event loop's thread.
* ``async start()``: starts the sink's single worker task.
* ``async flush(timeout_s) -> bool``: waits until everything submitted before
  the call has been attempted (and, for sinks with timers, everything due
  now); False when ``timeout_s`` ran out first.
* ``async close(timeout_s)``: flushes for at most ``timeout_s``, stops the
  worker and counts what is left in the queue as dropped.
* ``stats``: counters ``submitted`` (work items queued), ``sent``, ``failed``
  (gave up after retries, or refused), ``dropped`` (queue overflow or left at
  close). Every item ends in exactly one of sent, failed or dropped. The
  Alertmanager sink, which re-sends firing alerts, counts alerts posted
  (re-sends included) as sent or failed, and alerts evicted past its cap as
  dropped.

``QueuedSink`` implements all of it; a concrete sink supplies ``items_for``
(record -> work items) and ``deliver`` (one item -> sent or not), or
overrides ``run_pass`` when it keeps timers of its own (Alertmanager).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from detector.records import Record

log = structlog.get_logger("detector.sinks")


@dataclass
class SinkStats:
    submitted: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@runtime_checkable
class Sink(Protocol):
    name: str
    stats: SinkStats

    async def start(self) -> None: ...

    def submit(self, record: Record) -> None: ...

    async def flush(self, timeout_s: float) -> bool: ...

    async def close(self, timeout_s: float) -> None: ...


class QueuedSink:
    """Bounded drop-oldest queue + one worker task; subclasses say what to queue and how to deliver it."""

    name = "sink"

    def __init__(self, *, queue_max: int) -> None:
        if queue_max < 1:
            raise ValueError(f"{self.name}: queue_max must be >= 1 (got {queue_max})")
        self.queue_max = queue_max
        self.stats = SinkStats()
        self._queue: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._requested = 0  # flush generations asked for
        self._completed = 0  # flush generations a finished pass has covered
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(sink=self.name)

    # --- what subclasses provide ---

    def items_for(self, record: Record) -> list[Any]:
        """Work items for one record (empty when this sink does not care about it)."""
        raise NotImplementedError

    async def deliver(self, item: Any) -> bool:
        """Deliver one item; True when it arrived. Must not raise for delivery failures."""
        raise NotImplementedError

    def idle_timeout_s(self) -> float | None:
        """How long the worker may sleep with nothing submitted; None = until the next submit or flush."""
        return None

    async def run_pass(self) -> None:
        """One round of work: deliver every queued item in order."""
        while self._queue:
            item = self._queue.popleft()
            try:
                ok = await self.deliver(item)
            except asyncio.CancelledError:  # close() gave up on this item mid-delivery
                self.stats.dropped += 1
                raise
            except Exception:  # a bug in one item must not kill the worker and silence the sink
                self._log.exception("sink_deliver_error")
                ok = False
            if ok:
                self.stats.sent += 1
            else:
                self.stats.failed += 1

    async def aclose(self) -> None:
        """Release resources after the worker stopped (HTTP client, files)."""

    # --- the contract ---

    def submit(self, record: Record) -> None:
        for item in self.items_for(record):
            self.enqueue(item)

    def enqueue(self, item: Any) -> None:
        self.stats.submitted += 1
        if len(self._queue) >= self.queue_max:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(item)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._work(), name=f"sink-{self.name}")

    async def flush(self, timeout_s: float) -> bool:
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self.name}: flush() before start() (or after close()); call await start() first")
        self._requested += 1
        target = self._requested
        self._wake.set()
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(lambda: self._completed >= target), timeout_s)
            except TimeoutError:
                return False
        return True

    async def close(self, timeout_s: float) -> None:
        if self._task is not None and not self._task.done():
            flushed = await self.flush(timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if not flushed:
                self._log.warning("sink_close_timeout", timeout_s=timeout_s, left=len(self._queue))
        left = len(self._queue)
        self._queue.clear()
        self.stats.dropped += left
        await self.aclose()
        self._log.info("sink_closed", **self.stats.as_dict())

    async def _work(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_timeout_s())
            self._wake.clear()
            target = self._requested
            try:
                await self.run_pass()
            except Exception:
                self._log.exception("sink_pass_error")
            async with self._progress:
                self._completed = max(self._completed, target)
                self._progress.notify_all()
