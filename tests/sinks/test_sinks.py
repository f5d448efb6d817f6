"""Sinks against a local HTTP server that records requests and answers 429/500/400 on demand.

Covers the PagerDuty and webhook bodies (Events API v2 and webhook v1
schemas), retries and backoff, deduplication, the bounded queue, the
Alertmanager sink's timers with an injected clock, and the rollback hook
(once per verdict id across restarts, dry run, timeout, no shell).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog

from detector.config import Sinks
from detector.records import Anomaly, Verdict
from detector.sinks import (
    AlertmanagerSink,
    HttpClient,
    PagerDutySink,
    RollbackConfigError,
    RollbackHook,
    WebhookSink,
    build_sinks,
    encode_action,
)
from detector.sinks.describe import rfc3339
from detector.sinks.http import parse_retry_after

EVENT_TS = 1_764_140_520.0  # 2025-11-26T07:02:00Z: event time, deliberately not "now"
ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"


# --- a recording HTTP server ---


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at_s: float

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Records every POST; answers the next scripted status (default 202), or hangs until released."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    hanging: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        for s in statuses:
            self.script.append((s, headers or {}))

    def bodies(self) -> list[object]:
        return [r.json() for r in self.requests]


@pytest.fixture
def server() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                        time.monotonic()))
            rec.arrived.set()
            if rec.hanging.is_set():
                rec.released.wait(10)
            status, headers = rec.script.popleft() if rec.script else (202, {})
            payload = json.dumps({"status": "success" if status < 300 else "error"}).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield rec
    rec.released.set()
    httpd.shutdown()
    httpd.server_close()


def client(**kw: float) -> HttpClient:
    settings = {"timeout_s": 5.0, "max_retries": 3, "base_delay_s": 0.01, "max_delay_s": 0.05, "seed": 7} | kw
    return HttpClient(**settings)


# --- records ---


def verdict(deploy_id: str = "d-981", decision: str = "rollback", service: str = "checkout",
            ts: float = EVENT_TS, version: str = "v43") -> Verdict:
    return Verdict(ts=ts, service=service, deploy_id=deploy_id, version=version, decision=decision,
                   reasons=("error rate 7.10% vs 0.40% for the stable version on all endpoints",),
                   root_cause="config",
                   evidence=("errors began within 20 s of the deploy on every endpoint",
                             "new log template: missing configuration key <*>"),
                   anomalies=("a-3f9c",), started=ts - 120, ended=ts)


def anomaly(severity: str = "critical", signal: str = "error_rate", ts: float = EVENT_TS,
            endpoint: str | None = "POST /pay") -> Anomaly:
    return Anomaly(ts=ts, service="checkout", endpoint=endpoint, version="v43", signal=signal, observed=0.071,
                   expected=0.004, score=18.2, severity=severity, window_start=ts - 10, window_end=ts,
                   deploy_id="d-981", detail={"rule": "errors-everywhere", "action": "rollback"}).with_id()


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


# --- retries ---


async def test_retries_on_429_and_500_then_succeeds(server: Recorder) -> None:
    """429 and 500 are retried with the identical body until a 2xx arrives; the item counts as sent once."""
    server.answer(429, 500)
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3
    assert len({r.body for r in server.requests}) == 1
    assert sink.stats.sent == 1 and sink.stats.failed == 0


async def test_no_retry_on_400(server: Recorder) -> None:
    """A 400 is final: one request, counted as failed."""
    server.answer(400)
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 1
    assert sink.stats.failed == 1 and sink.stats.sent == 0


async def test_gives_up_after_max_retries(server: Recorder) -> None:
    """A persistent 503 is tried 1 + max_retries times, then counted as failed."""
    server.answer(*[503] * 10)
    sink = WebhookSink(url=server.url, client=client(max_retries=2), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3
    assert sink.stats.failed == 1


async def test_backoff_grows_and_honours_retry_after(server: Recorder) -> None:
    """Waits double per retry (with jitter in [0.5, 1) of nominal) and a Retry-After header raises the wait."""
    waits: list[float] = []

    async def record_sleep(s: float) -> None:
        waits.append(s)

    server.answer(500, 500, 500)
    server.answer(429, headers={"Retry-After": "2"})
    http = HttpClient(timeout_s=5, max_retries=5, base_delay_s=0.1, max_delay_s=10, seed=3, sleep=record_sleep)
    result = await http.post_json(server.url, {"x": 1})
    http.close()
    assert result.ok and result.attempts == 5
    for i, w in enumerate(waits[:3]):
        assert 0.1 * 2 ** i * 0.5 <= w < 0.1 * 2 ** i
    assert waits[3] >= 2.0


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or as an HTTP date relative to now; garbage is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == pytest.approx(20.0)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_connection_refused_is_counted_not_raised() -> None:
    """An endpoint nobody listens on ends as a failed item after the retries; submit and flush do not raise."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(url=f"http://127.0.0.1:{port}/hook", client=client(max_retries=1), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    assert await sink.flush(5)
    await sink.close(1)
    assert sink.stats.failed == 1


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


# --- the bounded queue ---


async def test_bounded_queue_drops_oldest_while_the_endpoint_hangs(server: Recorder) -> None:
    """With the endpoint hung, submit returns at once and the queue keeps only the newest queue_max items."""
    server.hanging.set()
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",), queue_max=3)
    await sink.start()
    sink.submit(verdict("d-0", service="s0"))
    await asyncio.sleep(0)  # let the worker take d-0 into the hung request
    assert await asyncio.to_thread(server.arrived.wait, 5)
    started = time.perf_counter()
    for i in range(1, 1001):
        sink.submit(verdict(f"d-{i}", service=f"s{i}"))
    elapsed_s = time.perf_counter() - started
    assert sink.queued == 3
    assert sink.stats.dropped == 997
    assert elapsed_s < 1.0, f"1000 submits took {elapsed_s:.3f} s against a hung endpoint"
    server.released.set()
    assert await sink.flush(10)
    await sink.close(1)
    assert [b["dedup_key"] for b in server.bodies()] == ["v-d-0", "v-d-998", "v-d-999", "v-d-1000"]
    s = sink.stats
    assert s.submitted == s.sent + s.failed + s.dropped == 1001


async def test_close_gives_up_on_a_hung_endpoint_within_its_timeout(server: Recorder) -> None:
    """close(timeout_s) returns in about timeout_s when the endpoint hangs, counting what was left as dropped."""
    server.hanging.set()
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict("d-1", service="a"))
    sink.submit(verdict("d-2", service="b"))
    started = time.perf_counter()
    await sink.close(0.3)
    assert time.perf_counter() - started < 2.0
    assert sink.stats.dropped == 2 and sink.stats.sent == 0


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


# --- rollback hook ---

RECORDER_SCRIPT = """
import json, sys, pathlib
pathlib.Path(sys.argv[1]).open("a").write(json.dumps(sys.argv[2:]) + "\\n")
print("rolled back", *sys.argv[2:])
"""


@pytest.fixture
def rollback_cmd(tmp_path: Path) -> tuple[str, Path]:
    """A command template that appends its arguments to a log file, and that file."""
    script = tmp_path / "undo.py"
    script.write_text(RECORDER_SCRIPT)
    log_file = tmp_path / "runs.jsonl"
    template = (f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(log_file))} "
                "deployment/{service} --to-revision-of={deploy_id} {version}")
    return template, log_file


def runs(log_file: Path) -> list[list[str]]:
    return [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []


async def test_rollback_runs_once_per_verdict_id_across_restart(tmp_path: Path,
                                                                rollback_cmd: tuple[str, Path]) -> None:
    """The command runs once per verdict id, also when a new hook instance reads the same state file."""
    template, log_file = rollback_cmd
    state = tmp_path / "state" / "rollback.json"
    hook = RollbackHook(command=template, dry_run=False, timeout_s=10, state_path=state)
    await hook.start()
    hook.submit(verdict("d-981"))
    hook.submit(verdict("d-981"))
    hook.submit(verdict("d-5", "page"))  # not a rollback
    await hook.flush(10)
    hook.submit(verdict("d-981"))
    await hook.flush(10)
    await hook.close(1)
    [outcome] = hook.take_outcomes()
    assert outcome["outcome"] == "ok" and outcome["exit_code"] == 0
    assert outcome["type"] == "action" and outcome["id"] == "act-v-d-981" and outcome["via"] == "command"
    assert "rolled back deployment/checkout --to-revision-of=d-981 v43" in outcome["output_tail"]
    assert outcome["target"].endswith("deployment/checkout --to-revision-of=d-981 v43")
    assert json.loads(encode_action(outcome))["verdict_id"] == "v-d-981"

    restarted = RollbackHook(command=template, dry_run=False, timeout_s=10, state_path=state)
    await restarted.start()
    restarted.submit(verdict("d-981"))
    restarted.submit(verdict("d-982", service="search"))
    await restarted.flush(10)
    await restarted.close(1)
    assert runs(log_file) == [["deployment/checkout", "--to-revision-of=d-981", "v43"],
                              ["deployment/search", "--to-revision-of=d-982", "v43"]]
    assert await restarted.execute(verdict("d-981")) is None


async def test_rollback_dry_run_runs_nothing(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """In dry-run mode the outcome names the command that would run and nothing is executed."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=True, state_path=tmp_path / "state.json")
    outcome = await hook.execute(verdict())
    assert outcome is not None and outcome["outcome"] == "dry_run" and outcome["exit_code"] is None
    assert "deployment/checkout" in outcome["target"]
    assert runs(log_file) == []


async def test_rollback_timeout_kills_a_hanging_command(tmp_path: Path) -> None:
    """A command that outlives timeout_s is killed; the outcome is failed with its output so far."""
    script = tmp_path / "hang.py"
    script.write_text("import time\nprint('draining {0}', flush=True)\ntime.sleep(60)\n")
    template = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    hook = RollbackHook(command=template, dry_run=False, timeout_s=0.5, state_path=tmp_path / "state.json")
    started = time.monotonic()
    outcome = await hook.execute(verdict())
    assert time.monotonic() - started < 5
    assert outcome is not None and outcome["outcome"] == "failed"
    assert outcome["exit_code"] == -9
    assert "timed out after 0.5 s" in outcome["error"]
    assert "draining" in outcome["output_tail"]


async def test_rollback_values_are_arguments_never_shell(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """A service name with shell syntax stays one argument; no shell ever sees it."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "state.json")
    evil = f"x; touch {tmp_path / 'pwned'}"
    outcome = await hook.execute(verdict(service=evil))
    assert outcome is not None and outcome["outcome"] == "ok"
    assert runs(log_file)[0][0] == f"deployment/{evil}"
    assert not (tmp_path / "pwned").exists()


async def test_rollback_failing_command_reports_exit_code(tmp_path: Path) -> None:
    """A command that exits non-zero is a failed outcome with that exit code."""
    template = f"{shlex.quote(sys.executable)} -c 'import sys; print(\"no such deployment\"); sys.exit(3)'"
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "state.json")
    outcome = await hook.execute(verdict())
    assert outcome is not None
    assert (outcome["outcome"], outcome["exit_code"]) == ("failed", 3)
    assert "no such deployment" in outcome["output_tail"]


def test_rollback_rejects_unknown_placeholders_and_bad_quotes() -> None:
    """Templates with unknown placeholders or unbalanced quotes fail at construction with the fix in the message."""
    with pytest.raises(RollbackConfigError, match=r"\{svc\}.*known placeholders: \{service\}"):
        RollbackHook(command="kubectl rollout undo deployment/{svc}")
    with pytest.raises(RollbackConfigError, match="quotes"):
        RollbackHook(command="kubectl 'rollout")
    with pytest.raises(RollbackConfigError, match="exactly one"):
        RollbackHook(command="true", url="http://127.0.0.1:1/")


def test_rollback_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    """An unreadable state file stops the hook instead of forgetting which rollbacks already ran."""
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(RollbackConfigError, match="state file"):
        RollbackHook(command="true", state_path=state)


async def test_rollback_over_http_posts_once_with_idempotency_key(server: Recorder, tmp_path: Path) -> None:
    """The HTTP action POSTs the verdict with an Idempotency-Key and reports the status."""
    hook = RollbackHook(url=server.url + "/rollback", dry_run=False, client=client(),
                        state_path=tmp_path / "state.json")
    await hook.start()
    hook.submit(verdict())
    hook.submit(verdict())
    await hook.flush(5)
    await hook.close(1)
    [req] = server.requests
    assert req.headers["idempotency-key"] == "act-v-d-981"
    body = req.json()
    assert body["action"] == "rollback" and body["verdict"]["id"] == "v-d-981"
    [outcome] = hook.take_outcomes()
    assert outcome["outcome"] == "ok" and outcome["http_status"] == 202 and outcome["via"] == "http"


async def test_rollback_skips_verdicts_older_than_max_age(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """With max_verdict_age_s set, a verdict from a replay of old events is skipped, not acted on."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "s.json", max_verdict_age_s=3600,
                        clock=lambda: EVENT_TS + 7200)
    outcome = await hook.execute(verdict())
    assert outcome is not None and outcome["outcome"] == "skipped"
    assert runs(log_file) == []


# --- build_sinks ---


def test_build_sinks_switches_sinks_on_by_settings_and_environment(tmp_path: Path) -> None:
    """Each sink is built only when its setting is given; the PagerDuty key may come from the environment."""
    assert not build_sinks(Sinks())
    s = build_sinks(Sinks(webhook_url="http://127.0.0.1:1/h", rollback_command="kubectl rollout undo {service}"),
                    alertmanager_url="http://127.0.0.1:9093", env={"DETECTOR_PAGERDUTY_ROUTING_KEY": ROUTING_KEY},
                    rollback_state_path=tmp_path / "r.json")
    assert [x.name for x in s.sinks] == ["alertmanager", "pagerduty", "webhook", "rollback"]
    assert s.alertmanager is not None and s.alertmanager.url == "http://127.0.0.1:9093/api/v2/alerts"
    assert s.rollback is not None and s.rollback.dry_run is True
    for sink in s.sinks:
        if hasattr(sink, "client") and sink.client is not None:
            sink.client.close()


async def test_sink_set_fans_out_and_reports_actions(server: Recorder, tmp_path: Path,
                                                      rollback_cmd: tuple[str, Path]) -> None:
    """One submit reaches every sink; take_actions returns the rollback outcome once."""
    template, _ = rollback_cmd
    settings = Sinks(alertmanager_url=server.url, webhook_url=server.url + "/hook", rollback_command=template,
                     max_retries=1)
    sinks = build_sinks(settings, rollback_state_path=tmp_path / "r.json")
    await sinks.start()
    sinks.submit(verdict())
    assert await sinks.flush(5)
    [action] = sinks.take_actions()
    assert action["outcome"] == "dry_run"
    assert sinks.take_actions() == []
    await sinks.close(1)
    assert sorted(r.path for r in server.requests) == ["/api/v2/alerts", "/hook"]
    assert sinks.stats()["webhook"]["sent"] == 1
