"""Against a real Alertmanager: alerts arrive with their labels and resolve; the shipped config routes them.

Starts ``prometheus-alertmanager`` (Debian package; ``scripts/install-alertmanager.sh``
installs it) on a free loopback port with clustering off, and stops it after
each test. Also checks the deployment files that wire Alertmanager in:
``deploy/alertmanager.yml``, ``docker-compose.yml`` and the ``Dockerfile``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from alertmanagerproc import get_alerts, require_alertmanager, running_alertmanager
from realparts import missing

from detector.records import Anomaly, RootCause, Verdict
from detector.sinks import AlertmanagerSink, HttpClient

REPO = Path(__file__).resolve().parents[2]
EVENT_TS = 1_764_140_520.0  # an old event time: the alerts must still show as current


@pytest.fixture
def alertmanager_present() -> None:
    require_alertmanager()


needs_alertmanager = pytest.mark.usefixtures("alertmanager_present")


def parse_time(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


@contextmanager
def notification_receiver() -> Iterator[tuple[str, list[dict]]]:
    """A loopback webhook receiver for Alertmanager's notifications: (URL, received bodies)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/notify", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def rollback_verdict(deploy_id: str = "d-981", decision: str = "rollback", ts: float = EVENT_TS) -> Verdict:
    return Verdict(ts=ts, service="checkout", deploy_id=deploy_id, version="v43", decision=decision,
                   reasons=("error rate 7.10% vs 0.40% for the stable version on all endpoints",),
                   root_cause="config", evidence=("new log template: missing configuration key <*>",),
                   anomalies=(), started=ts - 120, ended=ts)


def critical_anomaly() -> Anomaly:
    return Anomaly(ts=EVENT_TS, service="checkout", endpoint="POST /pay", version="v43", signal="error_rate",
                   observed=0.071, expected=0.004, score=18.2, severity="critical", window_start=EVENT_TS - 10,
                   window_end=EVENT_TS, deploy_id="d-981",
                   detail={"rule": "errors-everywhere", "action": "rollback"}).with_id()


@needs_alertmanager
async def test_alerts_reach_alertmanager_with_labels_and_then_resolve(tmp_path: Path) -> None:
    """A verdict and an anomaly show in Alertmanager as current alerts with their labels, then both resolve."""
    resolve_s = 1.5
    with notification_receiver() as (hook_url, notifications):
        config = f"""
route:
  receiver: recorder
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: recorder
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
"""
        with running_alertmanager(config, tmp_path) as am_url:
            sink = AlertmanagerSink(url=am_url, client=HttpClient(timeout_s=5, max_retries=2, base_delay_s=0.05),
                                    resend_s=60, resolve_s=resolve_s, generator_url="http://detector.example/")
            await sink.start()
            posted_at = time.time()
            sink.submit(rollback_verdict())
            sink.submit(critical_anomaly())
            assert await sink.flush(5)

            alerts = {a["labels"]["alertname"]: a for a in get_alerts(am_url)}
            assert set(alerts) == {"DeployRollback", "DetectorAnomaly"}
            v, a = alerts["DeployRollback"], alerts["DetectorAnomaly"]
            assert v["labels"] == {"alertname": "DeployRollback", "service": "checkout", "signal": "deploy",
                                   "severity": "critical", "deploy_id": "d-981", "version": "v43",
                                   "decision": "rollback"}
            assert v["status"]["state"] == "active"
            assert v["annotations"]["event_time"] == "2025-11-26T07:02:00.000Z"
            assert v["annotations"]["root_cause"] == "config"
            assert "error rate 7.10%" in v["annotations"]["description"]
            assert v["generatorURL"] == "http://detector.example/"
            assert abs(parse_time(v["startsAt"]) - posted_at) < 30, "wall-clock start, not the event time"
            assert parse_time(v["endsAt"]) > time.time() + 60
            assert {k: a["labels"][k] for k in ("service", "signal", "severity", "endpoint", "deploy_id")} == {
                "service": "checkout", "signal": "error_rate", "severity": "critical", "endpoint": "POST /pay",
                "deploy_id": "d-981"}

            # The anomaly goes quiet for resolve_s; a later deploy's verdict supersedes the rollback verdict.
            await asyncio.sleep(max(0.0, posted_at + resolve_s - time.time()) + 0.1)
            sink.submit(rollback_verdict("d-982", "confirmed", ts=EVENT_TS + 1800))
            assert await sink.flush(5)
            await sink.close(2)
            assert get_alerts(am_url) == [], "resolved alerts are no longer active"

            deadline = time.monotonic() + 10
            resolved: dict[str, dict] = {}
            while time.monotonic() < deadline and len(resolved) < 2:
                for body in list(notifications):
                    for alert in body["alerts"]:
                        if alert["status"] == "resolved":
                            resolved[alert["labels"]["alertname"]] = alert
                await asyncio.sleep(0.1)
            assert set(resolved) == {"DeployRollback", "DetectorAnomaly"}, notifications
            for alert in resolved.values():
                assert parse_time(alert["endsAt"]) <= time.time()
            fired = {al["labels"]["alertname"] for body in notifications for al in body["alerts"]
                     if al["status"] == "firing"}
            assert fired == {"DeployRollback", "DetectorAnomaly"}


@needs_alertmanager
async def test_shipped_config_routes_verdicts_to_oncall_and_inhibits_their_anomalies(tmp_path: Path) -> None:
    """deploy/alertmanager.yml loads, sends verdicts to deploy-oncall and mutes the anomalies of that deploy."""
    config = (REPO / "deploy" / "alertmanager.yml").read_text()
    with running_alertmanager(config, tmp_path) as am_url:
        sink = AlertmanagerSink(url=am_url, client=HttpClient(timeout_s=5, max_retries=2, base_delay_s=0.05))
        await sink.start()
        sink.submit(rollback_verdict())
        sink.submit(critical_anomaly())
        assert await sink.flush(5)
        await sink.close(2)
        # Alertmanager's inhibitor takes in new alerts asynchronously: the muted state can lag the POST.
        deadline = time.monotonic() + 5
        while True:
            alerts = {a["labels"]["alertname"]: a for a in get_alerts(am_url)}
            if alerts["DetectorAnomaly"]["status"]["state"] == "suppressed" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert [r["name"] for r in alerts["DeployRollback"]["receivers"]] == ["deploy-oncall"]
    assert alerts["DeployRollback"]["status"]["state"] == "active"
    assert [r["name"] for r in alerts["DetectorAnomaly"]["receivers"]] == ["deploy-anomalies"]
    assert alerts["DetectorAnomaly"]["status"]["state"] == "suppressed"
    assert alerts["DetectorAnomaly"]["status"]["inhibitedBy"], "muted by the rollback verdict of the same deploy"


@needs_alertmanager
async def test_a_root_cause_record_updates_its_verdicts_alert_in_place(tmp_path: Path) -> None:
    """The verdict's alert first shows the verdict's root cause; after its root_cause record Alertmanager holds the
    same alert (same labels, same fingerprint, same start) with the completed root cause in its annotations. A
    record for a verdict with no alert here (a `ticket`, not posted) changes nothing."""
    config = """
route:
  receiver: nobody
receivers:
  - name: nobody
"""
    with running_alertmanager(config, tmp_path) as am_url:
        sink = AlertmanagerSink(url=am_url, client=HttpClient(timeout_s=5, max_retries=2, base_delay_s=0.05),
                                resend_s=60)
        await sink.start()
        sink.submit(rollback_verdict())
        sink.submit(dataclasses.replace(rollback_verdict("d-5", "ticket"), service="search"))
        assert await sink.flush(5)
        [before] = get_alerts(am_url)
        assert before["annotations"]["root_cause"] == "config"
        assert before["annotations"]["root_cause_evidence"] == "new log template: missing configuration key <*>"

        sink.submit(RootCause(ts=EVENT_TS + 30, service="checkout", deploy_id="d-981", root_cause="code",
                              evidence=("new log template: TypeError: <*> in pay_handler line <NUM>",)))
        sink.submit(RootCause(ts=EVENT_TS + 30, service="search", deploy_id="d-5", root_cause="data_or_infra",
                              evidence=("database latency x9",)))
        assert await sink.flush(5)
        await sink.close(2)
        [after] = get_alerts(am_url)
    assert after["labels"] == before["labels"] and after["fingerprint"] == before["fingerprint"]
    assert after["startsAt"] == before["startsAt"] and after["status"]["state"] == "active"
    notes = after["annotations"]
    assert notes["root_cause"] == "code"
    assert notes["root_cause_evidence"] == "new log template: TypeError: <*> in pay_handler line <NUM>"
    assert "root cause: code" in notes["description"] and "root cause: config" not in notes["description"]
    assert notes["root_cause_record_id"] == "v-d-981-rc" and notes["record_id"] == "v-d-981"
    assert notes["summary"] == before["annotations"]["summary"], "the decision and its reasons stay"


# --- deployment files ---


def _compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the compose file cannot be parsed here")
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _dockerfile_copies() -> dict[str, Path]:
    """Image path -> repository path for each COPY of the Dockerfile (destinations made absolute)."""
    copies: dict[str, Path] = {}
    workdir = "/"
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "WORKDIR":
            workdir = words[1]
        if words[0] == "COPY":
            *sources, raw_dest = words[1:]
            dest = raw_dest if raw_dest.startswith("/") else f"{workdir.rstrip('/')}/{raw_dest.removeprefix('./')}"
            dest = dest.rstrip("/")
            if len(sources) > 1 or raw_dest.endswith("/"):  # dest is a directory: each source lands in it by name
                copies.update({f"{dest}/{Path(src).name}": REPO / src for src in sources})
            else:
                copies[dest] = REPO / sources[0]
    return copies


def _in_image(path: str, copies: dict[str, Path]) -> Path:
    """The repository file an absolute image path comes from, by the Dockerfile's COPY lines."""
    for dest, src in copies.items():
        if path == dest or path.startswith(dest + "/"):
            return src / path[len(dest):].lstrip("/")
    raise AssertionError(f"{path} is not copied into the image by the Dockerfile (copies: {sorted(copies)})")


def test_dockerfile_builds_the_detector_from_the_repository() -> None:
    """The image is python:3.11-slim, installs the package and runs `detector run`."""
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text.splitlines()
    assert "RUN pip install ." in text
    assert 'ENTRYPOINT ["detector", "run"]' in text
    for dest, src in _dockerfile_copies().items():
        assert src.exists(), f"Dockerfile copies {src.relative_to(REPO)} to {dest}, but it does not exist"


def test_compose_file_wires_kafka_detector_simulator_and_alertmanager() -> None:
    """Every service uses the intended image, and every command the containers run parses and names real files."""
    from detector.cli import build_parser

    services = _compose()["services"]
    assert set(services) == {"kafka", "detector", "simulator", "alertmanager"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services["detector"]["build"] == "." and services["simulator"]["build"] == "."

    copies = _dockerfile_copies()
    parser = build_parser()
    run = parser.parse_args(["run", *services["detector"]["command"]])
    assert run.bootstrap_servers == "kafka:9092"
    assert _in_image(run.pipeline, copies).is_file()
    assert run.alertmanager_url == "http://alertmanager:9093"

    assert services["simulator"]["entrypoint"] == ["detector", "simulate"]
    sim = parser.parse_args(["simulate", *services["simulator"]["command"]])
    assert sim.bootstrap_servers == "kafka:9092" and sim.speed == 20
    assert _in_image(sim.scenario, copies).name == "demo.toml"
    assert _in_image(sim.scenario, copies).is_file()

    [volume] = services["alertmanager"]["volumes"]
    source, target, _mode = volume.split(":")
    assert (REPO / source).resolve() == REPO / "deploy" / "alertmanager.yml"
    assert f"--config.file={target}" in services["alertmanager"]["command"]


@needs_alertmanager
def test_install_script_is_a_no_op_when_alertmanager_is_present(tmp_path: Path) -> None:
    """scripts/install-alertmanager.sh exits 0 without calling apt-get when the binary is already installed."""
    if not os.access("/usr/bin/prometheus-alertmanager", os.X_OK):
        missing("the script checks /usr/bin/prometheus-alertmanager, which is not the binary in use here")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "apt-get-called"
    (fake_bin / "apt-get").write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\nexit 1\n")
    (fake_bin / "apt-get").chmod(0o755)
    done = subprocess.run(["bash", str(REPO / "scripts" / "install-alertmanager.sh")], capture_output=True,
                          timeout=30, env={**os.environ, "PATH": f"{fake_bin}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
