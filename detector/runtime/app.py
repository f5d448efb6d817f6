"""`detector run`: the sidecar that reads input topics and writes alerts.

One consumer group over the input topics. The range assignor gives partition
p of every input topic to the same member (they are co-partitioned by
service), and each owned partition has its own `Core`. The loop:

    getmany -> decode -> core (in steps bounded by max_batch_records, so heartbeats keep going)
            -> bad input to the dead-letter topic, records to the alerts topic
    every checkpoint_interval_s: wait for every produced record's ack,
            snapshot each core to the state topic with the offsets it
            reflects, then commit those offsets.

At-least-once with exactly-once effect: offsets are committed only after the
outputs they caused are acknowledged and the state they produced is
checkpointed. After a crash the new owner restores the checkpoint, seeks to
its offsets and re-emits records with the same deterministic ids.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
import time
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from detector.columns import DecodedBatch
from detector.config import ConfigError, Pipeline, load_pipeline
from detector.contract import decode_batch
from detector.core import Core
from detector.records import Record, Verdict, encode
from detector.runtime.checkpoints import MAX_CHECKPOINT_BYTES, load_checkpoints, save_checkpoint
from detector.report.live import StatusPages
from detector.runtime.health import HealthServer, Metrics
from detector.runtime.logsetup import configure, redact
from detector.runtime.topics import ensure_topics
from detector.sinks import build_sinks, encode_action

log = structlog.get_logger("detector.run")


@dataclass
class PartitionState:
    core: Core
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to read
    last_seen: dict[str, float] = field(default_factory=dict)  # topic -> wall time of its last message
    last_checkpoint: float = 0.0
    dirty: bool = False


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
        self.inputs = sorted({t.requests, t.logs, t.metrics, t.deploys})
        # A topic of deploy events alone is a control stream: it never holds the watermark.
        self.watermark_inputs = sorted({t.requests, t.logs, t.metrics})
        self.http_port = self.k.http_port if http_port is None else http_port
        self.parts: dict[int, PartitionState] = {}
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.started = False
        self.failed = False
        self._lock = asyncio.Lock()
        self._unacked: list[tuple[asyncio.Future, tuple]] = []
        self._state_partitions = self.k.partitions
        self._rate_mark = (time.monotonic(), 0)
        self._events = 0
        self.log = log.bind(group=self.group_id)
        self.sinks = build_sinks(pipeline.sinks, alertmanager_url=alertmanager_url,
                                 rollback_state_path=pipeline.sinks.rollback_state_path)
        self.status = StatusPages(pipeline)  # the status page at / of the HTTP port

    # --- clients ---

    def _client_kwargs(self) -> dict:
        k = self.k
        kw: dict = {"bootstrap_servers": self.bootstrap, "client_id": k.client_id,
                    "security_protocol": k.security_protocol}
        if k.sasl_mechanism:
            kw["sasl_mechanism"] = k.sasl_mechanism
            kw["sasl_plain_username"] = k.sasl_username or os.environ.get("DETECTOR_KAFKA_SASL_USERNAME")
            kw["sasl_plain_password"] = k.sasl_password or os.environ.get("DETECTOR_KAFKA_SASL_PASSWORD")
        if k.security_protocol in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=k.ssl_cafile or None)
            if k.ssl_certfile:
                ctx.load_cert_chain(k.ssl_certfile, k.ssl_keyfile or None)
            kw["ssl_context"] = ctx
        return kw

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

    async def _retry(self, what: str, op, *args):
        """Run a broker operation until it succeeds or the sidecar stops; backoff with jitter."""
        delay = 0.5
        while True:
            try:
                return await asyncio.wait_for(op(*args), self.k.op_timeout_s)
            except (KafkaError, asyncio.TimeoutError, OSError) as e:
                self.metrics.broker_errors.labels(what).inc()
                if self.stopping.is_set():
                    raise
                self.log.warning("broker operation failed, retrying", operation=what, error=repr(e),
                                 retry_in_s=round(delay, 2), bootstrap=self.bootstrap)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    # --- lifecycle ---

    async def run(self) -> int:
        t = self.p.topics
        self.log.info("starting", bootstrap=self.bootstrap, inputs=self.inputs, settings=redact(vars(self.k)))
        counts = await self._retry("ensure topics", ensure_topics, self.bootstrap,
                                   {name: self.k.partitions for name in self.inputs + [t.alerts, t.dlq, t.state]},
                                   self.k.partitions)
        self._state_partitions = counts.get(t.state, self.k.partitions)
        inputs_parts = {counts.get(name) for name in self.inputs}
        if len(inputs_parts) > 1:
            self.log.warning("input topics differ in partition count; services may not be co-partitioned",
                             partitions={n: counts.get(n) for n in self.inputs})
        self.producer = self._new_producer()
        await self._retry("producer start", self.producer.start)
        await self.sinks.start()
        self.consumer = AIOKafkaConsumer(**self._consumer_kwargs())
        self.consumer.subscribe(self.inputs, listener=_Listener(self))
        await self._retry("consumer start", self.consumer.start)
        health = None
        if self.http_port >= 0:
            health = HealthServer(self.metrics, lambda: self.started and not self.stopping.is_set(),
                                  self.k.http_host, self.http_port, pages=self.status.render)
            self.http_port = await health.start()
            self.log.info("health endpoint", url=f"http://{self.k.http_host}:{self.http_port}")
        self.started = True
        try:
            while not self.stopping.is_set():
                try:
                    batch = await self.consumer.getmany(timeout_ms=300, max_records=self.k.max_batch_records)
                except (KafkaError, IllegalStateError) as e:
                    self.metrics.broker_errors.labels("fetch").inc()
                    self.log.warning("fetch failed", error=repr(e))
                    await asyncio.sleep(1.0)
                    continue
                async with self._lock:
                    if batch:
                        await self._process(batch)
                    await self._publish_actions()
                    await self._idle_sources()
                    await self._checkpoint_due()
                self._gauges()
        finally:
            await self._shutdown(health)
        return 1 if self.failed else 0

    async def _shutdown(self, health) -> None:
        self.log.info("stopping: final checkpoint and commit")
        try:
            async with self._lock:
                for p in sorted(self.parts):
                    await self._checkpoint(p)
        except Exception as e:  # a broken broker must not keep the process from exiting
            self.log.error("final checkpoint failed; the next owner re-reads from the last one", error=repr(e))
        try:
            await self._publish_actions()
            await self._drain()
        except Exception as e:
            self.log.warning("last actions not published", error=repr(e))
        for what, op in (("consumer stop", self.consumer.stop), ("producer stop", self.producer.stop)):
            try:
                await asyncio.wait_for(op(), min(self.k.op_timeout_s, 5.0))
            except Exception as e:
                self.log.warning("stop timed out", operation=what, error=repr(e))
        await self._publish_actions()
        await self.sinks.close(5.0)
        if health is not None:
            await health.stop()
        self.log.info("stopped", sinks=self.sinks.stats())

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
                    core = await asyncio.to_thread(Core.restore, self.p, ck.state)
                    st = PartitionState(core, dict(ck.offsets), last_checkpoint=now)
                    for topic, offset in ck.offsets.items():
                        tp = TopicPartition(topic, p)
                        if tp in self.consumer.assignment():
                            self.consumer.seek(tp, offset)
                    self.log.info("partition restored", partition=p, offsets=ck.offsets, state_bytes=len(ck.state))
                else:
                    st = PartitionState(Core(self.p), last_checkpoint=now)
                    self.log.info("partition started cold", partition=p)
                # Until an input topic delivers (or stays silent with nothing to read for
                # source_idle_s) it holds the watermark back: at start the fetcher may
                # serve one topic far ahead of the others.
                for topic in self.watermark_inputs:
                    st.core.windows.max_ts.setdefault(topic, float("-inf"))
                    st.last_seen.setdefault(topic, now)
                self.parts[p] = st
                self.status.attach(p, st.core)
            self.metrics.partitions.set(len(self.parts))

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
                if topic not in wm and (hw is None or hw > await self.consumer.position(tp)):
                    wm[topic] = float("-inf")
                    st.last_seen[topic] = time.monotonic()

    async def _process(self, batch: dict) -> None:
        now = time.monotonic()
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
            results = self._run_partition(st.core, work)
            await asyncio.sleep(0)  # let the heartbeat and the fetcher run between partitions
            for tp, (decoded, records) in zip(tps, results):
                msgs = batch[tp]
                for r in decoded.rejected:
                    m = msgs[r.pos]
                    headers = [("error", r.reason.encode()), ("source.topic", tp.topic.encode()),
                               ("source.partition", str(tp.partition).encode()),
                               ("source.offset", str(m.offset).encode())]
                    await self._send(self.p.topics.dlq, m.value if m.value is not None else b"", m.key, headers)
                    self.metrics.rejected.labels(tp.topic).inc()
                for rec in records:
                    await self._emit(rec)
                st.offsets[tp.topic] = msgs[-1].offset + 1
                st.last_seen[tp.topic] = now
                st.dirty = True
                self.metrics.events_in.labels(tp.topic).inc(len(msgs))
                self._events += len(msgs)

    def _run_partition(self, core: Core, work: list) -> list[tuple[DecodedBatch, list[Record]]]:
        return [self._run_core(core, values, source) for source, values in work]

    def _run_core(self, core: Core, values: list, source: str | None) -> tuple[DecodedBatch, list[Record]]:
        decoded = decode_batch(values, core.interner, self.p.limits.max_message_bytes)
        # the wall clock bounds event time from above (see detector.timeguard)
        return decoded, core.process(decoded, source=source, now=time.time())

    async def _publish_actions(self) -> None:
        """Rollback-hook outcomes go to the alerts topic as `action` records."""
        for outcome in self.sinks.take_actions():
            await self._send(self.p.topics.alerts, encode_action(outcome), str(outcome.get("service", "")).encode(),
                             None)
            self.log.info("action", **{k: outcome.get(k) for k in ("action", "verdict_id", "outcome", "target")})

    async def _emit(self, rec: Record) -> None:
        kind = "verdict" if isinstance(rec, Verdict) else "anomaly"
        await self._send(self.p.topics.alerts, encode(rec), rec.service.encode(), None)
        self.sinks.submit(rec)
        self.status.record(rec)
        self.metrics.records_out.labels(kind).inc()
        if kind == "verdict":
            self.log.info("verdict", service=rec.service, deploy_id=rec.deploy_id, decision=rec.decision,
                          root_cause=rec.root_cause)

    async def _send(self, topic: str, value: bytes, key: bytes | None, headers) -> None:
        msg = (topic, value, key, headers)
        fut = await self._retry("produce", self._send_once, msg)
        self._unacked.append((fut, msg))
        if len(self._unacked) >= 5_000:
            await self._drain()

    async def _send_once(self, msg):
        topic, value, key, headers = msg
        return await self.producer.send(topic, value, key=key, headers=headers)

    async def _drain(self) -> None:
        """Wait until every record produced so far is acknowledged; resend the failed ones."""
        while self._unacked:
            pending, self._unacked = self._unacked, []
            done = await asyncio.gather(*(asyncio.wait_for(f, self.k.op_timeout_s) for f, _ in pending),
                                        return_exceptions=True)
            failed = [msg for (_, msg), res in zip(pending, done) if isinstance(res, BaseException)]
            if failed:
                self.metrics.broker_errors.labels("produce ack").inc(len(failed))
                self.log.warning("records not acknowledged, producing them again", count=len(failed))
                await self._recreate_producer()
                for msg in failed:
                    fut = await self._retry("produce", self._send_once, msg)
                    self._unacked.append((fut, msg))

    async def _recreate_producer(self) -> None:
        """A producer can stay wedged after an outage; a new one starts clean."""
        try:
            await asyncio.wait_for(self.producer.stop(), 5.0)
        except Exception:
            pass
        self.producer = self._new_producer()
        await self._retry("producer start", self.producer.start)

    async def _idle_sources(self) -> None:
        """A topic silent for source_idle_s, with nothing left to read, stops holding its
        partition's watermark back."""
        now = time.monotonic()
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

    async def _checkpoint_due(self) -> None:
        now = time.monotonic()
        for p, st in sorted(self.parts.items()):
            if st.dirty and now - st.last_checkpoint >= self.k.checkpoint_interval_s:
                await self._checkpoint(p)

    async def _checkpoint(self, p: int) -> None:
        st = self.parts.get(p)
        if st is None:
            return
        await self._drain()
        state = await asyncio.to_thread(st.core.snapshot)
        size = await self._retry("checkpoint", save_checkpoint, self.producer, self.p.topics.state,
                                 self._state_partitions, self.group_id, p, dict(st.offsets), state,
                                 self.k.op_timeout_s)
        owned = self.consumer.assignment()
        commit = {TopicPartition(t, p): o for t, o in st.offsets.items() if TopicPartition(t, p) in owned}
        if commit:
            try:
                await asyncio.wait_for(self.consumer.commit(commit), self.k.op_timeout_s)
            except (CommitFailedError, IllegalStateError, KafkaError, asyncio.TimeoutError) as e:
                # The checkpoint holds the offsets too: a restart resumes from it.
                self.log.warning("commit failed after checkpoint", partition=p, error=repr(e))
        st.last_checkpoint = time.monotonic()
        st.dirty = False
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_bytes.labels(str(p)).set(size)

    def _gauges(self) -> None:
        now = time.monotonic()
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
            for topic, offset in st.offsets.items():
                hw = self.consumer.highwater(TopicPartition(topic, p))
                if hw is not None:
                    self.metrics.lag.labels(topic, label).set(max(0, hw - offset))


def run_live(args) -> int:
    """`detector run`: build the sidecar from the pipeline and the command line, run until SIGTERM."""
    configure(os.environ.get("DETECTOR_LOG_LEVEL", "info"))
    pipeline = load_pipeline(getattr(args, "pipeline", None))
    bootstrap = args.bootstrap_servers or pipeline.kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigError("no Kafka bootstrap servers: pass --bootstrap-servers HOST:PORT, set "
                          "KAFKA_BOOTSTRAP_SERVERS, or set kafka.bootstrap_servers in the pipeline file")

    async def main() -> int:
        sidecar = Sidecar(pipeline, bootstrap, group_id=getattr(args, "group_id", None),
                          http_port=getattr(args, "http_port", None),
                          alertmanager_url=getattr(args, "alertmanager_url", None))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sidecar.stopping.set)
        return await sidecar.run()

    return asyncio.run(main())
