"""The webhook sink's bodies against the documented schema."""

from __future__ import annotations



from detector.sinks import (
    WebhookSink,
)
from detector.sinks.describe import rfc3339

from sinkkit import EVENT_TS, Recorder, client, verdict


# --- webhook ---


async def test_webhook_bodies_match_the_documented_schema(server: Recorder) -> None:
    """Trigger and resolve bodies carry schema, action, dedup key, times and the record; with an Idempotency-Key."""
    now = [1_800_000_000.0]
    sink = WebhookSink(url=server.url + "/hooks/deploys?token=abc", client=client(), clock=lambda: now[0])
    await sink.start()
    sink.submit(verdict("d-981", "page"))
    sink.submit(verdict("d-982", "confirmed", ts=EVENT_TS + 1800, version="v44"))
    await sink.flush(5)
    await sink.close(1)
    (t_req, r_req, c_req) = server.requests
    assert t_req.path == "/hooks/deploys?token=abc"
    trigger, resolve, confirmed = t_req.json(), r_req.json(), c_req.json()
    assert trigger["schema"] == "deploy-detector.webhook.v1"
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "v-d-981"
    assert trigger["severity"] == "error" and trigger["decision"] == "page"
    assert trigger["event_time"] == "2025-11-26T07:02:00.000Z"
    assert trigger["sent_at"] == rfc3339(now[0])
    assert trigger["record"]["root_cause"]["evidence"][0].startswith("errors began")
    assert t_req.headers["idempotency-key"] == "v-d-981:trigger"
    assert resolve == {"schema": "deploy-detector.webhook.v1", "event_action": "resolve", "dedup_key": "v-d-981",
                       "service": "checkout", "deploy_id": "d-981", "reason": "superseded by v-d-982",
                       "sent_at": rfc3339(now[0])}
    assert confirmed["dedup_key"] == "v-d-982" and confirmed["severity"] == "info"


