"""The partitions a sidecar owns: each one's `Core` and offsets, taken over, checkpointed, released.

A partition assigned to this sidecar is restored from its last checkpoint on
the state topic (or started cold) and the consumer seeks to the offsets that
checkpoint reflects; every kafka.checkpoint_interval_s, and when the
partition is revoked, its core is snapshotted with its offsets and those
offsets are committed (runtime/app.py says in which order, and why).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from detector.core import Core
from detector.runtime.checkpoints import load_checkpoints, save_checkpoint
from detector.runtime.failures import Stopped

if TYPE_CHECKING:
    from detector.runtime.app import Sidecar


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


class RebalanceListener(ConsumerRebalanceListener):
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


class Partitions:
    """Acquire, checkpoint and release partitions (a mixin of `Sidecar`, which holds the state)."""

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

    def _fleet_partitions(self) -> int:
        """The fleet view's partition count: the input topics' (1 without the fleet view)."""
        return self.fleet.partitions if self.fleet is not None else 1

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
