"""Co-partitioning check: every service's events must arrive on one partition number.

The sidecar relies on partition p of every input topic holding the same
services. Producers can break that without an error: librdkafka (and so
confluent-kafka, kcat, most non-JVM clients) hashes keys with CRC32 by default
(`partitioner=consistent_random`), Java and aiokafka with murmur2. If logs come
from one and requests from the other, a service's logs and requests land on
different partitions and are judged apart. This module only watches: it
remembers where each service was first seen and reports a service seen on a
second partition, once. It also says which partition Kafka's default
partitioner (murmur2) gives the service, which tells which producer is off.

One sidecar sees only its own partitions, so a service split between two
sidecars shows on neither as "two partitions". What each can see is a service
on a partition other than murmur2's: `off_default` reports those, once per
(service, topic). It is also what makes a replay with `--partitions N` differ
from the live run.

>>> w = CoPartitionWatch()
>>> w.observe("requests", 1, ["payments"], partitions=4)
[]
>>> [s.service for s in w.observe("logs", 3, ["payments"], partitions=4)]
['payments']
>>> w.observe("logs", 3, ["payments"], partitions=4)  # reported once
[]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from detector.ingest.partitioning import partition_of


@dataclass(frozen=True)
class SplitService:
    service: str
    seen: tuple[tuple[str, int], ...]  # (topic, partition) pairs, sorted
    murmur2_partition: int  # where Kafka's default partitioner puts the key

    def describe(self) -> str:
        places = ", ".join(f"{t}[{p}]" for t, p in self.seen)
        off = sorted({t for t, p in self.seen if p != self.murmur2_partition})
        return (f"service {self.service!r} arrives on more than one partition: {places}; Kafka's default "
                f"partitioner (murmur2) puts it on partition {self.murmur2_partition}, so the producer of "
                f"{', '.join(off) or 'one of these topics'} hashes keys differently (librdkafka/confluent-kafka: "
                f"set partitioner=murmur2_random)")


class CoPartitionWatch:
    def __init__(self, max_services: int = 100_000) -> None:
        self.max_services = max_services  # bounded memory against a flood of service names
        self._home: dict[str, tuple[int, set[str]]] = {}  # service -> (first partition, topics seen there)
        self._split: dict[str, dict[tuple[str, int], None]] = {}
        self._off: set[tuple[str, str]] = set()  # (service, topic) seen off murmur2's partition
        self.untracked = 0  # services not remembered because of max_services

    @property
    def split(self) -> list[str]:
        return sorted(self._split)

    @property
    def off_services(self) -> int:
        return len({s for s, _ in self._off})

    def off_default(self, topic: str, partition: int, services: Iterable[str], partitions: int) -> list[str]:
        """Services newly seen on `topic`[`partition`] although murmur2 of their key gives another partition.

        >>> CoPartitionWatch().off_default("logs", 1, ["payments"], partitions=4)  # murmur2 gives 0
        ['payments']
        """
        found = []
        for service in services:
            if (service, topic) in self._off or partition_of(service, partitions) == partition:
                continue
            if len(self._off) < self.max_services:
                self._off.add((service, topic))
                found.append(service)
        return found

    def observe(self, topic: str, partition: int, services: Iterable[str], partitions: int) -> list[SplitService]:
        """Record that `services` arrived on `topic`[`partition`]; return services newly seen split."""
        found = []
        for service in services:
            home = self._home.get(service)
            if home is None:
                if len(self._home) >= self.max_services:
                    self.untracked += 1
                    continue
                self._home[service] = (partition, {topic})
                continue
            if home[0] == partition:
                home[1].add(topic)
                if service in self._split:
                    self._split[service][(topic, partition)] = None
                continue
            places = self._split.get(service)
            if places is None:
                places = self._split[service] = {(t, home[0]): None for t in sorted(home[1])}
                places[(topic, partition)] = None
                found.append(SplitService(service, tuple(sorted(places)), partition_of(service, partitions)))
            else:
                places[(topic, partition)] = None
        return found
