"""`detector run`: the sidecar that reads input topics and writes alerts.

One consumer group over the input topics. The range assignor gives partition
p of every input topic to the same member (they are co-partitioned by
service), and each owned partition has its own `Core`. The loop:

    getmany -> decode -> core (in steps bounded by max_batch_records, so heartbeats keep going)
            -> bad input to the dead-letter topic, records to the alerts topic (through
               the outbox, which holds them until acknowledged: runtime/outbox.py)
    every checkpoint_interval_s: wait for every produced record's ack,
            snapshot each core to the state topic with the offsets it
            reflects, then commit those offsets.

At-least-once with exactly-once effect: offsets are committed only after the
outputs they caused are acknowledged and the state they produced is
checkpointed. After a crash the new owner restores the checkpoint, seeks to
its offsets and re-emits records with the same deterministic ids.

With `sinks.alerts_topic = false` records go to the other sinks only
(Alertmanager, PagerDuty, webhook), which are then their only copy: a
checkpoint first waits until the sinks have attempted every record it covers
(sent, or given up after retries) and is postponed while they have not.

The process around the sidecar (signals, exit codes) is runtime/entry.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import time
from dataclasses import dataclass, field

import numpy as np
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from detector.ingest.columns import DecodedBatch
from detector.config import Pipeline
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.records import Record, RootCause, Verdict, encode
from detector.runtime.clientkw import client_kwargs
from detector.runtime.checkpoints import MAX_CHECKPOINT_BYTES, load_checkpoints, save_checkpoint
from detector.runtime.copartition import CoPartitionWatch
from detector.runtime.fleetlink import FleetLink
from detector.report.live import StatusPages
from detector.runtime.health import HealthServer, Metrics
from detector.runtime.logsetup import redact
from detector.runtime.outbox import Outbox
from detector.ingest.partitioning import partition_of
from detector.runtime.probe import BrokerProbe
from detector.runtime.rulecounters import RuleCounters, follow_incidents
from detector.runtime.scores import ScoresTopic
from detector.runtime.seekfence import SeekFence
from detector.runtime.topics import BrokerUnavailable, ensure_topics, fleet_topic_configs
from detector.sinks import build_sinks, encode_action
from detector.smoke.prober import SmokeProber

log = structlog.get_logger("detector.run")


class Stopped(Exception):
    """A stop was requested while an operation waited for the broker."""


class RunFailure(RuntimeError):
    """`detector run` cannot go on; the message is the one line the user sees."""


@dataclass
class PartitionState:
    core: Core
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to read
    last_seen: dict[str, float] = field(default_factory=dict)  # topic -> wall time of its last message
    last_checkpoint: float = 0.0
    dirty: bool = False
    # False while a batch is half applied: the core is ahead of `offsets`, so a
    # checkpoint now would count those events twice after a restore.
    consistent: bool = True
    txn_capped_told: int = 0  # services of core.windows.txn_names.capped already logged


class _Listener(ConsumerRebalanceListener):
    def __init__(self, sidecar: "Sidecar") -> None:
        self.sidecar = sidecar

    async def on_partitions_revoked(self, revoked):
        await self._guard(self.sidecar.release, revoked)

    async def on_partitions_assigned(self, assigned):
        await self._guard(self.sidecar.acquire, assigned)

    async def _guard(self, step, tps) -> None:
        # aiokafka only logs a listener's exception; a sidecar that failed to
        # take over its partitions must not go on as if it had: stop, and let
        # the supervisor restart it from the last checkpoint.
        try:
            await step(sorted({tp.partition for tp in tps}))
        except Stopped:
            pass
        except Exception as e:
            self.sidecar.log.error("rebalance step failed; stopping", step=step.__name__, error=repr(e))
            self.sidecar.failed = True
            self.sidecar.stopping.set()


class Sidecar:
    def __init__(self, pipeline: Pipeline, bootstrap: str, *, group_id: str | None = None,
                 http_port: int | None = None, alertmanager_url: str | None = None) -> None:
        self.p = pipeline
        self.k = pipeline.kafka
        self.bootstrap = bootstrap
        self.group_id = group_id or self.k.group_id
        t = pipeline.topics
        self.inputs = sorted({t.requests, t.logs, t.metrics, t.deploys, t.checks})
        # Topics of deploy or check events alone are control streams: they never hold the watermark.
        self.watermark_inputs = sorted({t.requests, t.logs, t.metrics})
        self.http_port = self.k.http_port if http_port is None else http_port
        self.parts: dict[int, PartitionState] = {}
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()  # a second stop signal: skip the final checkpoint
        self._closing = False  # in _shutdown: broker waits run to their own timeouts, within its budget
        self.started = False
        self.failed = False
        self.probe = BrokerProbe(self._client_kwargs(), interval_s=1.0, timeout_s=min(3.0, self.k.op_timeout_s),
                                 on_change=self._reachability_changed)
        self.copartition = CoPartitionWatch()
        self.seeks = SeekFence()  # a batch fetched before a restore's seek is fetched again: processed once
        self.summary = {"events": 0, "rejected": 0, "anomalies": 0, "verdicts": 0, "checkpoints": 0}
        self._t_start = time.monotonic()
        self._lock = asyncio.Lock()
        self._state_partitions = self.k.partitions
        self._input_partitions: dict[str, int] = {}
        self._rate_mark = (time.monotonic(), 0)
        self._events = 0
        self.log = log.bind(group=self.group_id)
        # every record produced, held until acknowledged (runtime/outbox.py)
        self.out = Outbox(new_producer=self._new_producer, retry=self._retry, until_stop=self._until_stop,
                          client_kwargs=self._client_kwargs, alerts_topic=pipeline.topics.alerts,
                          op_timeout_s=self.k.op_timeout_s, broker_errors=self.metrics.broker_errors, log=self.log)
        self.sinks = build_sinks(pipeline.sinks, alertmanager_url=alertmanager_url,
                                 rollback_state_path=pipeline.sinks.rollback_state_path)
        # [[smoke]] checks run after each deploy this sidecar reads; results go to the checks topic.
        self._check_producer = None
        self.prober = SmokeProber(pipeline.smoke, pipeline.prober, self._publish_check) if pipeline.smoke else None
        self.status = StatusPages(pipeline)  # the status page at / of the HTTP port
        self.fleet: FleetLink | None = None  # the live fleet topic (runtime/fleetlink.py), with [fleet] on
        self._fleet_task: asyncio.Task | None = None
        self.rule_counters = RuleCounters(pipeline, self.metrics.registry)  # per-rule hits vs incidents, /metrics
        self.scores = ScoresTopic(pipeline)  # [metrics] scores_topic: live score rows (off by default)
        # sinks.alerts_topic = false: records (and rollback actions) go to the other sinks only
        self.to_alerts_topic = pipeline.sinks.alerts_topic

    # --- clients ---

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
                        f"{self.k.connect_timeout_s:g} s (last error: {_short(e)}); check --bootstrap-servers / "
                        f"KAFKA_BOOTSTRAP_SERVERS and that the broker is up") from None
                wait_s = delay * (0.5 + random.random())
                if give_up_at is not None:
                    wait_s = max(0.0, min(wait_s, give_up_at - now))
                self.log.warning("broker not answering, retrying", operation=what, error=_short(e),
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

    def _reachability_changed(self, reachable: bool, lasted_s: float) -> None:
        self.metrics.broker_reachable.set(1 if reachable else 0)
        if reachable:
            # An outage is not silence: topics get source_idle_s from now to deliver again, and their
            # cached high watermarks time to refresh, before they stop holding the watermark back.
            now = time.monotonic()
            for st in self.parts.values():
                for topic in st.last_seen:
                    st.last_seen[topic] = now
            self.log.info("broker reachable", bootstrap=self.bootstrap,
                          **({"unreachable_for_s": round(lasted_s, 1)} if self.started else {}))
        else:
            self.log.warning("broker unreachable", bootstrap=self.bootstrap,
                             detail="no answer to a metadata request; /readyz says not ready until it answers")

    def ready(self) -> bool:
        return self.started and not self.stopping.is_set() and self.probe.reachable

    # --- lifecycle ---

    async def run(self) -> int:
        """Run until a stop is requested; 0 after a clean stop, 1 after a failure, 130 when hurried.

        Raises `RunFailure` (one line for the user) when the HTTP port is taken or
        no broker answers within kafka.connect_timeout_s.
        """
        health = None
        if self.http_port >= 0:
            health = HealthServer(self.metrics, self.ready, self.k.http_host, self.http_port, pages=self.status.render)
            try:
                self.http_port = await health.start()
            except OSError as e:
                why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
                raise RunFailure(f"cannot serve /healthz /readyz /metrics on {self.k.http_host}:{self.http_port}: "
                                 f"{why}; pass --http-port with a free port (0 picks one, -1 turns it off) or set "
                                 f"kafka.http_port") from None
            self.log.info("health endpoint", url=f"http://{self.k.http_host}:{self.http_port}")
        self.out.producer = self.consumer = None
        probe_task = asyncio.create_task(self.probe.run(self.stopping))
        incidents_task = asyncio.create_task(follow_incidents(self._client_kwargs(), self.p.topics.incidents,
                                                              self.rule_counters, self.stopping, self.log))
        try:
            try:
                await self._start_clients()
            except Stopped:
                self.log.info("stopped before the broker answered")
                return 0
            await self._loop()
        finally:
            # Also on a failure: ends the probe's loop and makes shutdown steps single attempts.
            self.stopping.set()
            try:
                await self._shutdown()
            finally:
                probe_task.cancel()
                incidents_task.cancel()
                with contextlib.suppress(BaseException):
                    await probe_task
                with contextlib.suppress(BaseException):
                    await incidents_task
                if health is not None:
                    await health.stop()
        return 130 if self.hurry.is_set() else 1 if self.failed else 0

    async def _start_clients(self) -> None:
        t = self.p.topics
        self.log.info("starting", bootstrap=self.bootstrap, inputs=self.inputs, settings=redact(vars(self.k)))
        give_up_at = time.monotonic() + self.k.connect_timeout_s
        fl = self.p.fleet
        counts = await self._retry("ensure topics", ensure_topics, self.bootstrap,
                                   {name: self.k.partitions for name in self.inputs + [t.dlq, t.state]
                                    + ([t.alerts] if self.to_alerts_topic else [])
                                    + ([fl.topic] if fl.enabled else []) + self.scores.topics()}, self.k.partitions,
                                   {fl.topic: fleet_topic_configs(fl.retention_h)} if fl.enabled else None,
                                   give_up_at=give_up_at)
        self._state_partitions = counts.get(t.state, self.k.partitions)
        self._input_partitions = {n: counts[n] for n in self.inputs if n in counts}
        self.out.topic_partitions = dict(counts)
        inputs_parts = {counts.get(name) for name in self.inputs}
        if len(inputs_parts) > 1:
            self.log.warning("input topics differ in partition count; services may not be co-partitioned",
                             partitions={n: counts.get(n) for n in self.inputs})
        await self.out.start(give_up_at)
        await self.sinks.start()
        if self.p.fleet.enabled:
            self.fleet = FleetLink(self.p, self._client_kwargs(), counts.get(t.requests, self.k.partitions),
                                   counts[self.p.fleet.topic], lambda: {p: st.core for p, st in self.parts.items()},
                                   self.out.send, self._emit, self._lock, self.k.op_timeout_s)
            await self._retry("fleet topic", self.fleet.start, give_up_at=give_up_at)
            await self._unless_stopping(self.fleet.catch_up(), "fleet topic catch-up")
            self._fleet_task = asyncio.create_task(self.fleet.run(self.stopping))
            self._fleet_task.add_done_callback(self._fleet_ended)
        if self.prober is not None:
            self._check_producer = self._new_producer()
            await self._retry("producer start", self._check_producer.start)
            await self.prober.start()
        self.consumer = AIOKafkaConsumer(**self._consumer_kwargs())
        self.consumer.subscribe(self.inputs, listener=_Listener(self))
        await self._retry("consumer start", self.consumer.start, give_up_at=give_up_at)
        self.started = True

    async def _loop(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    batch, mark = await self._unless_stopping(self._fetch(), "fetch")
                except (KafkaError, IllegalStateError) as e:
                    self.metrics.broker_errors.labels("fetch").inc()
                    self.log.warning("fetch failed", error=repr(e))
                    await asyncio.sleep(1.0)
                    continue
                async with self._lock:
                    if batch:
                        await self._process(batch, mark)
                    await self._publish_actions()
                    await self._idle_sources()
                    if self.fleet is not None:
                        await self.fleet.flush()
                    await self._checkpoint_due()
                self._gauges()
        except Stopped:
            pass

    async def _fetch(self) -> tuple[dict, int]:
        batch = await self.consumer.getmany(timeout_ms=300, max_records=self.k.max_batch_records)
        return batch, self.seeks.mark()  # no await in between: the mark is the fetch's (see seekfence)

    async def _publish_check(self, key: bytes, value: bytes) -> None:
        await asyncio.wait_for(self._check_producer.send_and_wait(self.p.topics.checks, value, key=key),
                               self.k.op_timeout_s)

    async def _shutdown(self) -> None:
        """Final checkpoint and commit within kafka.shutdown_timeout_s (none when hurried), then close."""
        deadline = time.monotonic() + self.k.shutdown_timeout_s
        self._closing = True
        final = "not needed"
        if self.prober is not None:
            # the prober first: no new check results while the last checkpoint is written
            await self._close("smoke prober stop", self.prober.stop(min(2.0, self.k.shutdown_timeout_s)), 2.5)
            await self._close("checks producer stop", self._check_producer and self._check_producer.stop, 1.0)
            self.log.info("smoke prober stopped", **vars(self.prober.stats))
        if self.consumer is not None and self.parts:
            self.log.info("stopping: final checkpoint and commit", partitions=sorted(self.parts),
                          within_s=self.k.shutdown_timeout_s)
            final = "written"
            step = asyncio.ensure_future(self._final_checkpoint())
            hurry = asyncio.ensure_future(self.hurry.wait())
            try:
                await asyncio.wait({step, hurry}, timeout=max(0.5, deadline - time.monotonic() - 1.0),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                hurry.cancel()
                if not step.done():
                    step.cancel()
                    final = "skipped (stopped again)" if self.hurry.is_set() else "timed out"
                with contextlib.suppress(BaseException):
                    await step
            if step.done() and not step.cancelled() and step.exception() is not None:
                final = f"failed: {_short(step.exception())}"
            if final != "written":
                # Nothing is lost: the next owner restores the last checkpoint and re-reads from its offsets.
                self.log.warning("final checkpoint not written; the next owner re-reads from the last one",
                                 outcome=final)
        elif self.consumer is None:
            self.log.info("stopping")
        # Closing says goodbye to the broker (leave the group, flush); pointless to wait for when it
        # does not answer or the user asked twice.
        sinks_s = 0.5 if self.hurry.is_set() else max(1.0, min(2.0, deadline - time.monotonic()))
        close_s = 0.5 if not self.probe.reachable else sinks_s
        if self._fleet_task is not None:
            self._fleet_task.cancel()
            await self._close("fleet reader", asyncio.wait({self._fleet_task}), close_s)
        await asyncio.gather(*(self._close(what, op, t) for what, op, t in
                               (("fleet consumer stop", self.fleet and self.fleet.stop, close_s),
                                ("consumer stop", self.consumer and self.consumer.stop, close_s),
                                ("producer stop", self.out.producer and self.out.producer.stop, close_s),
                                ("sinks", self.sinks.close(sinks_s), sinks_s + 0.5))))
        self.summary.update(final_checkpoint=final, uptime_s=round(time.monotonic() - self._t_start, 1))
        self.log.info("stopped", **self.summary, sinks=self.sinks.stats(),
                      **({"fleet": self.fleet.stats} if self.fleet is not None else {}))

    def done_line(self) -> str:
        """What this run did, in one line for the terminal."""
        s = self.summary
        return (f"stopped after {s.get('uptime_s', 0):.0f} s: {s['events']:,} events read ({s['rejected']:,} to "
                f"the dead-letter topic), {s['anomalies']:,} anomalies and {s['verdicts']:,} verdicts produced, "
                f"{s['checkpoints']:,} checkpoints; final checkpoint {s.get('final_checkpoint', 'not needed')}")

    async def _final_checkpoint(self) -> None:
        async with self._lock:
            postponed = [p for p in sorted(self.parts) if not await self._checkpoint(p)]
            await self._publish_actions()
            await self.out.drain()
        if postponed:
            raise RunFailure(f"sinks still delivering the records of partitions {postponed}")

    async def _close(self, what: str, op, timeout_s: float) -> None:
        if op is None:
            return
        try:
            await asyncio.wait_for(op() if callable(op) else op, timeout_s)
        except BaseException as e:  # a dead broker must not keep the process from exiting
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self.log.warning("close timed out", operation=what, error=_short(e))

    # --- rebalance ---

    async def release(self, partitions: list[int]) -> None:
        async with self._lock:
            for p in partitions:
                if p in self.parts:
                    try:
                        await self._checkpoint(p)
                    except Exception as e:
                        self.log.error("checkpoint on revoke failed", partition=p, error=repr(e))
                    del self.parts[p]
                    self.status.detach(p)
                    self.log.info("partition released", partition=p)
            self.metrics.partitions.set(len(self.parts))

    async def acquire(self, partitions: list[int]) -> None:
        async with self._lock:
            new = [p for p in partitions if p not in self.parts]
            if not new:
                return
            ckpts = await self._retry("load checkpoints", load_checkpoints, self._client_kwargs(),
                                      self.p.topics.state, self._state_partitions, self.group_id, new,
                                      self.k.op_timeout_s)
            now = time.monotonic()
            for p in new:
                ck = ckpts.get(p)
                if ck is not None:
                    core = await asyncio.to_thread(Core.restore, self.p, ck.state, p, self._fleet_partitions())
                    st = PartitionState(core, dict(ck.offsets), last_checkpoint=now)
                    for topic, offset in ck.offsets.items():
                        tp = TopicPartition(topic, p)
                        if tp in self.consumer.assignment():
                            self.consumer.seek(tp, offset)
                            self.seeks.seeked(tp)
                    self.log.info("partition restored", partition=p, offsets=ck.offsets, state_bytes=len(ck.state))
                else:
                    st = PartitionState(Core(self.p, partition=p, partitions=self._fleet_partitions()),
                                        last_checkpoint=now)
                    self.log.info("partition started cold", partition=p)
                # Until an input topic delivers (or stays silent with nothing to read for
                # source_idle_s) it holds the watermark back: at start the fetcher may
                # serve one topic far ahead of the others.
                for topic in self.watermark_inputs:
                    st.core.windows.max_ts.setdefault(topic, float("-inf"))
                    st.last_seen.setdefault(topic, now)
                self.parts[p] = st
                if self.fleet is not None:
                    self.fleet.attach(st.core)
                self.status.attach(p, st.core)
                self.scores.attach(st.core)
            self.metrics.partitions.set(len(self.parts))

    def _fleet_ended(self, task: asyncio.Task) -> None:
        """The fleet reader ends with the run; ending before it, it failed: stop, and let the
        supervisor restart from the last checkpoint (windows would otherwise wait forever)."""
        error = None if task.cancelled() else task.exception()
        if self.stopping.is_set() or error is None:
            return
        self.log.error("fleet topic reader failed; stopping", error=repr(error))
        self.failed = True
        self.stopping.set()

    def _fleet_partitions(self) -> int:
        """The fleet view's partition count: the input topics' (1 without the fleet view)."""
        return self.fleet.partitions if self.fleet is not None else 1

    # --- processing ---

    async def _hold_back(self) -> None:
        """An input topic with data not yet read holds its partition's watermark back.

        Without this a topic that the fetcher happens to serve later (a few
        deploy events beside a flood of requests) would find its windows
        already closed. Topics with nothing waiting do not hold anything back.
        """
        owned = self.consumer.assignment()
        for p, st in self.parts.items():
            wm = st.core.windows.max_ts
            for topic in self.watermark_inputs:
                tp = TopicPartition(topic, p)
                if tp not in owned:
                    continue
                hw = self.consumer.highwater(tp)
                if topic not in wm and (hw is None or hw > await self._position(tp)):
                    wm[topic] = float("-inf")
                    st.last_seen[topic] = time.monotonic()

    async def _position(self, tp: TopicPartition) -> int:
        # position() waits for a committed offset when it has none: bounded, like every broker call.
        return await self._retry("position", self.consumer.position, tp)

    async def _process(self, batch: dict, mark: int) -> None:
        now = time.monotonic()
        batch, dropped = self.seeks.fresh(batch, mark)
        if dropped:
            self.log.info("records fetched before a restore dropped; read again from the checkpoint's offsets",
                          records=dropped)
        await self._hold_back()
        by_partition: dict[int, list] = {}
        for tp in sorted(batch, key=lambda tp: (tp.partition, tp.topic)):
            if batch[tp] and tp.partition in self.parts:  # else revoked meanwhile: the new owner re-reads
                by_partition.setdefault(tp.partition, []).append(tp)
        for p, tps in by_partition.items():
            st = self.parts[p]
            work = [(tp.topic if tp.topic in self.watermark_inputs else None, [m.value for m in batch[tp]])
                    for tp in tps]
            # Decode and core run on the loop: a step is bounded by kafka.max_batch_records
            # (~0.1 s), short enough for heartbeats, and a worker thread here costs more in
            # GIL hand-offs with the fetcher than it saves (measured: 3x slower end to end).
            st.consistent = False
            results = self._run_partition(st.core, work)
            if self.prober is not None:
                for decoded, _records in results:
                    self.prober.on_deploys(decoded.deploys)  # schedules only: never waits
            await asyncio.sleep(0)  # let the heartbeat and the fetcher run between partitions
            for tp, (decoded, records) in zip(tps, results):
                msgs = batch[tp]
                self.rule_counters.observe(decoded.deploys, [])  # records: in _emit, whoever judged them
                self._watch_copartition(tp, decoded, st.core)
                self._watch_txn_cap(p, st)
                for r in decoded.rejected:
                    m = msgs[r.pos]
                    headers = [("error", r.reason.encode()), ("source.topic", tp.topic.encode()),
                               ("source.partition", str(tp.partition).encode()),
                               ("source.offset", str(m.offset).encode())]
                    await self.out.send(self.p.topics.dlq, m.value if m.value is not None else b"", m.key, headers)
                    self.metrics.rejected.labels(tp.topic).inc()
                    self.summary["rejected"] += 1
                for rec in records:
                    await self._emit(rec)
                await self.scores.publish(st.core, self.out.send)
                st.offsets[tp.topic] = msgs[-1].offset + 1
                st.last_seen[tp.topic] = now
                st.dirty = True
                self.metrics.events_in.labels(tp.topic).inc(len(msgs))
                self._events += len(msgs)
                self.summary["events"] += len(msgs)
            st.consistent = True

    def _watch_copartition(self, tp: TopicPartition, decoded: DecodedBatch, core: Core) -> None:
        """Warn once per service that arrives on two partition numbers (a producer hashing keys differently)."""
        ids = [c.service for c in (decoded.requests, decoded.logs, decoded.metrics) if len(c)]
        names = {core.interner.lookup(int(i)) for i in np.unique(np.concatenate(ids))} if ids else set()
        names.update(d.service for d in decoded.deploys)
        names.discard(None)
        if not names:
            return
        n = self._input_partitions.get(tp.topic, self.k.partitions)
        for split in self.copartition.observe(tp.topic, tp.partition, names, n):
            self.log.warning("service split across partitions", service=split.service,
                             topics=sorted({t for t, _ in split.seen}),
                             partitions={f"{t}[{p}]": p for t, p in split.seen},
                             murmur2_partition=split.murmur2_partition, detail=split.describe())
            if len(self.copartition.split) <= 100:  # bounded label set
                self.metrics.split_service.labels(split.service).set(1)
        self.metrics.split_services.set(len(self.copartition.split))
        for service in self.copartition.off_default(tp.topic, tp.partition, names, n):
            self.log.warning("service off the default partition", service=service, topic=tp.topic,
                             partition=tp.partition, murmur2_partition=partition_of(service, n),
                             detail="the producer of this topic does not partition by murmur2 of the service key "
                                    "(Kafka's default): if another input topic does, this service's events are "
                                    "judged apart, possibly by another sidecar, and a replay with --partitions "
                                    "differs from this run; librdkafka/confluent-kafka: set "
                                    "partitioner=murmur2_random")
        self.metrics.off_default_services.set(self.copartition.off_services)

    def _watch_txn_cap(self, p: int, st: PartitionState) -> None:
        """Say once per service that it met limits.max_txn_names_per_service (new names count as `other`)."""
        names = st.core.windows.txn_names
        for svc in names.capped[st.txn_capped_told:]:
            self.log.warning("transaction names over the per-service cap are counted as 'other'", partition=p,
                             service=st.core.interner.lookup(svc), cap=names.cap,
                             detail="the transactions still count for their endpoint; raise "
                                    "limits.max_txn_names_per_service if the service really has more names")
        st.txn_capped_told = len(names.capped)

    def _run_partition(self, core: Core, work: list) -> list[tuple[DecodedBatch, list[Record]]]:
        return [self._run_core(core, values, source) for source, values in work]

    def _run_core(self, core: Core, values: list, source: str | None) -> tuple[DecodedBatch, list[Record]]:
        decoded = decode_batch(values, core.interner, self.p.limits.max_message_bytes)
        # the wall clock bounds event time from above (see detector.ingest.timeguard)
        return decoded, core.process(decoded, source=source, now=time.time())

    async def _publish_actions(self) -> None:
        """Rollback-hook outcomes go to the alerts topic as `action` records."""
        for outcome in self.sinks.take_actions():
            if self.to_alerts_topic:
                await self.out.send(self.p.topics.alerts, encode_action(outcome),
                                 str(outcome.get("service", "")).encode(), None)
            self.log.info("action", **{k: outcome.get(k) for k in ("action", "verdict_id", "outcome", "target")})

    async def _emit(self, rec: Record) -> None:
        kind = "verdict" if isinstance(rec, Verdict) else "root_cause" if isinstance(rec, RootCause) else "anomaly"
        self.rule_counters.observe([], [rec])
        if self.to_alerts_topic:
            await self.out.send(self.p.topics.alerts, encode(rec), rec.service.encode(), None)
            self.metrics.records_out.labels(kind).inc()
        if kind != "root_cause":
            self.summary["verdicts" if kind == "verdict" else "anomalies"] += 1
        self.sinks.submit(rec)
        self.status.record(rec)
        if kind == "verdict":
            self.log.info("verdict", service=rec.service, deploy_id=rec.deploy_id, decision=rec.decision,
                          root_cause=rec.root_cause)

    async def _idle_sources(self) -> None:
        """A topic silent for source_idle_s, with nothing left to read, stops holding its
        partition's watermark back. Not while the broker is unreachable: nothing is known then."""
        if not self.probe.reachable:
            return
        now = time.monotonic()
        following = set()
        for p, st in self.parts.items():
            wm = st.core.windows.max_ts
            idle = []
            for s in wm:
                if now - st.last_seen.get(s, now) <= self.k.source_idle_s:
                    continue
                hw = self.consumer.highwater(TopicPartition(s, p))
                if hw is not None and hw <= st.offsets.get(s, 0):
                    idle.append(s)
            if idle and len(idle) < len(wm):
                for s in idle:
                    wm.pop(s, None)
                for rec in st.core.process(DecodedBatch()):
                    await self._emit(rec)
                await self.scores.publish(st.core, self.out.send)
            elif self.fleet is not None and (idle or self._never_fed(p)):
                following.add(p)  # all silent: it keeps up with the fleet's windows
        if self.fleet is not None:
            await self.fleet.follow(following)
            for p in sorted(following):
                await self.scores.publish(self.parts[p].core, self.out.send)

    def _never_fed(self, p: int) -> bool:
        """No input topic of partition `p` ever held an event (a fetch said so): it has no windows
        of its own to wait for, and closes the fleet's, as a replay's core without services does."""
        st = self.parts[p]
        return all(st.offsets.get(t, 0) == 0 and self.consumer.highwater(TopicPartition(t, p)) == 0
                   for t in self.inputs)

    async def _checkpoint_due(self) -> None:
        now = time.monotonic()
        for p, st in sorted(self.parts.items()):
            if st.dirty and now - st.last_checkpoint >= self.k.checkpoint_interval_s:
                await self._checkpoint(p)

    async def _checkpoint(self, p: int) -> bool:
        """Snapshot partition `p` with its offsets and commit them; False when postponed because the
        sinks (the only outputs, with sinks.alerts_topic off) have not attempted every record yet."""
        st = self.parts.get(p)
        if st is None:
            return True
        if not st.consistent:
            self.log.warning("checkpoint skipped: a batch was interrupted half applied; the next owner "
                             "re-reads it from the previous checkpoint", partition=p)
            return True
        if self.fleet is not None:
            await self.fleet.flush()  # the summaries this checkpoint covers go out before it
        await self.scores.publish(st.core, self.out.send)  # rows of windows judged as the fleet completed them
        await self.out.drain()
        if not self.to_alerts_topic and not await self._sinks_delivered():
            # The sinks hold the only copy of the records this checkpoint covers: committing now
            # would lose them in a crash. Try again after another interval; a restart meanwhile
            # re-reads from the last checkpoint and emits them again (same ids).
            self.log.warning("checkpoint postponed: sinks have not yet attempted every record it covers "
                             "(sinks.alerts_topic is false)", partition=p, sinks=self.sinks.stats())
            st.last_checkpoint = time.monotonic()
            return False
        state = await asyncio.to_thread(st.core.snapshot)
        size = await self._retry("checkpoint", save_checkpoint, self.out.producer, self.p.topics.state,
                                 self._state_partitions, self.group_id, p, dict(st.offsets), state,
                                 self.k.op_timeout_s)
        owned = self.consumer.assignment()
        commit = {TopicPartition(t, p): o for t, o in st.offsets.items() if TopicPartition(t, p) in owned}
        if commit:
            try:
                await self._until_stop(lambda: asyncio.wait_for(self.consumer.commit(commit), self.k.op_timeout_s),
                                       "commit")
            except (CommitFailedError, IllegalStateError, KafkaError, asyncio.TimeoutError) as e:
                # The checkpoint holds the offsets too: a restart resumes from it.
                self.log.warning("commit failed after checkpoint", partition=p, error=repr(e))
        st.last_checkpoint = time.monotonic()
        st.dirty = False
        self.summary["checkpoints"] += 1
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_bytes.labels(str(p)).set(size)
        return True

    async def _sinks_delivered(self) -> bool:
        """Whether every sink attempted what was submitted so far, waiting at most one checkpoint interval."""
        if not self.sinks:
            return True
        wait_s = min(self.k.op_timeout_s, max(1.0, self.k.checkpoint_interval_s))
        return await self._until_stop(lambda: self.sinks.flush(wait_s), "sink flush")

    def _gauges(self) -> None:
        now = time.monotonic()
        self.rule_counters.export()
        if self.fleet is not None:
            self.metrics.fleet_absent.set(len(self.fleet.absent))
            self.metrics.fleet_forced.set(self.fleet.stats["forced"])
            for direction in ("published", "received"):
                self.metrics.fleet_summaries.labels(direction).set(self.fleet.stats[direction])
        t0, n0 = self._rate_mark
        if now - t0 >= 5.0:
            self.metrics.events_per_s.set((self._events - n0) / (now - t0))
            self._rate_mark = (now, self._events)
        for p, st in self.parts.items():
            label = str(p)
            self.metrics.checkpoint_age.labels(label).set(now - st.last_checkpoint)
            self.metrics.late.labels(label).set(st.core.late_events)
            self.metrics.windows_open.labels(label).set(len(st.core.windows.open))
            self.metrics.series.labels(label).set(len(st.core.requests))
            self.metrics.txn_folded.labels(label).set(st.core.windows.txn_names.folded)
            if st.core.gate is not None:
                self.metrics.fleet_waiting.labels(label).set(sum(1 for w in st.core.gate.queue
                                                                 if not isinstance(w, float)))
            for topic, offset in st.offsets.items():
                hw = self.consumer.highwater(TopicPartition(topic, p))
                if hw is not None:
                    self.metrics.lag.labels(topic, label).set(max(0, hw - offset))


def _short(e: BaseException) -> str:
    """An exception as one short line (aiokafka's messages can be long or empty)."""
    if isinstance(e, BrokerUnavailable) and e.__cause__ is not None:
        e = e.__cause__
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__
