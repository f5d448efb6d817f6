"""PagerDuty Events API v2: bodies, severities, dedup keys, resolves, secrets."""

from __future__ import annotations


import structlog

from detector.sinks import (
    PagerDutySink,
)

from sinkkit import EVENT_TS, ROUTING_KEY, Recorder, anomaly, client, verdict


# --- PagerDuty ---


async def test_pagerduty_trigger_body_matches_events_api_v2(server: Recorder) -> None:
    """A rollback verdict becomes one Events API v2 trigger with the documented fields and the evidence."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url + "/v2/enqueue",
                         generator_url="http://detector.example/ui")
    await sink.start()
    sink.submit(verdict())
    assert await sink.flush(5)
    await sink.close(1)
    [req] = server.requests
    assert req.path == "/v2/enqueue"
    assert req.headers["content-type"] == "application/json"
    body = req.json()
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links"}
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "v-d-981"
    p = body["payload"]
    assert p["severity"] == "critical"
    assert p["source"] == "checkout" and p["component"] == "checkout" and p["group"] == "d-981"
    assert p["summary"].startswith("[rollback] checkout v43 (deploy d-981): error rate 7.10%")
    assert len(p["summary"]) <= 1024
    details = p["custom_details"]
    assert details["root_cause"]["category"] == "config"
    assert "new log template: missing configuration key <*>" in details["root_cause"]["evidence"]
    assert details["event_time"] == "2025-11-26T07:02:00.000Z"
    assert details["id"] == "v-d-981" and details["decision"] == "rollback"
    assert body["links"] == [{"href": "http://detector.example/ui", "text": "deploy detector"}]
    assert sink.stats.as_dict() == {"submitted": 1, "sent": 1, "failed": 0, "dropped": 0}


async def test_pagerduty_maps_decisions_to_severities_and_filters(server: Recorder) -> None:
    """page maps to severity error; decisions outside pagerduty_decisions and anomalies are not sent."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url, decisions=("rollback", "page"))
    await sink.start()
    sink.submit(verdict("d-1", "page", service="a"))
    sink.submit(verdict("d-2", "ticket", service="b"))
    sink.submit(anomaly())
    await sink.flush(5)
    await sink.close(1)
    assert [(b["dedup_key"], b["payload"]["severity"]) for b in server.bodies()] == [("v-d-1", "error")]


async def test_pagerduty_resolves_when_a_later_verdict_supersedes(server: Recorder) -> None:
    """A verdict for a later deploy of the service resolves the open incident with a bare resolve event."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict("d-981", "rollback"))
    sink.submit(verdict("d-982", "confirmed", ts=EVENT_TS + 1800, version="v44"))
    await sink.flush(5)
    await sink.close(1)
    trigger, resolve = server.bodies()
    assert trigger["event_action"] == "trigger"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "v-d-981"}


async def test_same_verdict_twice_triggers_once(server: Recorder) -> None:
    """Submitting the same verdict again (a replay, a restart) sends no second trigger."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict())
    sink.submit(verdict())
    await sink.flush(5)
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert [(b["event_action"], b["dedup_key"]) for b in server.bodies()] == [("trigger", "v-d-981")]


async def test_late_verdict_of_an_older_deploy_does_not_trigger(server: Recorder) -> None:
    """A verdict older (by event time) than one already seen for another deploy of the service is stale."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict("d-982", "page", ts=EVENT_TS + 600))
    sink.submit(verdict("d-981", "rollback", ts=EVENT_TS))
    await sink.flush(5)
    await sink.close(1)
    assert [b["dedup_key"] for b in server.bodies()] == ["v-d-982"]


async def test_explicit_resolve_sends_resolve_once(server: Recorder) -> None:
    """resolve(service) resolves the open incident; a second call finds nothing open."""
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict())
    assert sink.resolve("checkout", "d-other") == 0
    assert sink.resolve("checkout", "d-981") == 1
    assert sink.resolve("checkout") == 0
    await sink.flush(5)
    await sink.close(1)
    assert [b["event_action"] for b in server.bodies()] == ["trigger", "resolve"]


async def test_routing_key_is_never_logged(server: Recorder) -> None:
    """Neither success nor a refused request puts the routing key into log events."""
    server.answer(400)
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    with structlog.testing.capture_logs() as logs:
        await sink.start()
        sink.submit(verdict("d-1", service="a"))
        sink.submit(verdict("d-2", service="b"))
        await sink.flush(5)
        await sink.close(1)
    assert len(logs) >= 3
    assert ROUTING_KEY not in repr(logs) and ROUTING_KEY not in repr(sink)


