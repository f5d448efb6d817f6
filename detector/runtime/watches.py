"""What the sidecar tells the operator beside its records (a mixin of `Sidecar`).

Warnings once per service (a service split across partitions, off Kafka's
default partitioner, over the transaction-name cap) and the gauges of
/metrics refreshed after every loop turn.
"""

from __future__ import annotations

import time

import numpy as np
from aiokafka import TopicPartition

from detector.core import Core
from detector.ingest.columns import DecodedBatch
from detector.ingest.partitioning import partition_of
from detector.runtime.partitions import PartitionState


class Watches:
    """Operator warnings and gauges; the state they read lives on `Sidecar`."""

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
