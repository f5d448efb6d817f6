"""`detector templates`: the log templates of a JSONL input, one CSV row per line.

`mine_file(path, pipeline)` reads a file of contract events (any mix, one JSON
object per line), decodes it with the detector's decoder and mines every
`log` event with the detector's `LogTemplates`, built from the pipeline's
settings as the core builds it. Template ids are per service and the miner of
a service sees its lines in input order, so the ids are the ones a replay or
a live run over the same events reports. (One difference: the core does not
mine a line whose window has already closed, a line more than the window
lateness older than the newest; here every line is mined.)

`write_csv` writes `line,service,template_id,template`: `line` is the 1-based
line number in the input (blank and non-log lines are counted, not written),
`template_id` and `template` are the template's id and text at the end of the
input (a template that generalises later, "user <*> logged out", names all its
lines with its final text and id). `new_since(result, ts)` lists the
templates first seen after `ts` with their line counts: what a release added.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from typing import IO, Iterator

import numpy as np

from detector.config import Pipeline
from detector.ingest.contract import DEFAULT_MAX_BYTES, BadEvent, decode_batch, parse_ts
from detector.ingest.interner import Interner
from detector.logs.registry import TemplateInfo
from detector.logs.settings import LogSettings
from detector.logs.templates import LogTemplates

BATCH_LINES = 4096


def settings_for(pipeline: Pipeline) -> LogSettings:
    """The log settings the core builds from `pipeline` (see `Core.__init__`)."""
    ver = pipeline.verification
    return LogSettings(
        window_s=pipeline.windows.width_s,
        history_s=ver.baseline_s + ver.period_s + 10 * pipeline.windows.width_s,
        baseline_s=ver.baseline_s,
        max_templates_per_service=pipeline.logs.max_templates_per_service,
        max_message_chars=pipeline.logs.max_message_chars)


@dataclass
class MinedFile:
    templates: LogTemplates
    lines: np.ndarray  # 1-based input line of every log row, in input order
    index: np.ndarray  # template index of every log row
    input_lines: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) of bad input lines


def _batches(fh: IO[bytes], seen: list[int]) -> Iterator[tuple[list[bytes], list[int]]]:
    """Non-blank lines with their 1-based numbers, in batches; `seen[0]` counts every line read."""
    values: list[bytes] = []
    numbers: list[int] = []
    for no, raw in enumerate(fh, 1):
        seen[0] = no
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        values.append(line)
        numbers.append(no)
        if len(values) >= BATCH_LINES:
            yield values, numbers
            values, numbers = [], []
    if values:
        yield values, numbers


def mine_file(path: str, pipeline: Pipeline) -> MinedFile:
    """Mine the log events of the JSONL file at `path` exactly as the detector's core does."""
    interner = Interner(max_size=pipeline.limits.max_interned_strings)
    templates = LogTemplates(settings_for(pipeline))
    lines: list[np.ndarray] = []
    index: list[np.ndarray] = []
    rejected: list[tuple[int, str]] = []
    seen = [0]
    with open(path, "rb") as fh:
        for values, numbers in _batches(fh, seen):
            batch = decode_batch(values, interner, DEFAULT_MAX_BYTES)
            rejected.extend((numbers[r.pos], r.reason) for r in batch.rejected)
            logs = batch.logs
            if len(logs):
                order = np.argsort(logs.pos, kind="stable")
                if (order != np.arange(len(order))).any():
                    logs = logs.take(order)
                index.append(templates.add_batch(logs, interner))
                lines.append(np.asarray(numbers, dtype=np.int64)[logs.pos])
    return MinedFile(templates=templates,
                     lines=np.concatenate(lines) if lines else np.empty(0, np.int64),
                     index=np.concatenate(index) if index else np.empty(0, np.int32),
                     input_lines=seen[0], rejected=rejected)


def write_csv(mined: MinedFile, out: IO[str]) -> int:
    """One row per log line: line, service, template_id, template. Returns the rows written."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("line", "service", "template_id", "template"))
    infos: dict[int, TemplateInfo] = {}
    for line, idx in zip(mined.lines.tolist(), mined.index.tolist()):
        info = infos.get(idx)
        if info is None:
            info = infos[idx] = mined.templates.template(idx)
        w.writerow((line, info.service, info.id, info.text))
    return len(mined.lines)


def new_since(mined: MinedFile, since_ts: float) -> list[tuple[TemplateInfo, int]]:
    """Templates first seen after `since_ts` with their line counts, oldest first.

    Templates that converged on one text (one public id) are reported once,
    from the first time any of them was seen.
    """
    counts = np.bincount(mined.index, minlength=len(mined.templates)) if len(mined.index) else \
        np.zeros(len(mined.templates), np.int64)
    by_id: dict[str, tuple[TemplateInfo, int]] = {}
    for info in mined.templates.templates():
        seen = by_id.get(info.id)
        n = int(counts[info.index])
        if seen is None:
            by_id[info.id] = (info, n)
        else:
            first = seen[0] if seen[0].first_seen_ts <= info.first_seen_ts else info
            by_id[info.id] = (first, seen[1] + n)
    out = [(info, n) for info, n in by_id.values() if n and info.first_seen_ts > since_ts]
    return sorted(out, key=lambda x: (x[0].first_seen_ts, x[0].service, x[0].id))


def print_new(rows: list[tuple[TemplateInfo, int]], since_ts: float, out: IO[str]) -> None:
    print(f"{len(rows)} template(s) first seen after {since_ts:.3f}:", file=out)
    for info, n in rows:
        versions = ",".join(info.versions) or "-"
        print(f"  {info.first_seen_ts:.3f}  {info.service}  {info.id}  {n} line(s)  versions={versions}  "
              f"{info.text}", file=out)


def parse_since(text: str) -> float:
    """--since: Unix seconds or an RFC 3339 time; ValueError with the reason otherwise."""
    try:
        return parse_ts(float(text))
    except ValueError:
        pass
    try:
        return parse_ts(text)
    except BadEvent:
        raise ValueError(f"--since {text!r} is neither Unix seconds nor an RFC 3339 time with a UTC offset "
                         "(e.g. 2026-12-03T09:00:00Z)") from None


def run_templates(input_path: str, out_path: str, pipeline: Pipeline, since: str | None = None,
                  err: IO[str] | None = None, out: IO[str] | None = None) -> int:
    """The `detector templates` command; returns its exit code."""
    err = err or sys.stderr
    out = out or sys.stdout
    try:
        since_ts = None if since is None else parse_since(since)
    except ValueError as e:
        print(f"detector templates: {e}", file=err)
        return 2
    try:
        mined = mine_file(input_path, pipeline)
    except OSError as e:
        print(f"detector templates: cannot read {input_path}: {e.strerror or e}", file=err)
        return 2
    with open(out_path, "w", newline="", encoding="utf-8") as fh:
        rows = write_csv(mined, fh)
    ids = {t.id for t in mined.templates.templates()}
    print(f"{mined.input_lines:,} input lines, {rows:,} log lines, {len(ids):,} templates -> {out_path}", file=err)
    for line, reason in mined.rejected[:5]:
        print(f"  rejected line {line}: {reason}", file=err)
    if len(mined.rejected) > 5:
        print(f"  ... and {len(mined.rejected) - 5:,} more rejected lines", file=err)
    if since_ts is not None:
        print_new(new_since(mined, since_ts), since_ts, out)
    return 0
