"""A history read from Kafka: the pipeline's input topics over an event-time range, as JSONL files.

`detector tune --bootstrap-servers B --since TS --until TS` reads every
partition of the input topics (requests, logs, metrics, deploys, checks) and
of the incidents topic with assigned consumers and no consumer group: nothing
is committed, so the group of `detector run` is left alone.

Where a partition starts: `offsets_for_times(since - slack)` on the message
timestamps (the time a message was produced, which is at or after its event
time; `slack` covers producers whose clock runs ahead by up to
`limits.max_future_skew_s`). Where it ends: the position after
`seek_to_end()`, taken before reading, raised to the high watermark of the
first fetch (exact, where ListOffsets may answer short on some brokers), so
events produced while tune reads are not half taken. Events are then kept by
their own `ts` in [since, until]; incidents up to `until + match_window_s`
(an incident is opened after its deploy). A value that is not JSON or has no
readable `ts` is kept: the replay sends it to the dead letters as a file
replay would.

The events are written to `DIR/cache/` in event-time order (ties by their
bytes), one file for the inputs and one for the incidents, so tuning a topic
range and tuning the same events in a file give the same outputs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from detector.config import Pipeline
from detector.errors import UsageError
from detector.ingest.contract import BadEvent, parse_ts
from detector.runtime.clientkw import client_kwargs

POLL_MS = 300


def parse_time(flag: str, value: str) -> float:
    """`--since`/`--until`: Unix seconds or an RFC 3339 time with offset."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_ts(value)
    except BadEvent:
        raise UsageError(f"{flag} {value!r}: expected Unix seconds or an RFC 3339 time such as "
                         f"2026-11-26T06:00:00Z") from None


def event_ts(value: bytes | None) -> float | None:
    """The `ts` of one message value, None when it has none readable (a bad event)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
        return parse_ts(doc.get("ts")) if isinstance(doc, dict) else None
    except (orjson.JSONDecodeError, BadEvent):
        return None


async def read_range(kwargs: dict, topics: list[str], start_ms: int, timeout_s: float,
                     progress=None) -> dict[str, list[bytes]]:
    """Every message value of `topics` from the first produced at or after `start_ms` to the end
    as it stands now. A topic that does not exist is skipped (never created: it is not named in a
    metadata request)."""
    consumer = AIOKafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    out: dict[str, list[bytes]] = {t: [] for t in topics}
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        existing = await asyncio.wait_for(consumer.topics(), timeout_s)
        tps = [TopicPartition(t, p) for t in topics if t in existing
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await asyncio.wait_for(consumer.seek_to_end(*tps), timeout_s)
        end = {tp: await consumer.position(tp) for tp in tps}
        starts = await asyncio.wait_for(consumer.offsets_for_times({tp: max(start_ms, 0) for tp in tps}), timeout_s)
        todo = set()
        for tp in tps:
            found = starts.get(tp)
            if found is None:
                continue  # nothing produced since start_ms on this partition (as far as ListOffsets knows)
            consumer.seek(tp, found.offset)
            todo.add(tp)
        if progress is not None:
            progress.total = max(1, sum(end[tp] - starts[tp].offset for tp in todo))
        # A partition whose start equals the reported end may still hold records (a short answer):
        # every partition with a start is read until its first fetch's high watermark is reached.
        seen_hw: set[TopicPartition] = set()
        total, t0 = 0, time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while todo:
            batch = await consumer.getmany(*sorted(todo), timeout_ms=POLL_MS)
            if batch:
                deadline = time.monotonic() + timeout_s
            for tp, msgs in batch.items():
                for m in msgs:
                    if tp in seen_hw and m.offset >= end[tp]:
                        continue
                    out[tp.topic].append(m.value if m.value is not None else b"")
                total += len(msgs)
            for tp in list(todo):
                if consumer.last_poll_timestamp(tp) is None:
                    continue
                hw = consumer.highwater(tp)
                if hw is not None and tp not in seen_hw:
                    seen_hw.add(tp)
                    end[tp] = max(end[tp], hw)
                if tp in seen_hw and await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
            if progress is not None:
                progress(total, time.perf_counter() - t0)
            if time.monotonic() > deadline:
                raise UsageError(f"reading {', '.join(sorted({tp.topic for tp in todo}))} from {kwargs['bootstrap_servers']}: "
                                 f"no record for {timeout_s:g} s before the end; is the broker up?")
    finally:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    return out


def _ordered(values: list[bytes], lo: float, hi: float) -> list[bytes]:
    keep = []
    for v in values:
        ts = event_ts(v)
        if ts is None or lo <= ts <= hi:
            keep.append((ts if ts is not None else float("-inf"), v))
    keep.sort()
    return [v for _, v in keep]


def fetch_history(pipeline: Pipeline, bootstrap: str, since: float, until: float, cache_dir: Path,
                  match_window_s: float, quiet: bool = False) -> tuple[Path, Path]:
    """Write the range's input events and incidents to `cache_dir`; returns (events file, incidents file)."""
    if until <= since:
        raise UsageError(f"--until {until:g} must be after --since {since:g}")
    t = pipeline.topics
    inputs = list(dict.fromkeys([t.requests, t.logs, t.metrics, t.deploys, t.checks]))
    topics = inputs + ([t.incidents] if t.incidents not in inputs else [])
    slack_s = pipeline.limits.max_future_skew_s
    from detector.tune.outcomes import Bar

    bar = Bar("read topics", 0, enabled=None if not quiet else False)
    t0 = time.perf_counter()
    try:
        got = asyncio.run(read_range(client_kwargs(pipeline.kafka, bootstrap), topics,
                                     int((since - slack_s) * 1000), pipeline.kafka.op_timeout_s * 3, bar))
    except (KafkaError, OSError, asyncio.TimeoutError) as e:
        raise UsageError(f"--bootstrap-servers {bootstrap}: cannot read the topics ({type(e).__name__}: {e}); "
                         f"check the address and that the broker is up") from None
    bar.done()
    lines = _ordered([v for topic in inputs for v in got[topic]], since, until)
    incidents = _ordered(got[t.incidents], since, until + match_window_s) if t.incidents not in inputs else []
    cache_dir.mkdir(parents=True, exist_ok=True)
    ev_path, inc_path = cache_dir / "history-events.jsonl", cache_dir / "history-incidents.jsonl"
    for path, rows in ((ev_path, lines), (inc_path, incidents)):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(v.replace(b"\n", b" ") + b"\n" for v in rows))
        tmp.replace(path)
    if not quiet:
        print(f"read {sum(len(v) for v in got.values()):,} records from {len(topics)} topics in "
              f"{time.perf_counter() - t0:.1f} s: {len(lines):,} events and {len(incidents):,} incident events "
              f"in the range", file=sys.stderr)
    return ev_path, inc_path
