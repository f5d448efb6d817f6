"""Services -> partitions, the way Kafka's default partitioner places keyed messages.

Input topics are keyed by service, so partition p of every input topic holds
the same services, and one core per partition sees all of a service's events.
A replay that should equal a live run over N partitions routes its events with
the same function into N cores.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from aiokafka.partitioner import murmur2

from detector.ingest.columns import DecodedBatch
from detector.ingest.interner import Interner


@lru_cache(maxsize=65_536)
def partition_of(service: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key `service`."""
    return (murmur2(service.encode("utf-8")) & 0x7FFFFFFF) % partitions


class Router:
    """Routes decoded rows to partitions by their interned service id."""

    def __init__(self, interner: Interner, partitions: int) -> None:
        self.interner = interner
        self.partitions = partitions
        self._table = np.empty(0, dtype=np.int32)

    def table(self) -> np.ndarray:
        n = len(self.interner)
        if len(self._table) < n:
            new = [partition_of(self.interner.lookup(i), self.partitions) for i in range(len(self._table), n)]
            self._table = np.concatenate([self._table, np.asarray(new, dtype=np.int32)])
        return self._table

    def split(self, batch: DecodedBatch) -> list[DecodedBatch]:
        return split_batch(batch, self.partitions, self.table() if self.partitions > 1 else None)


def split_batch(batch: DecodedBatch, partitions: int, table: np.ndarray | None) -> list[DecodedBatch]:
    """One batch per partition; rows keep their order and their `pos`.
    `table` maps interned service id -> partition (see `Router`)."""
    if partitions == 1:
        return [batch]
    out = [DecodedBatch() for _ in range(partitions)]
    for name in ("requests", "logs", "metrics"):
        cols = getattr(batch, name)
        if not len(cols):
            continue
        part = table[cols.service]
        for p in np.unique(part).tolist():
            setattr(out[p], name, cols.take(np.flatnonzero(part == p)))
    for name in ("deploys", "checks", "incidents"):
        for e in getattr(batch, name):
            getattr(out[partition_of(e.service, partitions)], name).append(e)
    out[0].rejected = batch.rejected
    out[0].deferred = batch.deferred
    return out
