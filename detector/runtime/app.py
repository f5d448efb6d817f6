"""`detector run`: the sidecar that reads input topics and writes alerts.

One consumer group over the input topics. The range assignor gives partition
p of every input topic to the same member (they are co-partitioned by
service), and each owned partition has its own `Core`. The loop:

    getmany -> decode -> core (in steps bounded by max_batch_records, so heartbeats keep going;
               getmany hands out aiokafka's records as fetched: runtime/rawfetch.py)
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

The process around the sidecar (signals, exit codes) is runtime/entry.py. The
sidecar's other parts, mixed into `Sidecar`: its Kafka clients and bounded broker
waits (runtime/brokercalls.py), the partitions it owns, restored, checkpointed and
released (runtime/partitions.py), how it stops (runtime/shutdown.py), and its
warnings and gauges for the operator (runtime/watches.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import time

import aiokafka
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from detector.config import Pipeline
from detector.core import Core
from detector.ingest.columns import DecodedBatch
from detector.ingest.contract import decode_batch
from detector.records import Record, RootCause, Verdict, encode
from detector.report.live import StatusPages
from detector.runtime.brokercalls import BrokerCalls
from detector.runtime.copartition import CoPartitionWatch
from detector.runtime.failures import RunFailure, Stopped
from detector.runtime.fleetlink import FleetLink
from detector.runtime.health import HealthServer, Metrics
from detector.runtime.logsetup import redact
from detector.runtime.outbox import Outbox
from detector.runtime.partitions import PartitionState, Partitions, RebalanceListener
from detector.runtime import rawfetch
from detector.runtime.probe import BrokerProbe
from detector.runtime.rulecounters import RuleCounters, follow_incidents
from detector.runtime.scores import ScoresTopic
from detector.runtime.seekfence import SeekFence
from detector.runtime.shutdown import Shutdown
from detector.runtime.topics import ensure_topics, fleet_topic_configs
from detector.runtime.watches import Watches
from detector.sinks import build_sinks, encode_action
from detector.smoke.prober import SmokeProber

log = structlog.get_logger("detector.run")


class Sidecar(BrokerCalls, Partitions, Shutdown, Watches):
    """The sidecar's state and its main loop; the mixins hold its other parts (see the module docstring)."""

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
                                 rollback_state_path=pipeline.sinks.rollback_state_path,
                                 alertmanager_state_path=pipeline.sinks.alertmanager_state_path)
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
            # What exists now (modules, settings, clients) lives as long as the run: out of the
            # collector's full passes, which otherwise walk it all again and again.
            gc.collect()
            gc.freeze()
            await self._loop()
        finally:
            # Also on a failure: ends the probe's loop and makes shutdown steps single attempts.
            self.stopping.set()
            try:
                await self._shutdown()
            finally:
                gc.unfreeze()
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
        self.consumer.subscribe(self.inputs, listener=RebalanceListener(self))
        await self._retry("consumer start", self.consumer.start, give_up_at=give_up_at)
        why = rawfetch.install(self.consumer)  # no ConsumerRecord per message (runtime/rawfetch.py)
        if why is not None:
            self.log.warning("fetched records go through aiokafka's ConsumerRecord (slower, same results): "
                             "its fetcher differs from the one expected", reason=why, aiokafka=aiokafka.__version__)
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

    def _fleet_ended(self, task: asyncio.Task) -> None:
        """The fleet reader ends with the run; ending before it, it failed: stop, and let the
        supervisor restart from the last checkpoint (windows would otherwise wait forever)."""
        error = None if task.cancelled() else task.exception()
        if self.stopping.is_set() or error is None:
            return
        self.log.error("fleet topic reader failed; stopping", error=repr(error))
        self.failed = True
        self.stopping.set()

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
