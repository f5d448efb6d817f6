"""An early ticket escalated later (a page or rollback rule held): PagerDuty and the webhook carry it."""

from __future__ import annotations

from detector.records import Anomaly, RootCause
from detector.sinks import PagerDutySink, WebhookSink

from sinkkit import EVENT_TS, ROUTING_KEY, Recorder, anomaly, client, verdict

REASON = "error rate 7.10% vs 0.40% for the stable version on all endpoints"


def escalation(action: str = "rollback", deploy_id: str = "d-981", ts: float = EVENT_TS + 300) -> Anomaly:
    """What the judge sends when a page or rollback rule holds after the early ticket of `deploy_id`."""
    a = anomaly(ts=ts)
    return Anomaly(**{**a.__dict__, "deploy_id": deploy_id,
                      "detail": {"rule": "errors-everywhere", "action": action, "escalates": f"v-{deploy_id}",
                                 "anomaly": a.id, "reason": REASON}}).with_id()


async def _run(sink: PagerDutySink | WebhookSink, *records: object) -> None:
    await sink.start()
    for r in records:
        sink.submit(r)  # type: ignore[arg-type]
    assert await sink.flush(5)
    await sink.close(1)


async def test_pagerduty_an_escalated_ticket_opens_one_critical_incident_under_the_verdicts_key(
        server: Recorder) -> None:
    """Default decisions: the ticket is not sent; its rollback escalation triggers once (repeats are dropped),
    severity critical, keyed by the verdict's id, and a later deploy's verdict resolves that incident."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    esc = escalation()
    await _run(sink, verdict(decision="ticket"), esc, esc, anomaly(),
               verdict("d-982", "confirmed", ts=EVENT_TS + 1800, version="v44"))
    trigger, resolve = server.bodies()
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "v-d-981"
    p = trigger["payload"]
    assert p["severity"] == "critical" and p["class"] == "rollback" and p["group"] == "d-981"
    assert p["summary"] == f"[rollback] checkout v43 (deploy d-981) escalates ticket v-d-981: {REASON}"
    assert p["custom_details"]["id"] == esc.id and p["custom_details"]["detail"]["escalates"] == "v-d-981"
    assert p["custom_details"]["event_time"] == "2025-11-26T07:07:00.000Z"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "v-d-981"}


async def test_pagerduty_resolves_an_open_ticket_incident_before_the_escalation_pages(server: Recorder) -> None:
    """With ticket in the decisions its incident is open: a trigger on that key would only be appended to it,
    so the sink resolves it first and the escalation opens a new incident under the same key."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url,
                         decisions=("rollback", "page", "ticket"))
    await _run(sink, verdict(decision="ticket"), escalation("page"))
    ticket, resolve, page = server.bodies()
    assert (ticket["event_action"], ticket["payload"]["severity"]) == ("trigger", "warning")
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "v-d-981"}
    assert (page["event_action"], page["dedup_key"]) == ("trigger", "v-d-981")
    assert (page["payload"]["severity"], page["payload"]["class"]) == ("critical", "page")


async def test_pagerduty_filters_escalations_by_action_and_drops_stale_ones(server: Recorder) -> None:
    """A page escalation is not sent when page is not in the decisions; an escalation of d-981 arriving after
    a later deploy's verdict is stale, as that deploy's own verdict would be."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url, decisions=("rollback",))
    await _run(sink, verdict(decision="ticket"), escalation("page"),
               verdict("d-982", "rollback", ts=EVENT_TS + 1800, version="v44"), escalation("rollback"))
    assert [(b["event_action"], b["dedup_key"]) for b in server.bodies()] == [("trigger", "v-d-982")]


async def test_webhook_forwards_an_escalation_as_an_escalate_event(server: Recorder) -> None:
    """All decisions (the default): the ticket goes out, then its escalation as `escalate`, keyed by the
    verdict's id, with the action as decision and its own Idempotency-Key."""
    now = 1_800_000_000.0
    sink = WebhookSink(url=server.url, client=client(), clock=lambda: now)
    esc = escalation("page")
    await _run(sink, verdict(decision="ticket"), esc, esc)
    t_req, e_req = server.requests
    assert t_req.json()["event_action"] == "trigger"
    body = e_req.json()
    assert body["event_action"] == "escalate" and e_req.headers["idempotency-key"] == "v-d-981:escalate"
    assert body["dedup_key"] == body["escalates"] == "v-d-981"
    assert (body["severity"], body["decision"], body["deploy_id"]) == ("critical", "page", "d-981")
    assert body["summary"].startswith("[page] checkout v43 (deploy d-981) escalates ticket v-d-981")
    assert body["record"]["id"] == esc.id and body["event_time"] == "2025-11-26T07:07:00.000Z"


async def test_webhook_filters_escalations_by_action_and_lets_the_root_cause_follow_one_it_sent(
        server: Recorder) -> None:
    """Without ticket in webhook_decisions the escalation alone opens the verdict's incident: the verdict's
    root cause then follows it, and a later deploy's verdict resolves it. A page escalation the decisions
    leave out is not sent, and the root cause of that unsent ticket is held back as before."""
    rc = RootCause(ts=EVENT_TS + 400, service="checkout", deploy_id="d-981", root_cause="config",
                   evidence=("new log template: missing configuration key <*>",))
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback", "page"))
    await _run(sink, verdict(decision="ticket"), escalation("rollback"), rc,
               verdict("d-982", "confirmed", ts=EVENT_TS + 1800, version="v44"))
    assert [(b["event_action"], b["dedup_key"]) for b in server.bodies()] == [
        ("escalate", "v-d-981"), ("root_cause", "v-d-981"), ("resolve", "v-d-981")]
    server.requests.clear()
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",))
    await _run(sink, verdict(decision="ticket"), escalation("page"), rc)
    assert server.requests == []
