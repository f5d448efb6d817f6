"""The live fleet topic: local cores' window summaries out, every partition's summaries in.

`detector run` has one core per input partition it owns; the fleet view of each
core must hold every partition's summaries, whichever sidecar owns them. This
module owns that exchange over `fleet.topic`:

* **out** (`flush`): after each step of the cores, their new summaries are
  produced to the fleet topic keyed by partition, through the sidecar's own
  producer, so the checkpoint that covers them waits for their acknowledgement
  (a restart never loses a summary others wait for). Local cores get them at
  once, through their wire encoding, as the topic would deliver them.
* **in** (`run`): a consumer outside the consumer group, assigned every
  partition of the fleet topic from its beginning, feeds every local core's
  view; at start it reads to the end first (`start`), so a restarted sidecar
  rebuilds its view from the retained summaries before it judges. The newest
  `fleet.windows_kept` windows are kept to give a core that arrives later (a
  rebalance) the same view (`attach`).
* **waiting** (`tick`): a core whose head window lacks some partitions'
  summaries for `fleet.max_wait_s` of wall clock judges it without them
  (`Core.judge_ready(force=True)`: its records carry `detail.fleet_missing`).
  Those partitions then count as absent, and later windows that lack only
  absent partitions are judged without waiting, until one of them publishes
  again: a sidecar that is down delays the others once, not every window.
  A head not prepared yet, or a horizon, waits for the fleet's summaries
  before it (the windows its core closes empty: `detector.fleet.gate`).
* **silent partitions** (`follow`): a partition whose inputs have been silent
  for `kafka.source_idle_s` with nothing left to read closes its (empty)
  windows up to the fleet's horizon, as a replay's core without traffic does.

Only the edges live here (broker, wall clock); what a window's judgement means
is the core's (`detector.fleet.gate`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from detector.aggregate.windows import WindowFacts
from detector.config import Pipeline
from detector.core import Core
from detector.fleet import summary as wire
from detector.fleet.summary import SummaryError, WindowSummary
from detector.records import Record

log = structlog.get_logger("detector.fleet")

Send = Callable[[str, bytes, bytes | None, list | None], Awaitable[None]]
Emit = Callable[[Record], Awaitable[None]]


class FleetLink:
    def __init__(self, pipeline: Pipeline, client_kwargs: dict, partitions: int, topic_partitions: int,
                 cores: Callable[[], dict[int, Core]], send: Send, emit: Emit, lock: asyncio.Lock,
                 op_timeout_s: float) -> None:
        self.topic = pipeline.fleet.topic
        self.max_wait_s = pipeline.fleet.max_wait_s
        self.windows_kept = pipeline.fleet.windows_kept
        self.width_s = pipeline.windows.width_s
        self.partitions = partitions  # of the input topics: the fleet view's shape
        self.topic_partitions = topic_partitions  # of the fleet topic
        self._client_kwargs = client_kwargs
        self._cores, self._send, self._emit, self._lock = cores, send, emit, lock
        self._op_timeout_s = op_timeout_s
        self.consumer: AIOKafkaConsumer | None = None
        self._recent: dict[float, dict[int, WindowSummary]] = {}  # window end -> partition -> summary
        self._waiting: dict[int, tuple[float, float]] = {}  # core partition -> (head window end, since)
        self.absent: set[int] = set()  # partitions judged without after max_wait_s, until they publish
        self.following: set[int] = set()  # local partitions with silent inputs: they close the fleet's windows
        self.stats = {"published": 0, "published_bytes": 0, "published_keys_bytes": 0, "received": 0,
                      "ignored": 0, "bad": 0, "forced": 0}
        self.log = log.bind(topic=self.topic, partitions=partitions)

    # --- in ---

    async def start(self) -> None:
        """Assign every partition of the fleet topic, from its beginning (bounded by the caller)."""
        if self.consumer is not None:  # a retry after a timeout: start over
            await self.stop()
            self._recent.clear()
        self.consumer = AIOKafkaConsumer(**self._client_kwargs, group_id=None, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.topic_partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def catch_up(self) -> None:
        """Read the retained summaries to the end of the topic, before the cores judge anything.
        Bounded by progress, not size: a read that stalls for op_timeout_s goes on in `run`
        (the cores wait for what they lack; nothing is judged on a partial view before max_wait_s)."""
        tps = [TopicPartition(self.topic, p) for p in range(self.topic_partitions)]
        t0 = last = time.monotonic()
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            try:
                got = await self.consumer.getmany(timeout_ms=300)
            except (KafkaError, OSError) as e:
                self.log.warning("fleet topic fetch failed; reading on later", error=repr(e))
                break
            if self._take(got):
                last = time.monotonic()
            for tp in tps:
                # the end is the high watermark a fetch reports (exact), not ListOffsets (can be short)
                hw = self.consumer.highwater(tp)
                if tp not in done and hw is not None and await self.consumer.position(tp) >= hw:
                    done.add(tp)
            if time.monotonic() - last > self._op_timeout_s:
                self.log.warning("fleet topic not read to its end; going on", read=self.stats["received"],
                                 partitions_done=len(done), stalled_s=self._op_timeout_s)
                break
        self.log.info("fleet view rebuilt from the topic", summaries=self.stats["received"],
                      windows=len(self._recent), newest_window_end=max(self._recent, default=None),
                      seconds=round(time.monotonic() - t0, 2))

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: read summaries into every local core's view, judge what is complete,
        force what waited too long."""
        while not stopping.is_set():
            try:
                got = await self.consumer.getmany(timeout_ms=250)
            except (KafkaError, OSError) as e:
                self.log.warning("fleet topic fetch failed", error=repr(e))
                await asyncio.sleep(1.0)
                continue
            new = self._take(got)
            async with self._lock:
                if stopping.is_set():
                    return
                cores = self._cores()
                for s in new:
                    for core in cores.values():
                        core.fleet.add(s)
                if new:
                    await self._judge(cores)
                await self.tick()

    def _take(self, got: dict) -> list[WindowSummary]:
        out = []
        for tp, msgs in got.items():
            for m in msgs:
                try:
                    s = wire.decode(m.value or b"")
                except SummaryError as e:
                    self.stats["bad"] += 1
                    self.log.warning("not a fleet summary, skipped", partition=tp.partition, offset=m.offset,
                                     error=str(e))
                    continue
                if s.partitions != self.partitions:  # written under another input partition count
                    self.stats["ignored"] += 1
                    continue
                self.stats["received"] += 1
                self._keep(s)
                self.absent.discard(s.partition)
                out.append(s)
        return out

    def _keep(self, s: WindowSummary) -> None:
        ends = self._recent
        if len(ends) >= self.windows_kept and s.end not in ends and s.end < min(ends):
            return
        ends.setdefault(s.end, {})[s.partition] = s
        while len(ends) > self.windows_kept:
            del ends[min(ends)]

    def attach(self, core: Core) -> None:
        """Give a core that joins this sidecar (start, rebalance, restore) the fleet as known here."""
        if core.fleet is None:
            return
        for end in sorted(self._recent):
            for p in sorted(self._recent[end]):
                core.fleet.add(self._recent[end][p])

    # --- out ---

    async def flush(self) -> None:
        """Produce every local core's new summaries, hand them to the other local cores, and judge
        what that completes; until no core writes anything new. The caller holds the lock."""
        cores = self._cores()
        while True:
            await self._follow(cores)
            written = [(p, s) for p, core in sorted(cores.items()) for s in core.take_fleet()]
            if not written:
                return
            for p, s in written:
                data = wire.encode(s)
                key = str(p).encode()
                await self._send(self.topic, data, key, None)
                self.stats["published"] += 1
                self.stats["published_bytes"] += len(data)
                self.stats["published_keys_bytes"] += len(key)
                s = wire.decode(data)
                self._keep(s)
                for q, core in cores.items():
                    if q != p:
                        core.fleet.add(s)
            await self._judge(cores, flush=False)

    async def _judge(self, cores: dict[int, Core], flush: bool = True) -> None:
        for p, core in sorted(cores.items()):
            for rec in core.judge_ready():
                await self._emit(rec)
        if flush:
            await self.flush()

    # --- waiting ---

    async def tick(self) -> None:
        """Judge, without the partitions still missing, every head window that waited max_wait_s
        (or that lacks only partitions already known absent), and what follows it that lacks only
        those. The caller holds the lock."""
        now = time.monotonic()
        for p, core in sorted(self._cores().items()):
            while True:
                head = core.gate.queue[0] if core.gate is not None and core.gate.queue else None
                if head is None:
                    self._waiting.pop(p, None)
                    break
                # a prepared window waits for the fleet's summaries of it; a window not prepared yet
                # or a horizon, for the fleet's summaries before it (windows it closes empty)
                if isinstance(head, WindowFacts):
                    head_end = head.end if core.gate.head_ready else head.start
                else:
                    head_end = head
                missing = core.fleet.missing(head_end)
                if not missing:
                    break
                end, since = self._waiting.get(p, (None, now))
                if end != head_end:
                    self._waiting[p] = (head_end, now)
                    since = now
                if now - since < self.max_wait_s and not set(missing) <= self.absent:
                    break
                new_absent = sorted(set(missing) - self.absent)
                self.absent.update(missing)
                self.stats["forced"] += 1
                if new_absent:
                    self.log.warning("judging without partitions that did not summarise in time",
                                     partition=p, window_end=head_end, missing=missing,
                                     waited_s=round(now - since, 2), max_wait_s=self.max_wait_s,
                                     detail="their owner is down or behind; records of such windows carry "
                                            "detail.fleet_missing; later windows missing only these are not held")
                for rec in core.judge_ready(force=True):
                    await self._emit(rec)
                self._waiting.pop(p, None)
                await self.flush()

    # --- silent partitions ---

    async def follow(self, partitions: set[int]) -> None:
        """Partitions whose inputs are all silent, with nothing left to read, close their windows up
        to the newest window the rest of the fleet closed (a replay's idle core does the same), now
        and while `flush` moves the fleet on, until the next call says otherwise. Lock held."""
        self.following = set(partitions)
        await self._follow(self._cores())

    async def _follow(self, cores: dict[int, Core]) -> None:
        for p in sorted(self.following & set(cores)):
            core = cores[p]
            others = [e for q, e in core.fleet.horizon.items() if q != p]
            cb = core.windows.closed_before
            own = float("-inf") if cb is None else cb * self.width_s
            if others and max(others) > own:
                for rec in core.finish(max(others), final=False):
                    await self._emit(rec)

    async def stop(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()
