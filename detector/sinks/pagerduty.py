"""PagerDuty Events API v2 sink: verdicts that call for a person become incidents.

Bodies follow https://developer.pagerduty.com/docs/events-api-v2/trigger-events/:

trigger::

    {"routing_key": "<integration key>", "event_action": "trigger", "dedup_key": "v-d-981",
     "payload": {"summary": "[rollback] checkout v43 (deploy d-981): error rate ...",
                 "source": "checkout", "severity": "critical", "component": "checkout",
                 "group": "d-981", "class": "rollback",
                 "custom_details": {<the verdict as on the alerts topic>, "event_time": "2025-...Z"}},
     "client": "deploy-detector", "client_url": "<generator_url>",
     "links": [{"href": "<generator_url>", "text": "deploy detector"}]}

resolve::

    {"routing_key": "<integration key>", "event_action": "resolve", "dedup_key": "v-d-981"}

``payload.timestamp`` is left out on purpose: PagerDuty then stamps the
incident with the time it received it, which is what a replay of old events
should show; the event time is in ``custom_details.event_time``.

escalation (an early ``ticket`` verdict a page or rollback rule escalated
later; its action in ``pagerduty_decisions``): a trigger keyed by the
*verdict's* dedup key, severity ``critical``, ``class`` the action, the
escalation anomaly under ``custom_details``::

    {"routing_key": "...", "event_action": "trigger", "dedup_key": "v-d-981",
     "payload": {"summary": "[rollback] checkout v43 (deploy d-981) escalates ticket v-d-981: ...",
                 "source": "checkout", "severity": "critical", "component": "checkout",
                 "group": "d-981", "class": "rollback",
                 "custom_details": {<the anomaly as on the alerts topic>, "event_time": "..."}}, ...}

With the default decisions the ticket itself was not sent, so the escalation
opens the deploy's one incident, and a later deploy's verdict resolves it as
it would the verdict's. When ``ticket`` is in the decisions and its incident
is still open here, a trigger on the same key would only be appended to the
open (warning) alert, paging nobody; so the sink first resolves it and the
escalation then opens a new incident under the same key.

A ``root_cause`` record (the verdict's root cause, completed after the
verdict went out) is not sent. The Events API v2 has no note or update
action for an alert: its actions are ``trigger``, ``acknowledge`` and
``resolve`` (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).
A second ``trigger`` on the same ``dedup_key`` only adds a log entry while the
alert is open, and once it is resolved (a person may resolve it in PagerDuty,
unseen by the detector) it opens a new incident: a page for a deploy already
dealt with. Change events (``/v2/change/enqueue``) take no ``dedup_key``, so
they attach to the service, not to the incident. Adding a note to the
incident needs the REST API (``POST /incidents/{id}/notes``) and a REST API
token, which this sink does not hold. The completed root cause is on the
alerts topic, the webhook, Alertmanager and the status page.

The routing key comes from the pipeline file or the environment variable
``DETECTOR_PAGERDUTY_ROUTING_KEY`` and is never logged (log lines carry the
endpoint's host only, and request bodies are not logged).
"""

from __future__ import annotations

from typing import Any

from detector.records import Record
from detector.sinks.describe import dedup_key, escalation_summary, record_dict, rfc3339, severity, summary
from detector.sinks.events import Event, EventSink
from detector.sinks.http import HttpClient

ROUTING_KEY_ENV = "DETECTOR_PAGERDUTY_ROUTING_KEY"
DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutySink(EventSink):
    name = "pagerduty"

    def __init__(self, *, routing_key: str, client: HttpClient, decisions: tuple[str, ...] = ("rollback", "page"),
                 url: str = DEFAULT_URL, queue_max: int = 10_000, generator_url: str = "") -> None:
        if not routing_key.strip():
            raise ValueError(f"pagerduty: routing key is empty; set sinks.pagerduty_routing_key or {ROUTING_KEY_ENV}")
        super().__init__(url=url, client=client, decisions=decisions, queue_max=queue_max,
                         generator_url=generator_url)
        self._routing_key = routing_key.strip()

    def __repr__(self) -> str:  # keep the key out of reprs that end up in logs or tracebacks
        return f"PagerDutySink(url={self.url!r}, decisions={sorted(self.decisions)})"

    reopen_on_escalation = True

    def body(self, event: Event) -> dict[str, Any]:
        if event.action == "resolve":
            return {"routing_key": self._routing_key, "event_action": "resolve", "dedup_key": event.dedup_key}
        if event.action == "escalate":
            a = event.escalation
            assert a is not None, "an escalate event carries its anomaly"
            return self._trigger(event.dedup_key, a, escalation_summary(a), "critical", a.detail["action"])
        v = event.verdict
        assert v is not None, "a trigger event carries its verdict"
        return self._trigger(dedup_key(v), v, summary(v), severity(v), v.decision)

    def _trigger(self, key: str, record: Record, text: str, level: str, cls: str) -> dict[str, Any]:
        details = record_dict(record)
        details["event_time"] = rfc3339(record.ts)
        body: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": text,
                "source": record.service,
                "severity": level,
                "component": record.service,
                "group": record.deploy_id,
                "class": cls,
                "custom_details": details,
            },
            "client": "deploy-detector",
        }
        if self.generator_url:
            body["client_url"] = self.generator_url
            body["links"] = [{"href": self.generator_url, "text": "deploy detector"}]
        return body
