"""`detector report`: events and alerts in, a folder of self-contained HTML pages out.

One pass over the events through the same core a replay uses (decode,
windows, log templates, seasonal baselines, judge), with a `Recorder` taking
each closed window's summary as the core closes it. Deploy events are taken
from the decoded batches; `check` events (smoke tests), which the core does
not read, are picked out of the lines the decoder set aside. The alerts file
(a replay's `--output`, or the alerts topic dumped to JSONL) gives verdicts,
anomalies and root-cause completions. Then every page is drawn from the
summaries; no event is read twice.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from detector.config import Pipeline
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.errors import UsageError
from detector.ingest.interner import Interner
from detector.outfiles import check_input
from detector.replay import CHUNK_LINES, _chunks
from detector.report import store
from detector.report.model import DeployView, from_deploy_event, join
from detector.report.pages import deploy_page, fmt_ts, index_page, page_file
from detector.report.summaries import Recorder, Summaries


@dataclass
class ReportResult:
    deploys: int
    pages: int
    events: int
    windows: int
    summarise_s: float
    render_s: float
    out_dir: Path
    reused: bool = False  # the summaries came from --summaries, no pass over the events


@dataclass
class History:
    summaries: Summaries
    deploys: list[DeployView]
    checks: list[dict]
    events: int


def summarise(path: str | Path, pipeline: Pipeline) -> History:
    """The single pass over the events: window summaries, deploy events and checks."""
    interner = Interner(max_size=pipeline.limits.max_interned_strings)
    core = Core(pipeline, interner=interner)
    summaries = Summaries(pipeline.windows.width_s)
    recorder = Recorder.attach(core, summaries)
    deploys: dict[str, DeployView] = {}
    checks: list[dict] = []
    events = 0
    source = str(path)
    with open(path, "rb") as fh:
        for chunk in _chunks(fh, CHUNK_LINES):
            if not chunk.lines:
                continue
            batch = decode_batch(chunk.lines, interner, pipeline.limits.max_message_bytes)
            events += len(chunk.lines)
            for ev in batch.deploys:
                if ev.phase == "started":
                    deploys.setdefault(ev.deploy_id, from_deploy_event(ev))
            # Smoke checks: decoded ones (`batch.checks`, where the decoder reads them) or, where
            # it does not, lines it set aside as an unknown type.
            checks.extend(_check_dict(c) for c in getattr(batch, "checks", ()))
            for r in batch.rejected:
                check = _check(chunk.lines[r.pos])
                if check is not None:
                    checks.append(check)
            core.process(batch, source=source)
    core.finish()
    recorder.refresh_templates()
    for dep_id, ev in recorder.deploys.items():
        deploys.setdefault(dep_id, from_deploy_event(ev))
    return History(summaries, list(deploys.values()), checks, events)


def _check_dict(c) -> dict:
    d = {k: v for k, v in dataclasses.asdict(c).items() if k != "pos"}
    return {"type": "check", **d}


def _check(line: bytes) -> dict | None:
    """A `check` event (the decoder does not take them), or None for any other set-aside line."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(doc, dict) and doc.get("type") == "check" and isinstance(doc.get("service"), str)
            and isinstance(doc.get("name"), str) and isinstance(doc.get("passed"), bool)):
        return None
    try:
        doc["ts"] = _ts(doc["ts"])
    except (KeyError, TypeError, ValueError):
        return None
    return doc


def _ts(v) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    from datetime import datetime

    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def read_alerts(path: str | Path) -> list[dict]:
    out = []
    with open(path, "rb") as fh:
        for no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise UsageError(f"--alerts {path}: line {no} is not JSON ({e})") from None
            if isinstance(rec, dict) and rec.get("type") in ("anomaly", "verdict", "root_cause"):
                out.append(rec)
    return out


def write_report(history: History, records: list[dict], pipeline: Pipeline, out_dir: str | Path,
                 source: str = "") -> int:
    """Write index.html and deploys/<id>.html; returns the number of pages."""
    out = Path(out_dir)
    (out / "deploys").mkdir(parents=True, exist_ok=True)
    views, shared = join(history.deploys, records, history.checks)
    s = history.summaries
    span = f"{fmt_ts(s.first_start)} to {fmt_ts(s.last_end)}" if s.first_start is not None else "no windows"
    subtitle = (f"{len(views)} deploys, {history.events:,} events{' from ' + source if source else ''}; "
                f"event time {span}.")
    (out / "index.html").write_text(index_page(views, shared, s, pipeline, "Deploys and verdicts", subtitle),
                                    encoding="utf-8")
    for d in views:
        (out / "deploys" / page_file(d.deploy_id)).write_text(deploy_page(d, s, pipeline), encoding="utf-8")
    return 1 + len(views)


def run_report(events: str, alerts: str, out_dir: str, pipeline: Pipeline,
               summaries_path: str | None = None) -> ReportResult:
    """`detector report`. With `summaries_path`, the pass's summaries are kept there and reused
    while the input file is unchanged (see `detector.report.store`)."""
    check_input(events)
    check_input(alerts)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    records = read_alerts(alerts)
    t0 = time.perf_counter()
    history = None
    if summaries_path:
        stamp = store.input_stamp(events)
        history = store.load(summaries_path, stamp, pipeline.windows.width_s) \
            if Path(summaries_path).exists() else None
    reused = history is not None
    if history is None:
        history = summarise(events, pipeline)
        if summaries_path:
            store.save(summaries_path, history, stamp)
    t1 = time.perf_counter()
    pages = write_report(history, records, pipeline, out_dir, source=Path(events).name)
    t2 = time.perf_counter()
    c = history.summaries.columns()
    return ReportResult(deploys=pages - 1, pages=pages, events=history.events,
                        windows=len(np.unique(c["start"])), summarise_s=t1 - t0, render_s=t2 - t1,
                        out_dir=Path(out_dir), reused=reused)
