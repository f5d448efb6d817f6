"""What a record means to a paging system: severity, text, details, dedup key, supersession.

Shared by the Alertmanager, PagerDuty and webhook sinks so that one finding
reads the same everywhere.

Severity: an anomaly keeps its own (``critical``, ``warning``, ``info``); a
verdict maps its decision onto the four PagerDuty levels, which the other
sinks reuse: ``rollback`` -> critical, ``page`` -> error, ``ticket`` and
``inconclusive`` -> warning, ``confirmed`` and ``superseded`` -> info.

Dedup key: the record id itself (``a-...`` for an anomaly, ``v-<deploy_id>``
for a verdict; the PagerDuty and webhook sinks key an early ticket's
escalation by the verdict's id it escalates, see ``events``). Ids are deterministic, so a replay or a restart that finds the
same thing again addresses the same incident instead of opening a new one.

Supersession: a verdict is the single final word on one deploy, so it never
repeats, and silence says nothing about whether anyone dealt with it. Its
alert or incident therefore stays open until a verdict for a *later* deploy of
the same service arrives (by event time; any decision, also ``confirmed``),
or until the runtime resolves it explicitly (for example when it sees the
service deployed again). ``VerdictTracker`` holds that bookkeeping.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from detector.records import Anomaly, Record, Verdict, encode

SEVERITY_BY_DECISION = {
    "rollback": "critical",
    "page": "error",
    "ticket": "warning",
    "inconclusive": "warning",
    "confirmed": "info",
    "superseded": "info",
}
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY_CHARS = 1024  # PagerDuty truncates payload.summary at 1024 characters


def rfc3339(ts_s: float) -> str:
    """RFC 3339 UTC with milliseconds, as Alertmanager and PagerDuty read it."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def severity(record: Record) -> str:
    if isinstance(record, Verdict):
        return SEVERITY_BY_DECISION[record.decision]
    return record.severity


def dedup_key(record: Record) -> str:
    if not record.id:
        raise ValueError(f"anomaly for service {record.service!r} signal {record.signal!r} has no id; "
                         "build it with Anomaly(...).with_id() before submitting it to a sink")
    return record.id


def record_dict(record: Record) -> dict[str, Any]:
    """The record exactly as the alerts topic carries it (canonical rounding), as a dict."""
    return orjson.loads(encode(record))


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def summary(record: Record) -> str:
    """One line a person reads first."""
    if isinstance(record, Verdict):
        head = f"[{record.decision}] {record.service} {record.version} (deploy {record.deploy_id})"
        if record.reasons:
            head += f": {record.reasons[0]}"
        return _cut(head, MAX_SUMMARY_CHARS)
    where = f" on {record.endpoint}" if record.endpoint else ""
    version = f" {record.version}" if record.version else ""
    quantile = record.detail.get("quantile")
    signal = f"{record.signal} p{float(quantile) * 100:g}" if quantile is not None else record.signal
    return _cut(f"[{record.severity}] {record.service}{version} {signal}{where}: {record.observed:.4g} vs "
                f"{record.expected:.4g} expected (score {record.score:.1f})", MAX_SUMMARY_CHARS)


def is_escalation(record: Record) -> bool:
    """An anomaly escalating an early ticket verdict (detail ``escalates``: the verdict's id)."""
    return isinstance(record, Anomaly) and "escalates" in record.detail


def escalation_summary(record: Anomaly) -> str:
    """One line for an escalation: the action, the deploy, the verdict it escalates and the rule's reason."""
    d = record.detail
    version = f" {record.version}" if record.version else ""
    head = (f"[{d.get('action', '?')}] {record.service}{version} (deploy {record.deploy_id}) escalates "
            f"ticket {d['escalates']}")
    if d.get("reason"):
        head += f": {d['reason']}"
    return _cut(head, MAX_SUMMARY_CHARS)


def description(record: Record) -> str:
    """The reasons, one per line, and where the finding came from."""
    if isinstance(record, Verdict):
        lines = list(record.reasons) or [f"decision {record.decision}"]
        lines.append(f"root cause: {record.root_cause}")
        lines.extend(f"- {e}" for e in record.evidence)
        return "\n".join(lines)
    d = record.detail
    lines = [summary(record)]
    if d.get("rule"):
        lines.append(f"rule {d['rule']} -> {d.get('action', '?')}")
    if d.get("template"):
        lines.append(f"log template: {d['template']}")
    if d.get("shared"):
        lines.append("also seen elsewhere: " + "; ".join(map(str, d["shared"])))
    return "\n".join(lines)


def root_cause(record: Record) -> tuple[str, tuple[str, ...]]:
    if isinstance(record, Verdict):
        return record.root_cause, record.evidence
    return "unknown", ()


@dataclass(frozen=True)
class OpenVerdict:
    service: str
    deploy_id: str
    verdict_id: str
    ts: float  # event time of the verdict


class VerdictTracker:
    """Per service, the verdict whose alert is open; decides supersession and remembers what was triggered.

    ``remember_max`` bounds the set of triggered ids kept for deduplication
    (oldest forgotten first): a replay within that horizon re-triggers nothing.
    """

    def __init__(self, remember_max: int = 10_000) -> None:
        self._open: dict[str, OpenVerdict] = {}
        self._latest: dict[str, tuple[float, str]] = {}  # service -> (event time, deploy id) of its newest verdict
        self._triggered: OrderedDict[str, None] = OrderedDict()
        self._escalated: OrderedDict[str, None] = OrderedDict()  # verdict ids whose escalation was sent
        self._remember_max = remember_max

    def supersede(self, verdict: Verdict) -> tuple[bool, list[OpenVerdict]]:
        """(is `verdict` current?, open verdicts it supersedes).

        A verdict is stale, not current, when a verdict for another deploy of
        the service with a later event time was seen before it (a late replay).
        """
        latest = self._latest.get(verdict.service)
        if latest is not None and latest[1] != verdict.deploy_id and latest[0] > verdict.ts:
            return False, []
        self._latest[verdict.service] = (verdict.ts, verdict.deploy_id)
        cur = self._open.get(verdict.service)
        if cur is None or cur.deploy_id == verdict.deploy_id:
            return True, []
        del self._open[verdict.service]
        return True, [cur]

    def already_triggered(self, verdict_id: str) -> bool:
        return verdict_id in self._triggered

    def trigger(self, verdict: Verdict) -> None:
        self._open[verdict.service] = OpenVerdict(verdict.service, verdict.deploy_id, verdict.id, verdict.ts)
        self._triggered[verdict.id] = None
        self._triggered.move_to_end(verdict.id)
        while len(self._triggered) > self._remember_max:
            self._triggered.popitem(last=False)

    def already_escalated(self, verdict_id: str) -> bool:
        return verdict_id in self._escalated

    def escalate(self, escalation: Anomaly) -> tuple[bool, bool, list[OpenVerdict]]:
        """Open the incident of the verdict `escalation` escalates, keyed by that verdict's id.

        Returns (is it current?, was that verdict's own incident open here?, open verdicts of other deploys it
        supersedes). Stale, as a verdict is, when a verdict for another deploy of the service with a later
        event time was seen first.
        """
        service, deploy_id, verdict_id = escalation.service, escalation.deploy_id or "", escalation.detail["escalates"]
        latest = self._latest.get(service)
        if latest is not None and latest[1] != deploy_id and latest[0] > escalation.ts:
            return False, False, []
        if latest is None or latest[1] != deploy_id:
            self._latest[service] = (escalation.ts, deploy_id)
        cur = self._open.get(service)
        was_open = cur is not None and cur.verdict_id == verdict_id
        superseded = [cur] if cur is not None and cur.deploy_id != deploy_id else []
        self._open[service] = OpenVerdict(service, deploy_id, verdict_id, escalation.ts)
        self._escalated[verdict_id] = None
        while len(self._escalated) > self._remember_max:
            self._escalated.popitem(last=False)
        return True, was_open, superseded

    def close(self, service: str, deploy_id: str | None = None) -> list[OpenVerdict]:
        """Forget the open verdict of `service` (only if it is for `deploy_id`, when given); return what closed."""
        cur = self._open.get(service)
        if cur is None or (deploy_id is not None and cur.deploy_id != deploy_id):
            return []
        del self._open[service]
        return [cur]
