"""The sidecar's consumer hands out aiokafka's own fetched records, without a `ConsumerRecord` each.

`getmany` builds a `ConsumerRecord` (a Python dataclass, eleven fields) for
every fetched message, in `PartitionRecords._consumer_record`: about half of
aiokafka's Python work per message. The sidecar reads three fields of it,
`value`, `key` and `offset`, which the record it is built from (aiokafka's
`DefaultRecord`, or `LegacyRecord` for old message formats) has already.
`install` makes one consumer's fetcher yield those records as they are.

That is the only step replaced. Which record batches are read, CRC checks,
control batches and aborted transactions skipped, records below the fetch
offset in a compressed or re-fetched batch skipped, positions, `max_records`,
seeks, pauses and rebalances all stay aiokafka's own code: the fetcher keeps
each partition's fetched data in `Fetcher._records` (partition ->
`FetchResult`), whose `PartitionRecords` calls `self._consumer_record(tp,
record)` per message; `install` swaps that mapping for one that gives each
new `PartitionRecords` an instance-level `_consumer_record` returning the
record unchanged. Other consumers of the process are not touched.

Those are aiokafka internals (checked with 0.14). `install` first runs a
one-message probe through them and checks the mapping's type; when anything
differs it changes nothing and says why: the consumer then hands out
`ConsumerRecord`s, with the same three fields (slower, the same results).
"""

from __future__ import annotations

import collections

from aiokafka.structs import ConsumerRecord, TopicPartition


def _as_is(tp, record):
    return record


class _RawResults(collections.OrderedDict):
    """`Fetcher._records`: each `FetchResult` stored here hands out its records as fetched."""

    def __setitem__(self, tp, result) -> None:
        records = getattr(result, "_partition_records", None)
        if records is not None:  # a FetchResult (a FetchError has none)
            records._consumer_record = _as_is
        super().__setitem__(tp, result)


def probe() -> str | None:
    """None when this aiokafka's fetcher works as `install` expects, else what differs."""
    try:
        from aiokafka.consumer import fetcher
        from aiokafka.record.default_records import DefaultRecordBatchBuilder
        from aiokafka.record.memory_records import MemoryRecords

        builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1024)
        for offset, key, value in ((0, b"k0", b"v0"), (1, None, None), (2, b"k2", b"v2")):
            builder.append(offset, None, key, value, [])
        tp = TopicPartition("probe", 0)
        # fetched from offset 1: the record below it is skipped, as in a re-fetched batch
        records = fetcher.PartitionRecords(tp, MemoryRecords(bytes(builder.build())), None, 1, None, None,
                                           False, fetcher.READ_UNCOMMITTED)
        results = _RawResults()
        results[tp] = fetcher.FetchResult(tp, assignment=None, partition_records=records, backoff=0)
        got = list(results[tp]._partition_records)
    except Exception as e:  # another aiokafka: names or signatures differ
        return f"probe failed: {e!r}"
    if any(isinstance(r, ConsumerRecord) for r in got):
        return "PartitionRecords does not build its records through _consumer_record"
    seen = [(r.offset, r.key, r.value) for r in got]
    if seen != [(1, None, None), (2, b"k2", b"v2")] or records.next_fetch_offset != 3:
        return f"probe read {seen}, next offset {records.next_fetch_offset}"
    return None


def install(consumer) -> str | None:
    """Make a started consumer's `getmany` hand out fetched records as they are; None when done,
    else why not (the consumer is then left unchanged)."""
    why = probe()
    if why is not None:
        return why
    fetcher = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_records", None)
    if type(current) is not collections.OrderedDict:
        return f"the consumer's fetcher keeps its records in {type(current).__name__}, not an OrderedDict"
    raw = _RawResults()
    for tp, result in current.items():  # fetched before this call: handed out as they are, too
        raw[tp] = result
    fetcher._records = raw
    return None
