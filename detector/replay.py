"""File driver: JSONL events in, anomaly and verdict JSONL out, at full speed.

Each input file is one source with its own watermark, read in chunks. When
there are several, the next chunk always comes from the source that is
furthest behind in event time, so no source's events arrive after the others
closed their windows. Same input, same output, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import orjson

from detector.config import Pipeline
from detector.contract import decode_batch
from detector.core import Core
from detector.interner import Interner
from detector.partitioning import Router
from detector.records import Record, encode
from detector.sinks import build_sinks

CHUNK_LINES = 8192


@dataclass
class ReplayResult:
    events: int
    rejected: int
    late: int
    records: int
    anomalies: int
    verdicts: int
    seconds: float


def _chunks(fh: BinaryIO, lines: int) -> Iterator[list[bytes]]:
    buf: list[bytes] = []
    for line in fh:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        buf.append(line)
        if len(buf) >= lines:
            yield buf
            buf = []
    if buf:
        yield buf


def replay(
    inputs: Iterable[str | Path],
    pipeline: Pipeline,
    emit: Callable[[Record], None],
    rejected: Callable[[str, int, bytes, str], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
    partitions: int = 1,
    save_baselines: str | Path | None = None,
    scores: Callable[[dict], None] | None = None,
) -> ReplayResult:
    """Feed every input through one core per partition; `emit` gets each record in order.

    With `partitions` = N, services are routed to N cores as Kafka's default
    partitioner routes them to N partitions, so the output equals a live run
    over topics with N partitions. Within one batch, records are emitted
    partition by partition. `scores`, when given, gets one row per metric
    series-window with its anomaly score (`MetricWatch.take_scores`).
    """
    t0 = time.perf_counter()
    interner = Interner(max_size=pipeline.limits.max_interned_strings)
    cores = [Core(pipeline, interner=interner) for _ in range(partitions)]
    for c in cores:
        c.metricwatch.collect_scores = scores is not None
    router = Router(interner, partitions)
    paths = [str(p) for p in inputs]
    handles = [open(p, "rb") for p in paths]
    try:
        readers = [_chunks(h, CHUNK_LINES) for h in handles]
        position = [0] * len(paths)
        behind = [float("-inf")] * len(paths)
        live = list(range(len(paths)))
        n_events = n_records = 0
        while live:
            i = min(live, key=lambda j: (behind[j], j))
            chunk = next(readers[i], None)
            if chunk is None:
                live.remove(i)
                if live:
                    for c in cores:
                        c.windows.max_ts.pop(paths[i], None)
                continue
            batch = decode_batch(chunk, interner, pipeline.limits.max_message_bytes)
            if rejected is not None:
                for r in batch.rejected:
                    rejected(paths[i], position[i] + r.pos, chunk[r.pos], r.reason)
            position[i] += len(chunk)
            newest = batch.max_ts()  # the decoded columns already say how far this source got
            if newest is not None:
                behind[i] = newest
            n_events += len(chunk)
            for c, part in zip(cores, router.split(batch)):
                for rec in c.process(part, source=paths[i]):
                    emit(rec)
                    n_records += 1
                if scores is not None:
                    for row in c.metricwatch.take_scores():
                        scores(row)
            if progress is not None:
                progress(n_events, time.perf_counter() - t0)
        for c in cores:
            for rec in c.finish():
                emit(rec)
                n_records += 1
            if scores is not None:
                for row in c.metricwatch.take_scores():
                    scores(row)
        if save_baselines:
            # One file per partition when there are several (models/NAME-p3.npz).
            for i, c in enumerate(cores):
                path = Path(save_baselines)
                if partitions > 1:
                    path = path.with_name(f"{path.stem}-p{i}{path.suffix}")
                c.seasonal.bank.save(path)
    finally:
        for h in handles:
            h.close()
    return ReplayResult(events=n_events, rejected=sum(c.stats.rejected for c in cores),
                        late=sum(c.late_events for c in cores), records=n_records,
                        anomalies=sum(c.stats.anomalies for c in cores), verdicts=sum(c.stats.verdicts for c in cores),
                        seconds=time.perf_counter() - t0)


def run_replay(inputs: list[str], output: str, pipeline: Pipeline, dlq: str | None = None,
               quiet: bool = False, partitions: int = 1, alertmanager_url: str | None = None,
               save_baselines: str | None = None, scores: str | None = None) -> ReplayResult:
    """`detector replay`: write records to `output` (JSONL), dead letters to `dlq`, every metric
    series-window's score to `scores` (JSONL), and to the pipeline's sinks when any is configured
    (a replay never runs a rollback: the hook is a dry run)."""
    sinks_settings = dataclasses.replace(pipeline.sinks, rollback_dry_run=True)
    sinks = build_sinks(sinks_settings, alertmanager_url=alertmanager_url,
                        rollback_state_path=pipeline.sinks.rollback_state_path)
    if sinks:
        return asyncio.run(_replay_with_sinks(sinks, inputs, output, pipeline, dlq, quiet, partitions,
                                              save_baselines, scores))
    return _run_replay(inputs, output, pipeline, dlq, quiet, partitions, None, save_baselines, scores)


async def _replay_with_sinks(sinks, inputs, output, pipeline, dlq, quiet, partitions, save_baselines,
                             scores) -> ReplayResult:
    loop = asyncio.get_running_loop()
    await sinks.start()
    try:
        return await asyncio.to_thread(_run_replay, inputs, output, pipeline, dlq, quiet, partitions,
                                       lambda rec: loop.call_soon_threadsafe(sinks.submit, rec), save_baselines,
                                       scores)
    finally:
        await sinks.flush(30.0)
        await sinks.close(5.0)


def _run_replay(inputs: list[str], output: str, pipeline: Pipeline, dlq: str | None, quiet: bool, partitions: int,
                also: Callable[[Record], None] | None = None, save_baselines: str | None = None,
                scores: str | None = None) -> ReplayResult:
    show = not quiet and sys.stderr.isatty()
    last = [0.0]

    def progress(n: int, elapsed: float) -> None:
        if show and elapsed - last[0] >= 0.2:
            last[0] = elapsed
            sys.stderr.write(f"\r{n:,} events  {n / max(elapsed, 1e-9):,.0f} events/s")
            sys.stderr.flush()

    dlq_fh = open(dlq, "wb") if dlq else None
    scores_fh = open(scores, "wb") if scores else None
    try:
        with open(output, "wb") as out:
            def emit(rec: Record) -> None:
                out.write(encode(rec) + b"\n")
                if also is not None:
                    also(rec)

            def reject(path: str, line_no: int, value: bytes, reason: str) -> None:
                if dlq_fh is not None:
                    dlq_fh.write(orjson.dumps({"error": reason, "source": path, "line": line_no + 1,
                                               "value": value.decode("utf-8", "replace")}) + b"\n")

            def score_row(row: dict) -> None:
                scores_fh.write(orjson.dumps(row) + b"\n")

            result = replay(inputs, pipeline, emit, reject, progress, partitions=partitions,
                            save_baselines=save_baselines, scores=score_row if scores_fh else None)
    finally:
        if dlq_fh is not None:
            dlq_fh.close()
        if scores_fh is not None:
            scores_fh.close()
    if show:
        sys.stderr.write("\n")
    return result
