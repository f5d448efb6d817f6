"""Alertmanager sink: findings that call for a person, as Alertmanager alerts.

Posts to ``POST <alertmanager_url>/api/v2/alerts`` and behaves the way
Alertmanager expects of a client such as Prometheus: an alert is identified by
its label set, firing alerts are re-sent every ``resend_s`` with ``endsAt`` a
few resend intervals ahead (so a detector that dies lets its alerts expire
instead of firing forever), and a resolved alert is sent once more with
``endsAt`` = now.

Which records become alerts:

* verdicts whose decision is in ``decisions`` (default ``rollback``, ``page``):
  ``alertname`` ``DeployRollback``, ``DeployPage`` (``Deploy<Decision>`` for the
  others), labels ``service``, ``deploy_id``, ``version``, ``decision``,
  ``severity`` (see ``describe``) and ``signal="deploy"`` (a verdict is about
  the deploy as a whole, not one signal);
* anomalies whose severity is in ``severities`` (default ``critical``):
  ``alertname="DetectorAnomaly"``, labels ``service``, ``signal``, ``severity``
  and, when the anomaly has them, ``endpoint``, ``version``, ``deploy_id``,
  ``rule``, ``quantile``, ``template_id``. The anomaly *id* is deliberately
  not a label: it changes with every window, and a finding that persists over
  many windows is one alert that keeps firing, not one alert per window.

Annotations: ``summary``, ``description`` (the reasons), ``root_cause`` and
``root_cause_evidence``, ``event_time`` (the record's event time, RFC 3339),
``record_id``, and for anomalies ``observed``, ``expected``, ``score``,
``window_start``, ``window_end``, ``action``.

Times: ``startsAt``/``endsAt`` are wall-clock times from ``clock`` (a replay of
last week's events shows up as current alerts; the event time is in the
``event_time`` annotation). ``startsAt`` is the time of the first send.

Resolution:

* an anomaly alert resolves ``resolve_s`` after the last record with its labels;
* a verdict alert resolves when a verdict for a later deploy of the same
  service arrives (by event time, whatever its decision), and does not time
  out: see ``describe`` for why;
* ``resolve(service, deploy_id=None)`` resolves every alert of the service
  (of that deploy, when given), e.g. when the service is deployed again.

A verdict alert that was resolved does not fire again when the same verdict
is submitted again (a replay of the same events).

A ``root_cause`` record (``v-<deploy>-rc``: the verdict's root cause,
completed after the verdict went out) updates the verdict's alert in place:
the alert is posted again with the same labels (so Alertmanager keeps one
alert and takes the new annotations) and ``root_cause``,
``root_cause_evidence`` and ``description`` rebuilt from the completed root
cause, plus ``root_cause_record_id``. The sink knows the alerts it holds
as firing (at most ``max_alerts``, the verdict kept with each); with
``state_path`` the verdict alerts among them are kept in a file
(``alertstate.py``) and, after a restart, those Alertmanager still holds as
firing (their ``endsAt`` ahead) are held again: re-sent as before, resolved
by a later deploy's verdict, updated by a late ``root_cause`` record. For a
verdict it does not hold (not posted because of its decision, already
resolved, expired in Alertmanager while the detector was down, or posted
before a restart without a state file) it posts nothing and logs
``root_cause_not_posted``: the record alone has no version or decision to
rebuild the labels from, and re-firing a resolved alert would page again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from detector.records import Anomaly, Record, RootCause, Verdict
from detector.sinks.alertstate import AlertStateFile, PostedAlert
from detector.sinks.base import QueuedSink
from detector.sinks.describe import (
    VerdictTracker,
    description,
    rfc3339,
    root_cause,
    severity,
    summary,
)
from detector.sinks.http import HttpClient, check_url, redact_url

API_PATH = "/api/v2/alerts"
ENDS_AT_RESEND_INTERVALS = 4  # Prometheus uses the same margin: a few missed re-sends do not resolve an alert
MAX_ALERTS_PER_POST = 500
MAX_ANNOTATION_CHARS = 4_000
MIN_IDLE_S = 0.05


def alertname(record: Record) -> str:
    if isinstance(record, Verdict):
        return "Deploy" + record.decision.capitalize()
    return "DetectorAnomaly"


def alert_labels(record: Record) -> dict[str, str]:
    """The label set that identifies the alert for `record`."""
    if isinstance(record, Verdict):
        return {"alertname": alertname(record), "service": record.service, "signal": "deploy",
                "severity": severity(record), "deploy_id": record.deploy_id, "version": record.version,
                "decision": record.decision}
    labels = {"alertname": alertname(record), "service": record.service, "signal": record.signal,
              "severity": record.severity}
    optional = {"endpoint": record.endpoint, "version": record.version, "deploy_id": record.deploy_id,
                "rule": record.detail.get("rule"), "quantile": record.detail.get("quantile"),
                "template_id": record.detail.get("template_id")}
    # Alertmanager treats an empty label value as an absent label, so absent values are left out.
    labels.update({k: str(v) for k, v in optional.items() if v is not None and str(v) != ""})
    return labels


def alert_annotations(record: Record) -> dict[str, str]:
    category, evidence = root_cause(record)
    notes = {"summary": summary(record), "description": description(record), "root_cause": category,
             "root_cause_evidence": "\n".join(evidence), "event_time": rfc3339(record.ts), "record_id": record.id}
    if isinstance(record, Anomaly):
        notes.update({"observed": f"{record.observed:.6g}", "expected": f"{record.expected:.6g}",
                      "score": f"{record.score:.3g}", "window_start": rfc3339(record.window_start),
                      "window_end": rfc3339(record.window_end), "action": str(record.detail.get("action", ""))})
    else:
        notes["anomalies"] = ", ".join(record.anomalies)
    return {k: v[:MAX_ANNOTATION_CHARS] for k, v in notes.items() if v}


@dataclass
class _Alert:
    kind: str  # "anomaly" or "verdict"
    labels: dict[str, str]
    annotations: dict[str, str]
    last_seen_s: float  # wall clock of the newest record with these labels
    starts_at_s: float | None = None  # wall clock of the first send
    last_sent_s: float | None = None
    ends_at_s: float | None = None  # the endsAt of the last send
    changed: bool = True  # a new record arrived since the last send
    verdict: Verdict | None = None  # for a verdict alert: the verdict (root cause completed, once it is)


@dataclass(frozen=True)
class _ResolveRequest:
    service: str
    deploy_id: str | None


class AlertmanagerSink(QueuedSink):
    name = "alertmanager"

    def __init__(self, *, url: str, client: HttpClient, severities: tuple[str, ...] = ("critical",),
                 decisions: tuple[str, ...] = ("rollback", "page"), resend_s: float = 60.0,
                 resolve_s: float = 600.0, generator_url: str = "", queue_max: int = 10_000,
                 max_alerts: int | None = None, clock: Callable[[], float] = time.time,
                 state_path: str | Path | None = None) -> None:
        super().__init__(queue_max=queue_max)
        check_url(url, "alertmanager URL")
        if resend_s <= 0 or resolve_s <= 0:
            raise ValueError(f"alertmanager: resend_s and resolve_s must be > 0 (got resend_s={resend_s}, "
                             f"resolve_s={resolve_s})")
        base = url.rstrip("/")
        self.url = base if base.endswith(API_PATH) else base + API_PATH
        self.client = client
        self.severities = frozenset(severities)
        self.decisions = frozenset(decisions)
        self.resend_s = resend_s
        self.resolve_s = resolve_s
        self.generator_url = generator_url
        self.max_alerts = max_alerts or queue_max
        self.clock = clock
        self.tracker = VerdictTracker()
        # firing alerts by label set, ordered by their newest record (oldest first, evicted first)
        self._alerts: dict[tuple[tuple[str, str], ...], _Alert] = {}
        self._resolved: list[_Alert] = []  # resolved since the last pass, to be sent once with endsAt = now
        self._log = self._log.bind(endpoint=redact_url(url))
        self._state = AlertStateFile(state_path)  # the posted verdict alerts, across restarts
        self._restore(self._state.load())

    def _restore(self, posted: list[PostedAlert]) -> None:
        """Hold again the verdict alerts posted before a restart that Alertmanager still holds as firing."""
        now = self.clock()
        live = [a for a in posted if a.ends_at_s > now][-self.max_alerts:]
        for a in live:
            self.tracker.supersede(a.verdict)  # the service's current verdict, for later deploys to supersede
            self.tracker.trigger(a.verdict)
            self._alerts[tuple(sorted(a.labels.items()))] = _Alert(
                "verdict", dict(a.labels), dict(a.annotations), last_seen_s=now, starts_at_s=a.starts_at_s,
                last_sent_s=a.last_sent_s, ends_at_s=a.ends_at_s, changed=False, verdict=a.verdict)
        if posted:
            self._log.info("alerts_restored", firing=len(live), expired=len(posted) - len(live),
                           state_path=str(self._state.path))

    # --- intake (called by submit, runs on the loop, never waits) ---

    def items_for(self, record: Record) -> list[Any]:
        if isinstance(record, (Verdict, RootCause)):
            # every verdict, also those not posted: a later deploy's verdict resolves older ones;
            # a root_cause record updates its verdict's alert if that is firing (see _complete)
            return [record]
        return [record] if record.severity in self.severities else []

    def resolve(self, service: str, deploy_id: str | None = None) -> None:
        """Resolve every alert of `service` (of `deploy_id` only, when given) at the next pass."""
        self.enqueue(_ResolveRequest(service, deploy_id))

    @property
    def firing(self) -> list[dict[str, str]]:
        """Label sets of the alerts currently held as firing (for health pages and tests)."""
        return [dict(a.labels) for a in self._alerts.values()]

    # --- the worker ---

    def idle_timeout_s(self) -> float | None:
        alerts = self._alerts.values()
        if not alerts:
            return None
        now = self.clock()
        due = [(now if a.last_sent_s is None else a.last_sent_s) + self.resend_s for a in alerts]
        due += [a.last_seen_s + self.resolve_s for a in alerts if a.kind == "anomaly"]
        return min(self.resend_s, max(MIN_IDLE_S, min(due) - now))

    async def run_pass(self) -> None:
        now = self.clock()
        while self._queue:
            self._apply(self._queue.popleft(), now)
        for key, a in list(self._alerts.items()):
            if a.kind == "anomaly" and now - a.last_seen_s >= self.resolve_s:
                self._resolve_key(key)
        batch: list[dict[str, Any]] = []
        for a in self._resolved:
            assert a.starts_at_s is not None, "only alerts that were sent are queued for resolution"
            batch.append(self._wire(a, ends_at_s=max(now, a.starts_at_s)))
            self._log.info("alert_resolved", **_ident(a))
        self._resolved.clear()
        for a in self._alerts.values():
            if a.changed or a.last_sent_s is None or now - a.last_sent_s >= self.resend_s:
                if a.starts_at_s is None:
                    a.starts_at_s = now
                    self._log.info("alert_firing", **_ident(a))
                a.ends_at_s = now + ENDS_AT_RESEND_INTERVALS * self.resend_s
                batch.append(self._wire(a, ends_at_s=a.ends_at_s))
                # Marked as sent before the POST and even when it fails: the next try is the regular
                # re-send, not a tight loop against an endpoint that is down.
                a.last_sent_s, a.changed = now, False
        for i in range(0, len(batch), MAX_ALERTS_PER_POST):
            chunk = batch[i:i + MAX_ALERTS_PER_POST]
            result = await self.client.post_json(self.url, chunk)
            if result.ok:
                self.stats.sent += len(chunk)
            else:
                self.stats.failed += len(chunk)
                self._log.warning("alertmanager_post_failed", alerts=len(chunk), status=result.status,
                                  attempts=result.attempts, error=result.error[:300])
        await self._save_state()

    async def _save_state(self) -> None:
        """The verdict alerts sent and held as firing, to the state file (when it changed)."""
        if self._state.path is None:
            return
        posted = [PostedAlert(a.labels, a.annotations, a.starts_at_s, a.last_sent_s, a.ends_at_s, a.verdict)
                  for a in self._alerts.values()
                  if a.verdict is not None and a.starts_at_s is not None and a.last_sent_s is not None
                  and a.ends_at_s is not None]
        data = self._state.changes(posted)
        if data is None:
            return
        try:
            await asyncio.to_thread(self._state.write, data)
        except OSError as e:
            # Delivery goes on; only a root_cause record after a restart would find nothing to update.
            self._log.warning("alertmanager_state_not_saved", state_path=str(self._state.path), error=repr(e))

    def _resolve_key(self, key: tuple[tuple[str, str], ...]) -> None:
        a = self._alerts.pop(key)
        if a.starts_at_s is not None:  # never sent: Alertmanager has nothing to resolve
            self._resolved.append(a)

    def _apply(self, item: Record | _ResolveRequest, now: float) -> None:
        alerts = self._alerts
        if isinstance(item, RootCause):
            self._complete(item)
            return
        if isinstance(item, _ResolveRequest):
            for key, a in list(alerts.items()):
                if a.labels["service"] == item.service and (
                        item.deploy_id is None or a.labels.get("deploy_id") == item.deploy_id):
                    self._resolve_key(key)
            self.tracker.close(item.service, item.deploy_id)
            return
        if isinstance(item, Verdict):
            current, superseded = self.tracker.supersede(item)
            for o in superseded:
                for key, a in list(alerts.items()):
                    if a.kind == "verdict" and a.labels["service"] == o.service \
                            and a.labels["deploy_id"] == o.deploy_id:
                        self._resolve_key(key)
            if not current or item.decision not in self.decisions:
                return
        labels = alert_labels(item)
        key = tuple(sorted(labels.items()))
        existing = alerts.pop(key, None)
        if existing is not None:
            if isinstance(item, Verdict) and existing.verdict is not None and existing.verdict.id == item.id:
                item = existing.verdict  # the same verdict again (a re-read): keep its completed root cause
            existing.annotations, existing.last_seen_s, existing.changed = _annotations(existing, item), now, True
            existing.verdict = item if isinstance(item, Verdict) else None
            alerts[key] = existing  # re-inserted: the dict stays ordered by newest record
            return
        if isinstance(item, Verdict):
            if self.tracker.already_triggered(item.id):
                return  # fired and resolved before: a replay of the same verdict does not page again
            self.tracker.trigger(item)
        if len(alerts) >= self.max_alerts:
            del alerts[next(iter(alerts))]  # the alert quiet the longest; Alertmanager expires it at its endsAt
            self.stats.dropped += 1
        verdict = item if isinstance(item, Verdict) else None
        alerts[key] = _Alert("verdict" if verdict else "anomaly", labels, alert_annotations(item), last_seen_s=now,
                             verdict=verdict)

    def _complete(self, rc: RootCause) -> None:
        """The firing alert of `rc`'s verdict takes the completed root cause; sent again at the next pass."""
        a = next((a for a in self._alerts.values() if a.verdict is not None and a.verdict.id == rc.verdict_id), None)
        if a is None:
            self._log.info("root_cause_not_posted", record_id=rc.id, service=rc.service, deploy_id=rc.deploy_id,
                           reason="no firing alert of this verdict here (decision not posted, resolved, expired "
                                  "while the detector was down, or posted before a restart without a state file)")
            return
        a.verdict = replace(a.verdict, root_cause=rc.root_cause, evidence=rc.evidence)
        a.annotations = {**alert_annotations(a.verdict), "root_cause_record_id": rc.id}
        a.changed = True
        self._log.info("alert_root_cause_completed", root_cause=rc.root_cause, **_ident(a))

    def _wire(self, a: _Alert, *, ends_at_s: float) -> dict[str, Any]:
        body: dict[str, Any] = {"labels": a.labels, "annotations": a.annotations,
                                "startsAt": rfc3339(a.starts_at_s if a.starts_at_s is not None else ends_at_s),
                                "endsAt": rfc3339(ends_at_s)}
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body

    async def aclose(self) -> None:
        self.client.close()


def _annotations(existing: _Alert, record: Record) -> dict[str, str]:
    notes = alert_annotations(record)
    rc_id = existing.annotations.get("root_cause_record_id")
    if rc_id and isinstance(record, Verdict) and record.id + "-rc" == rc_id:
        notes["root_cause_record_id"] = rc_id
    return notes


def _ident(a: _Alert) -> dict[str, str]:
    return {k: a.labels[k] for k in ("alertname", "service", "deploy_id", "signal") if k in a.labels}
