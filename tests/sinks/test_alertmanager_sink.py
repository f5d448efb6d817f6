"""The Alertmanager sink with an injected clock: labels, resends, resolves."""

from __future__ import annotations



from detector.sinks import (
    AlertmanagerSink,
)
from detector.sinks.describe import rfc3339

from sinkkit import EVENT_TS, Recorder, anomaly, client, verdict


# --- Alertmanager sink, with an injected clock ---


class FakeClock:
    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def am_sink(server: Recorder, clock: FakeClock, **kw: object) -> AlertmanagerSink:
    return AlertmanagerSink(url=server.url, client=client(), clock=clock, resend_s=60, resolve_s=600,
                            generator_url="http://detector.example/", **kw)  # type: ignore[arg-type]


def posted(server: Recorder) -> list[list[dict]]:
    return server.bodies()  # type: ignore[return-value]


async def test_alertmanager_labels_annotations_and_wall_clock_times(server: Recorder) -> None:
    """A verdict and a critical anomaly become two alerts stamped with the clock; the event time is an annotation."""
    clock = FakeClock()
    sink = am_sink(server, clock)
    await sink.start()
    sink.submit(verdict())
    sink.submit(anomaly("critical"))
    sink.submit(anomaly("warning", signal="latency"))  # not in alertmanager_severities
    await sink.flush(5)
    await sink.close(1)
    [batch] = posted(server)
    assert server.requests[0].path == "/api/v2/alerts"
    by_name = {a["labels"]["alertname"]: a for a in batch}
    assert set(by_name) == {"DeployRollback", "DetectorAnomaly"}
    v = by_name["DeployRollback"]
    assert v["labels"] == {"alertname": "DeployRollback", "service": "checkout", "signal": "deploy",
                           "severity": "critical", "deploy_id": "d-981", "version": "v43", "decision": "rollback"}
    assert v["startsAt"] == rfc3339(clock.now_s)
    assert v["endsAt"] == rfc3339(clock.now_s + 4 * 60)
    assert v["generatorURL"] == "http://detector.example/"
    notes = v["annotations"]
    assert notes["event_time"] == "2025-11-26T07:02:00.000Z"
    assert notes["root_cause"] == "config"
    assert "missing configuration key" in notes["root_cause_evidence"]
    assert notes["description"].startswith("error rate 7.10%")
    a = by_name["DetectorAnomaly"]
    assert a["labels"] == {"alertname": "DetectorAnomaly", "service": "checkout", "signal": "error_rate",
                           "severity": "critical", "endpoint": "POST /pay", "version": "v43",
                           "deploy_id": "d-981", "rule": "errors-everywhere"}
    assert a["annotations"]["record_id"] == anomaly().id


async def test_alertmanager_resends_firing_alerts_and_resolves_quiet_anomalies(server: Recorder) -> None:
    """Firing alerts are re-sent each resend_s; an anomaly alert resolves resolve_s after its last record."""
    clock = FakeClock()
    t0 = clock.now_s
    sink = am_sink(server, clock)
    await sink.start()
    sink.submit(anomaly())
    await sink.flush(5)
    clock.now_s += 30  # not due yet
    await sink.flush(5)
    assert len(server.requests) == 1
    clock.now_s += 31
    await sink.flush(5)
    [resent] = posted(server)[1]
    assert resent["startsAt"] == rfc3339(t0) and resent["endsAt"] == rfc3339(clock.now_s + 240)
    clock.now_s = t0 + 600
    await sink.flush(5)
    [resolved] = posted(server)[-1]
    assert resolved["endsAt"] == rfc3339(t0 + 600) and resolved["startsAt"] == rfc3339(t0)
    assert sink.firing == []
    clock.now_s += 3600
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3, "a resolved alert is sent once, then forgotten"


async def test_alertmanager_new_record_keeps_an_anomaly_alert_firing(server: Recorder) -> None:
    """Each new window of the same finding (new anomaly id, same labels) extends the same alert."""
    clock = FakeClock()
    t0 = clock.now_s
    sink = am_sink(server, clock)
    await sink.start()
    sink.submit(anomaly(ts=EVENT_TS))
    await sink.flush(5)
    clock.now_s = t0 + 500
    sink.submit(anomaly(ts=EVENT_TS + 10))
    await sink.flush(5)
    clock.now_s = t0 + 700  # 700 s after the first record, 200 s after the second
    await sink.flush(5)
    await sink.close(1)
    [latest] = posted(server)[-1]
    assert latest["startsAt"] == rfc3339(t0), "the same alert, not a new one"
    assert latest["endsAt"] == rfc3339(clock.now_s + 240), "re-sent as firing, not resolved"
    assert latest["annotations"]["window_end"] == rfc3339(EVENT_TS + 10)
    assert len(sink.firing) == 1


async def test_alertmanager_verdict_alert_resolves_on_supersession_not_by_time(server: Recorder) -> None:
    """A verdict alert outlives resolve_s and resolves when a later deploy's verdict (any decision) arrives."""
    clock = FakeClock()
    t0 = clock.now_s
    sink = am_sink(server, clock)
    await sink.start()
    sink.submit(verdict("d-981", "rollback"))
    await sink.flush(5)
    clock.now_s = t0 + 3600
    await sink.flush(5)
    assert posted(server)[-1][0]["endsAt"] == rfc3339(clock.now_s + 240), "still firing after an hour"
    sink.submit(verdict("d-982", "confirmed", ts=EVENT_TS + 1800, version="v44"))
    await sink.flush(5)
    [resolved] = posted(server)[-1]
    assert resolved["labels"]["deploy_id"] == "d-981" and resolved["endsAt"] == rfc3339(clock.now_s)
    sink.submit(verdict("d-981", "rollback"))  # the same verdict again (a replay) does not page again
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3 and sink.firing == []


async def test_alertmanager_explicit_resolve(server: Recorder) -> None:
    """resolve(service, deploy_id) resolves that deploy's alerts and leaves other services firing."""
    clock = FakeClock()
    sink = am_sink(server, clock)
    await sink.start()
    sink.submit(verdict("d-981", "page"))
    sink.submit(verdict("d-7", "rollback", service="search"))
    await sink.flush(5)
    sink.resolve("checkout", "d-981")
    await sink.flush(5)
    await sink.close(1)
    [resolved] = posted(server)[-1]
    assert resolved["labels"]["service"] == "checkout" and resolved["endsAt"] == rfc3339(clock.now_s)
    assert [f["service"] for f in sink.firing] == ["search"]


