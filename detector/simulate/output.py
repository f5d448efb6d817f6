"""Where generated events go: a JSONL file or Kafka topics, fast or paced.

Both writers take the simulator's chunks (already in arrival order) and
either write them at full speed or pace them by event time: `speed=N` plays
N seconds of event time per wall-clock second. Kafka messages are keyed by
service name so that every input topic is co-partitioned by service, as the
wire contract requires.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from detector.simulate.traffic import KIND_NAMES, Chunk

if TYPE_CHECKING:
    from detector.simulate.spec import Scenario

DEFAULT_TOPICS = {"request": "requests", "log": "logs", "metric": "metrics", "deploy": "deploys", "check": "checks"}
# Wall-clock granularity of paced output: fine enough to look continuous.
PACE_SLICE_S = 0.05


@dataclass
class Counts:
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KIND_NAMES})

    def add(self, kinds: np.ndarray) -> None:
        for k, n in zip(KIND_NAMES, np.bincount(kinds, minlength=len(KIND_NAMES)).tolist()):
            self.by_kind[k] += n

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


class Pacer:
    """Maps emission times to wall-clock deadlines: `speed` event seconds per wall second."""

    def __init__(self, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (got {speed}); omit it for full speed")
        self.speed = speed
        self._event0: float | None = None
        self._wall0 = 0.0

    def slices(self, emit_ts: np.ndarray) -> Iterator[tuple[int, int, float]]:
        """(start, stop, seconds to wait before sending rows start:stop)."""
        n = len(emit_ts)
        if n == 0:
            return
        if self.speed is None:
            yield 0, n, 0.0
            return
        if self._event0 is None:
            self._event0 = float(emit_ts[0])
            self._wall0 = time.monotonic()
        step = self.speed * PACE_SLICE_S
        first, last = float(emit_ts[0]), float(emit_ts[-1])
        edges = np.searchsorted(emit_ts, np.arange(first + step, last + step, step), side="left").tolist()
        start = 0
        for stop in [*edges, n]:
            if stop <= start:
                continue
            due = self._wall0 + (float(emit_ts[start]) - self._event0) / self.speed
            yield start, stop, max(0.0, due - time.monotonic())
            start = stop


def write_jsonl(chunks: Iterable[Chunk], out: str | Path | BinaryIO, speed: float | None = None) -> Counts:
    """Write one JSON object per line; `out` is a path, '-' for stdout, or a binary file."""
    counts = Counts()
    pacer = Pacer(speed)
    own = isinstance(out, (str, Path)) and str(out) != "-"
    fh: BinaryIO = open(out, "wb") if own else (sys.stdout.buffer if str(out) == "-" else out)  # type: ignore[arg-type]
    try:
        for chunk in chunks:
            for start, stop, wait_s in pacer.slices(chunk.emit_ts):
                if wait_s > 0:
                    time.sleep(wait_s)
                vals = chunk.values[start:stop]
                fh.write(b"\n".join(vals) + b"\n")
                if speed is not None:
                    fh.flush()
            counts.add(chunk.kind)
    finally:
        if own:
            fh.close()
        else:
            fh.flush()
    return counts


async def produce_kafka(
    chunks: Iterable[Chunk],
    bootstrap_servers: str,
    service_names: list[str],
    topics: dict[str, str] | None = None,
    speed: float | None = None,
    linger_ms: int = 20,
    max_in_flight_batches: int = 64,
    create_partitions: int | None = None,
) -> Counts:
    """Send every event to its type's topic, keyed by service; returns what was sent.

    With `create_partitions`, missing topics are first created with that many
    partitions (existing ones are left as they are). Messages are appended to
    per-partition batches directly: the partition is the one the default
    (murmur2) partitioner gives the service key, so consumers see exactly
    what keyed `send()` calls would produce, at several times the speed.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    names = {**DEFAULT_TOPICS, **(topics or {})}
    topic_of = [names[k] for k in KIND_NAMES]
    keys = [s.encode() for s in service_names]
    if create_partitions is not None:
        from detector.runtime.topics import ensure_topics

        await ensure_topics(bootstrap_servers, sorted(set(topic_of)), partitions=create_partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=False,
        acks=1,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        client_id="detector-simulate",
    )
    await producer.start()
    counts = Counts()
    pacer = Pacer(speed)
    try:
        # partition[kind][service]: fixed for the run, as keys are service names.
        partition = []
        for topic in topic_of:
            parts = sorted(await producer.partitions_for(topic))
            partition.append([DefaultPartitioner()(k, parts, parts) for k in keys])
        part_table = np.asarray(partition, dtype=np.int64)
        pending: list[asyncio.Future] = []
        for chunk in chunks:
            lane = chunk.kind.astype(np.int64) * 1_000_000 + part_table[chunk.kind, chunk.service]
            for start, stop, wait_s in pacer.slices(chunk.emit_ts):
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                order = np.argsort(lane[start:stop], kind="stable") + start
                bounds = np.flatnonzero(np.diff(lane[order])) + 1
                for rows in np.split(order, bounds):
                    kind, part = divmod(int(lane[rows[0]]), 1_000_000)
                    topic = topic_of[kind]
                    batch = producer.create_batch()
                    for i in rows.tolist():
                        value, key = chunk.values[i], keys[chunk.service[i]]
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            pending.append(await producer.send_batch(batch, topic, partition=part))
                            batch = producer.create_batch()
                            batch.append(key=key, value=value, timestamp=None)
                    pending.append(await producer.send_batch(batch, topic, partition=part))
                if len(pending) >= max_in_flight_batches:
                    await asyncio.gather(*pending)
                    pending.clear()
            counts.add(chunk.kind)
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return counts


def simulate_to_file(
    scenario: Scenario,
    out: str | Path,
    truth_path: str | Path | None = None,
    speed: float | None = None,
) -> dict:
    """Generate a scenario into a JSONL file and its ground truth beside it; returns the truth."""
    from detector.simulate.traffic import Simulator
    from detector.simulate.truth import build_truth, truth_path_for, write_truth

    sim = Simulator(scenario)
    counts = write_jsonl(sim.chunks(), out, speed=speed)
    truth = build_truth(scenario, sim.timeline, counts.by_kind)
    write_truth(truth_path or truth_path_for(out), truth)
    return truth
