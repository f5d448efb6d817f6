"""Deploys and incidents of a history, and which deploy each incident belongs to.

Only `deploy` and `incident` events are decoded here (through the contract's
decoder, so the same events are accepted as in a replay). An incident without
`deploy_id` is matched to the deploy of its service most recently started
before it opened, if that deploy started at most `match_window_s` earlier.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from pathlib import Path

from detector.ingest.columns import DeployEvent, IncidentEvent
from detector.ingest.contract import decode_batch
from detector.errors import UsageError
from detector.ingest.interner import Interner
from detector.tune.args import DEFAULT_MATCH_WINDOW_S

_CHUNK = 8192


@dataclass
class History:
    deploys: list[DeployEvent]                       # started deploys, by start time
    incidents: list[IncidentEvent]                   # one per incident_id, its latest state, by open time
    deploy_of: dict[str, str] = field(default_factory=dict)   # incident_id -> deploy_id
    unmatched: list[IncidentEvent] = field(default_factory=list)
    first_ts: float = 0.0
    last_ts: float = 0.0

    def incidents_of(self, deploy_id: str) -> list[IncidentEvent]:
        return [i for i in self.incidents if self.deploy_of.get(i.incident_id) == deploy_id]


def _scan(path: str, strict: bool = False) -> tuple[list[DeployEvent], list[IncidentEvent], float, float]:
    """The deploy and incident events of one JSONL file. Other lines are skipped unparsed, and
    bad ones are left to the replay's dead letters; with `strict` (an incident file, kept by
    hand) every line is decoded and the first bad one is an error naming its line."""
    deploys: list[DeployEvent] = []
    incidents: list[IncidentEvent] = []
    interner = Interner()
    lo, hi = float("inf"), float("-inf")
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        lines: list[bytes] = []
        numbers: list[int] = []
        ends: list[bytes] = []  # the first and the last line: the history's span (files are in arrival order)
        for no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if not ends:
                ends.append(line.rstrip(b"\r\n"))
            last = line
            if strict or b'"deploy"' in line or b'"incident"' in line:
                lines.append(line.rstrip(b"\r\n"))
                numbers.append(no)
            if len(lines) >= _CHUNK:
                lo, hi = _decode(path, lines, numbers, strict, interner, deploys, incidents, lo, hi)
                lines, numbers = [], []
        if lines:
            lo, hi = _decode(path, lines, numbers, strict, interner, deploys, incidents, lo, hi)
        if ends:
            span = _times(decode_batch([ends[0], last.rstrip(b"\r\n")], interner))
            lo, hi = min([lo, *span]), max([hi, *span])
    return deploys, incidents, lo, hi


def _times(batch) -> list[float]:
    ts = [float(t) for c in (batch.requests, batch.logs, batch.metrics) if len(c) for t in c.ts]
    return ts + [e.ts for e in [*batch.deploys, *batch.checks, *batch.incidents]]


def _decode(path, lines, numbers, strict, interner, deploys, incidents, lo, hi):
    batch = decode_batch(lines, interner)
    if strict and batch.rejected:
        bad = min(batch.rejected, key=lambda r: r.pos)
        raise UsageError(f"{path} line {numbers[bad.pos]}: {bad.reason}")
    deploys.extend(batch.deploys)
    incidents.extend(batch.incidents)
    for e in [*batch.deploys, *batch.incidents]:
        lo, hi = min(lo, e.ts), max(hi, e.ts)
    return lo, hi


def load_history(inputs: list[str], incident_files: list[str] = (), match_window_s: float = DEFAULT_MATCH_WINDOW_S
                 ) -> History:
    if match_window_s <= 0:
        raise UsageError(f"--match-window-s {match_window_s:g}: must be a number of seconds > 0")
    deploys: list[DeployEvent] = []
    raw: list[IncidentEvent] = []
    lo, hi = float("inf"), float("-inf")
    for path, strict in [*((p, False) for p in inputs), *((p, True) for p in incident_files)]:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
        d, i, a, b = _scan(path, strict)
        deploys.extend(d)
        raw.extend(i)
        lo, hi = min(lo, a), max(hi, b)
    started: dict[str, DeployEvent] = {}
    for d in sorted(deploys, key=lambda d: (d.ts, d.pos)):
        if d.phase == "started" and d.deploy_id not in started:
            started[d.deploy_id] = d
    incidents = merge_incidents(raw)
    h = History(deploys=sorted(started.values(), key=lambda d: d.ts), incidents=incidents,
                first_ts=lo if lo < hi else 0.0, last_ts=hi if lo < hi else 0.0)
    match(h, match_window_s)
    return h


def merge_incidents(events: list[IncidentEvent]) -> list[IncidentEvent]:
    """One incident per id: a later event updates the earlier one; a `resolved` event
    without `resolved_ts` resolves it at its own time; the opening time is kept."""
    by_id: dict[str, IncidentEvent] = {}
    for e in sorted(events, key=lambda e: e.ts):
        old = by_id.get(e.incident_id)
        if e.status == "resolved" and e.resolved_ts is None:
            e = replace(e, resolved_ts=e.ts)
        if old is None:
            by_id[e.incident_id] = e
            continue
        by_id[e.incident_id] = replace(
            old, status=e.status, severity=e.severity or old.severity, title=e.title or old.title,
            deploy_id=e.deploy_id or old.deploy_id, root_cause=e.root_cause or old.root_cause,
            resolved_ts=e.resolved_ts if e.resolved_ts is not None else old.resolved_ts)
    return sorted(by_id.values(), key=lambda e: e.ts)


def match(h: History, window_s: float) -> None:
    ids = {d.deploy_id for d in h.deploys}
    by_service = deploys_by_service(h.deploys)
    for inc in h.incidents:
        dep = match_incident(inc, ids, by_service, window_s)
        if dep is None:
            h.unmatched.append(inc)
        else:
            h.deploy_of[inc.incident_id] = dep


def deploys_by_service(deploys) -> dict[str, tuple[list[float], list[str]]]:
    """service -> (start times, deploy ids), by start time: the index `match_incident` searches."""
    out: dict[str, tuple[list[float], list[str]]] = {}
    for d in sorted(deploys, key=lambda d: d.ts):
        ts, ids = out.setdefault(d.service, ([], []))
        ts.append(d.ts)
        ids.append(d.deploy_id)
    return out


def match_incident(inc: IncidentEvent, ids, by_service: dict[str, tuple[list[float], list[str]]],
                   window_s: float) -> str | None:
    """The deploy an incident belongs to: its own `deploy_id` when that deploy is known (in `ids`),
    else its service's deploy most recently started at or before it opened, at most `window_s`
    earlier; None when neither. `detector tune` and the live rule counters both decide with this."""
    if inc.deploy_id:
        return inc.deploy_id if inc.deploy_id in ids else None
    ts, dep_ids = by_service.get(inc.service, ((), ()))
    i = bisect.bisect_right(ts, inc.ts)
    if i and inc.ts - ts[i - 1] <= window_s:
        return dep_ids[i - 1]
    return None
