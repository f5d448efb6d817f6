"""Generic webhook sink: every verdict whose decision is listed, as one JSON POST.

For chat bridges, CD systems and anything else that takes a JSON POST. The
body (schema ``deploy-detector.webhook.v1``; fields are only ever added):

trigger::

    {"schema": "deploy-detector.webhook.v1", "event_action": "trigger", "dedup_key": "v-d-981",
     "severity": "critical", "summary": "[rollback] checkout v43 (deploy d-981): ...",
     "service": "checkout", "deploy_id": "d-981", "decision": "rollback",
     "event_time": "2025-11-26T06:02:00.000Z", "sent_at": "<wall clock, RFC 3339>",
     "generator_url": "<generator_url or null>", "record": {<the verdict as on the alerts topic>}}

resolve (a later verdict of the service superseded it, or it was resolved explicitly)::

    {"schema": "deploy-detector.webhook.v1", "event_action": "resolve", "dedup_key": "v-d-981",
     "service": "checkout", "deploy_id": "d-981", "reason": "superseded by v-d-982", "sent_at": "..."}

escalate (an early ``ticket`` verdict that a page or rollback rule
escalated later: the judge's escalation anomaly, sent when its
``detail.action`` is in ``webhook_decisions``, as a verdict of that decision
would be; once per verdict id, keyed by the verdict's id; it opens that
verdict's incident if the ticket was not sent, and a later deploy's verdict
resolves it)::

    {"schema": "deploy-detector.webhook.v1", "event_action": "escalate", "dedup_key": "v-d-981",
     "severity": "critical", "summary": "[rollback] checkout v43 (deploy d-981) escalates ticket v-d-981: ...",
     "service": "checkout", "deploy_id": "d-981", "decision": "rollback", "escalates": "v-d-981",
     "event_time": "...", "sent_at": "...", "generator_url": "<generator_url or null>",
     "record": {<the anomaly as on the alerts topic>}}

root_cause (the verdict's root cause, completed after it went out: the
contract's ``root_cause`` record, unchanged, under ``record``; a receiver
takes the latest one per verdict id over the verdict's own)::

    {"schema": "deploy-detector.webhook.v1", "event_action": "root_cause", "dedup_key": "v-d-981",
     "service": "checkout", "deploy_id": "d-981", "sent_at": "...",
     "record": {"type": "root_cause", "id": "v-d-981-rc", "verdict_id": "v-d-981", ...}}

It is sent unless this sink saw the verdict and sent neither it nor its
escalation (its decision is not in ``webhook_decisions``, or a later
deploy's verdict came first); a verdict it never saw (sent before a restart)
does not hold it back.

Each request carries ``Idempotency-Key: <dedup_key>:<event_action>`` so a
receiver can drop the duplicate a retry after a lost response produces.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from detector.records import Record, RootCause, Verdict
from detector.sinks.describe import escalation_summary, record_dict, rfc3339, severity, summary
from detector.sinks.events import Event, EventSink
from detector.sinks.http import HttpClient

SCHEMA = "deploy-detector.webhook.v1"
ALL_DECISIONS = ("rollback", "page", "ticket", "confirmed", "inconclusive", "superseded")
REMEMBER_SKIPPED_MAX = 10_000  # verdict ids seen and not sent, kept to hold back their root_cause records


class WebhookSink(EventSink):
    name = "webhook"

    def __init__(self, *, url: str, client: HttpClient, decisions: tuple[str, ...] = ALL_DECISIONS,
                 queue_max: int = 10_000, generator_url: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(url=url, client=client, decisions=decisions, queue_max=queue_max,
                         generator_url=generator_url)
        self.clock = clock
        self._skipped: OrderedDict[str, None] = OrderedDict()

    def items_for(self, record: Record) -> list[Event]:
        if isinstance(record, RootCause):
            if record.verdict_id in self._skipped:
                return []
            return [Event("root_cause", record.verdict_id, record.service, record.deploy_id, completion=record)]
        items = super().items_for(record)
        for e in items:
            if e.action == "escalate":  # the receiver now holds the verdict's incident: let its root cause through
                self._skipped.pop(e.dedup_key, None)
        if isinstance(record, Verdict) and not self.tracker.already_triggered(record.id):
            self._skipped[record.id] = None
            while len(self._skipped) > REMEMBER_SKIPPED_MAX:
                self._skipped.popitem(last=False)
        return items

    def body(self, event: Event) -> dict[str, Any]:
        base: dict[str, Any] = {"schema": SCHEMA, "event_action": event.action, "dedup_key": event.dedup_key,
                                "service": event.service, "deploy_id": event.deploy_id,
                                "sent_at": rfc3339(self.clock())}
        if event.action == "resolve":
            return {**base, "reason": event.reason}
        if event.action == "escalate":
            a = event.escalation
            assert a is not None, "an escalate event carries its anomaly"
            return {**base, "severity": "critical", "summary": escalation_summary(a), "decision": a.detail["action"],
                    "escalates": event.dedup_key, "event_time": rfc3339(a.ts),
                    "generator_url": self.generator_url or None, "record": record_dict(a)}
        if event.action == "root_cause":
            assert event.completion is not None, "a root_cause event carries its record"
            return {**base, "record": record_dict(event.completion)}
        v = event.verdict
        assert v is not None, "a trigger event carries its verdict"
        return {**base, "severity": severity(v), "summary": summary(v), "decision": v.decision,
                "event_time": rfc3339(v.ts), "generator_url": self.generator_url or None, "record": record_dict(v)}

    def headers(self, event: Event) -> dict[str, str]:
        return {"Idempotency-Key": f"{event.dedup_key}:{event.action}"}
