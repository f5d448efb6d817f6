"""File driver: JSONL events in, anomaly and verdict JSONL out, at full speed.

Each input file is one source with its own watermark, read in chunks. When
there are several, the next chunk always comes from the source that is
furthest behind in event time, so no source's events arrive after the others
closed their windows. Same input, same output, byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import orjson

from detector.config import Pipeline
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.errors import UsageError
from detector.fleet import summary as fleet_summary
from detector.ingest.interner import Interner
from detector.outfiles import atomic_output, check_input, check_output
from detector.ingest.partitioning import Router
from detector.ingest.timeguard import Recent, screen
from detector.records import Record, encode
from detector.sinks import build_sinks

CHUNK_LINES = 8192


@dataclass
class ReplayResult:
    events: int
    rejected: int
    late: int
    skipped: int
    records: int
    anomalies: int
    verdicts: int
    seconds: float


@dataclass
class Chunk:
    """Up to `CHUNK_LINES` non-blank lines of one input and their 1-based line numbers."""

    lines: list[bytes]
    numbers: list[int]
    skipped: int  # blank or whitespace-only lines passed over before and within this chunk


def _chunks(fh: BinaryIO, size: int) -> Iterator[Chunk]:
    """Lines in chunks. Every line is numbered; blank ones are skipped but counted,
    and a UTF-8 byte-order mark at the start of the file is removed."""
    lines: list[bytes] = []
    numbers: list[int] = []
    skipped = 0
    for no, line in enumerate(fh, start=1):
        if no == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        line = line.rstrip(b"\r\n")
        if not line.strip():
            skipped += 1
            continue
        lines.append(line)
        numbers.append(no)
        if len(lines) >= size:
            yield Chunk(lines, numbers, skipped)
            lines, numbers, skipped = [], [], 0
    if lines or skipped:
        yield Chunk(lines, numbers, skipped)


def replay(
    inputs: Iterable[str | Path],
    pipeline: Pipeline,
    emit: Callable[[Record], None],
    rejected: Callable[[str, int, bytes, str], None] | None = None,  # (input, 1-based line, bytes, reason)
    progress: Callable[[int, float], None] | None = None,
    partitions: int = 1,
    save_baselines: str | Path | None = None,
    scores: Callable[[dict], None] | None = None,
    fleet_messages: Callable[[bytes], None] | None = None,
) -> ReplayResult:
    """Feed every input through one core per partition; `emit` gets each record in order.

    With `partitions` = N, services are routed to N cores as Kafka's default
    partitioner routes them to N partitions, so the output equals a live run
    over topics with N partitions. Within one batch, records are emitted
    partition by partition. `scores`, when given, gets one row per metric
    series-window with its anomaly score (`MetricWatch.take_scores`). With `[fleet]` on, every
    partition's window summaries go to every core through their wire encoding, as the fleet
    topic carries them; `fleet_messages`, when given, gets each encoded summary.
    """
    t0 = time.perf_counter()
    interner = Interner(max_size=pipeline.limits.max_interned_strings)
    cores = [Core(pipeline, interner=interner, partition=p, partitions=partitions) for p in range(partitions)]
    fleet = pipeline.fleet.enabled
    for c in cores:
        c.metricwatch.collect_scores = scores is not None
    router = Router(interner, partitions)
    paths = [str(p) for p in inputs]
    for c in cores:
        for p in paths:
            # An input not read yet holds the watermark back, as an input topic with data
            # waiting does live: else the first file's chunk closes windows before the
            # second file (its deploys) is read at all.
            c.windows.max_ts[p] = float("-inf")
    handles = [open(p, "rb") for p in paths]
    try:
        readers = [_chunks(h, CHUNK_LINES) for h in handles]
        ahead = [next(r, None) for r in readers]  # each input's next chunk: whether more follows
        # Lines the time guard left for the next chunk of their input (an event far ahead that
        # only later events can confirm), with their line numbers: judged as if read with it.
        carry: list[tuple[list[bytes], list[int]]] = [([], []) for _ in paths]
        # Each input's last accepted events: the time guard measures a jump in the steps of the
        # events before it, in this chunk or the one before, whatever the chunking.
        recent = [Recent() for _ in paths]
        behind = [float("-inf")] * len(paths)
        live = list(range(len(paths)))
        n_events = n_records = n_skipped = n_late = 0
        while live:
            i = min(live, key=lambda j: (behind[j], j))
            chunk = ahead[i]
            if chunk is None:
                live.remove(i)
                if live:
                    for c in cores:
                        c.windows.max_ts.pop(paths[i], None)
                continue
            ahead[i] = next(readers[i], None)
            n_skipped += chunk.skipped
            n_events += len(chunk.lines)
            lines, numbers = carry[i][0] + chunk.lines, carry[i][1] + chunk.numbers
            carry[i] = ([], [])
            if not lines:
                continue
            batch = decode_batch(lines, interner, pipeline.limits.max_message_bytes)
            more = ahead[i] is not None
            # The time guard judges the input's chunk whole, before the split: every partition's
            # events confirm or contradict a jump, as with one partition.
            reached = max((c.windows.max_ts.get(paths[i], float("-inf")) for c in cores), default=None)
            n_late += screen(batch, reached, pipeline.limits.max_future_skew_s, more=more, recent=recent[i],
                             keys=np.asarray(numbers, dtype=np.int64))
            parts = router.split(batch)
            refused = []  # parts[0].rejected: the decoder's and the time guard's refusals
            for c, part in zip(cores, parts):
                for rec in c.process(part, source=paths[i], close=not fleet, screened=True):
                    emit(rec)
                    n_records += 1
                if scores is not None and not fleet:
                    for row in c.metricwatch.take_scores():
                        scores(row)
                refused.extend(part.rejected)
            if fleet:
                # --- fleet view: every core closes the windows the source's progress allows
                # (the same for any partition count), then the summaries go round as the
                # fleet topic would deliver them and each core judges what is complete.
                newest_all = [t for t in (part.max_ts() for part in parts) if t is not None]
                for c in cores:
                    if newest_all:
                        c.windows.observe(paths[i], max(newest_all))
                    for rec in c.advance():
                        emit(rec)
                        n_records += 1
                n_records += _exchange(cores, emit, fleet_messages)
                if scores is not None:
                    for c in cores:
                        for row in c.metricwatch.take_scores():
                            scores(row)
            deferred = sorted(batch.deferred)
            carry[i] = ([lines[p] for p in deferred], [numbers[p] for p in deferred])
            if rejected is not None:
                for r in sorted(refused, key=lambda r: r.pos):
                    rejected(paths[i], numbers[r.pos], lines[r.pos], r.reason)
            # how far this source got: the newest time the cores took from it
            newest = [t for t in (part.max_ts() for part in parts) if t is not None]
            if newest:
                behind[i] = max(newest)
            if progress is not None:
                progress(n_events, time.perf_counter() - t0)
        # All partitions close the same last window, as a live fleet would at the same watermark.
        last = max((max(c.windows.open) for c in cores if c.windows.open), default=None)
        until = None if last is None or not fleet else (last + 1) * pipeline.windows.width_s
        for c in cores:
            for rec in c.finish(until, final=not fleet):
                emit(rec)
                n_records += 1
        if fleet:
            n_records += _exchange(cores, emit, fleet_messages)
        for c in cores:
            if fleet:
                for rec in c.finalize():
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
                c.metricwatch.save_into(c.seasonal.bank)  # the metric detectors' state travels in the file too
                c.seasonal.bank.save(path)
    finally:
        for h in handles:
            h.close()
    return ReplayResult(events=n_events, rejected=sum(c.stats.rejected for c in cores),
                        late=n_late + sum(c.late_events for c in cores), skipped=n_skipped, records=n_records,
                        anomalies=sum(c.stats.anomalies for c in cores), verdicts=sum(c.stats.verdicts for c in cores),
                        seconds=time.perf_counter() - t0)


def _exchange(cores: list[Core], emit: Callable[[Record], None],
              sent: Callable[[bytes], None] | None = None) -> int:
    """Deliver every core's new fleet summaries to every core (the fleet topic, read by all),
    then let each judge the windows now complete; until nothing new is written."""
    n = 0
    while True:
        written = [fleet_summary.encode(s) for c in cores for s in c.take_fleet()]
        if not written:
            return n
        for data in written:
            if sent is not None:
                sent(data)
            s = fleet_summary.decode(data)
            for c in cores:
                c.fleet.add(s)
        for c in cores:
            for rec in c.judge_ready():
                emit(rec)
                n += 1


def run_replay(inputs: list[str], output: str, pipeline: Pipeline, dlq: str | None = None,
               quiet: bool = False, partitions: int = 1, alertmanager_url: str | None = None,
               save_baselines: str | None = None, scores: str | None = None) -> ReplayResult:
    """`detector replay`: write records to `output` (JSONL), dead letters to `dlq`, every metric
    series-window's score to `scores` (JSONL), and to the pipeline's sinks when any is configured
    (a replay never runs a rollback: the hook is a dry run).

    Raises `UsageError` before anything is written when an input or output is unusable;
    outputs are replaced only when the replay succeeds."""
    check_arguments(inputs, output, dlq, partitions, save_baselines, scores)
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


def check_arguments(inputs: list[str], output: str, dlq: str | None, partitions: int,
                    save_baselines: str | None, scores: str | None = None) -> None:
    if partitions < 1:
        raise UsageError(f"--partitions {partitions}: must be a whole number >= 1")
    for path in inputs:
        check_input(path)
    outs = [("--output", output)] + ([("--dlq", dlq)] if dlq else []) + \
        ([("--save-baselines", save_baselines)] if save_baselines else []) + \
        ([("--scores", scores)] if scores else [])
    for what, path in outs:
        check_output(path, what, inputs)
    seen: dict[Path, str] = {}
    for what, path in outs:
        other = seen.setdefault(Path(path).resolve(), what)
        if other != what:
            raise UsageError(f"{what} {path}: is the same file as {other}; give them different names")


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

    with ExitStack() as stack:
        out = stack.enter_context(atomic_output(output))
        dlq_fh = stack.enter_context(atomic_output(dlq)) if dlq else None
        scores_fh = stack.enter_context(atomic_output(scores)) if scores else None

        def emit(rec: Record) -> None:
            out.write(encode(rec) + b"\n")
            if also is not None:
                also(rec)

        def reject(path: str, line_no: int, value: bytes, reason: str) -> None:
            if dlq_fh is not None:
                dlq_fh.write(orjson.dumps(dead_letter(path, line_no, value, reason)) + b"\n")

        def score_row(row: dict) -> None:
            scores_fh.write(orjson.dumps(row) + b"\n")

        result = replay(inputs, pipeline, emit, reject, progress, partitions=partitions,
                        save_baselines=save_baselines, scores=score_row if scores_fh else None)
    if show:
        sys.stderr.write("\n")
    return result


def dead_letter(path: str, line_no: int, value: bytes, reason: str) -> dict:
    """One `--dlq` record: the 1-based line, the reason, and the original bytes exactly
    (`value` when they are UTF-8, else `value_b64`)."""
    rec: dict = {"line": line_no, "error": reason, "source": path}
    try:
        rec["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        rec["value_b64"] = base64.b64encode(value).decode("ascii")
    return rec
