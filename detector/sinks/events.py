"""Trigger/resolve event sinks: the shared logic of the PagerDuty and webhook sinks.

Both speak in incidents keyed by a dedup key: a verdict whose decision is in
the sink's list *triggers* one (once per verdict id, however often the record
is submitted), and the incident is *resolved* when a later verdict of the
same service supersedes it, or when ``resolve(service, deploy_id)`` is called
(see ``describe`` for why verdict incidents do not time out). Anomalies are
not sent: they reach people as evidence inside the verdict, or through
Alertmanager, which groups them. The exception is an *escalation*: the one
anomaly the judge sends when a page or rollback rule holds after an early
``ticket`` verdict went out (detail ``escalates``: the verdict's id,
``action``: ``page`` or ``rollback``). It is filtered like a verdict of that
action (``action`` in the sink's decisions), sent once per verdict id as an
``escalate`` event keyed by the *verdict's* id, and opens (or takes over) that
verdict's incident, which a later deploy's verdict then resolves as usual.
A ``root_cause`` record is not an incident event; the webhook forwards it
(see ``webhook``), PagerDuty does not (see ``pagerduty``).

A subclass supplies the request body and headers for one ``Event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detector.records import Anomaly, Record, RootCause, Verdict
from detector.sinks.base import QueuedSink
from detector.sinks.describe import OpenVerdict, VerdictTracker, is_escalation
from detector.sinks.http import HttpClient, check_url, redact_url


@dataclass(frozen=True)
class Event:
    action: str  # "trigger", "resolve", "escalate", or "root_cause" (the webhook's)
    dedup_key: str
    service: str
    deploy_id: str
    verdict: Verdict | None = None  # set for a trigger
    reason: str = ""  # why a resolve happens: "superseded by v-...", "resolved"
    completion: RootCause | None = None  # set for a root_cause event
    escalation: Anomaly | None = None  # set for an escalate event


class EventSink(QueuedSink):
    """Verdicts -> trigger events, supersession and explicit resolution -> resolve events, POSTed to one URL."""

    def __init__(self, *, url: str, client: HttpClient, decisions: tuple[str, ...], queue_max: int,
                 generator_url: str = "") -> None:
        super().__init__(queue_max=queue_max)
        check_url(url, f"{self.name} URL")
        self.url = url
        self.client = client
        self.decisions = frozenset(decisions)
        self.generator_url = generator_url
        self.tracker = VerdictTracker()
        self._log = self._log.bind(endpoint=redact_url(url))

    # PagerDuty folds a trigger on an open alert's dedup key into that alert without paging anyone, so it
    # resolves the ticket's own open incident first and the escalation opens a new one (see ``pagerduty``).
    reopen_on_escalation = False

    def items_for(self, record: Record) -> list[Event]:
        if isinstance(record, Anomaly) and is_escalation(record):
            return self._escalation_items(record)
        if not isinstance(record, Verdict):
            return []
        current, superseded = self.tracker.supersede(record)
        items = [_resolve(o, f"superseded by {record.id}") for o in superseded]
        if current and record.decision in self.decisions and not self.tracker.already_triggered(record.id):
            self.tracker.trigger(record)
            items.append(Event("trigger", record.id, record.service, record.deploy_id, verdict=record))
        return items

    def _escalation_items(self, a: Anomaly) -> list[Event]:
        verdict_id = a.detail["escalates"]
        if a.detail.get("action") not in self.decisions or self.tracker.already_escalated(verdict_id):
            return []
        current, was_open, superseded = self.tracker.escalate(a)
        if not current:
            return []
        items = [_resolve(o, f"superseded by {verdict_id}") for o in superseded]
        if was_open and self.reopen_on_escalation:
            items.append(Event("resolve", verdict_id, a.service, a.deploy_id or "", reason=f"escalated by {a.id}"))
        items.append(Event("escalate", verdict_id, a.service, a.deploy_id or "", escalation=a))
        return items

    def resolve(self, service: str, deploy_id: str | None = None, reason: str = "resolved") -> int:
        """Resolve the open incident of `service` (only for `deploy_id`, when given); returns how many."""
        closed = self.tracker.close(service, deploy_id)
        for o in closed:
            self.enqueue(_resolve(o, reason))
        return len(closed)

    def body(self, event: Event) -> dict[str, Any]:
        raise NotImplementedError

    def headers(self, event: Event) -> dict[str, str]:
        return {}

    async def deliver(self, event: Event) -> bool:
        result = await self.client.post_json(self.url, self.body(event), headers=self.headers(event))
        if result.ok:
            self._log.info("sink_event_sent", action=event.action, dedup_key=event.dedup_key,
                           status=result.status, attempts=result.attempts)
        else:
            self._log.warning("sink_event_failed", action=event.action, dedup_key=event.dedup_key,
                              status=result.status, attempts=result.attempts, error=result.error[:300])
        return result.ok

    async def aclose(self) -> None:
        self.client.close()


def _resolve(o: OpenVerdict, reason: str) -> Event:
    return Event("resolve", o.verdict_id, o.service, o.deploy_id, reason=reason)
