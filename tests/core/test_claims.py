"""Claims the README makes that deserve a test of their own."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
import pytest

from detector.ingest.columns import DeployEvent, DecodedBatch
from detector.config import Limits, load_pipeline, to_toml
from detector.core import Core
from detector.ingest.interner import Interner
from detector.runtime.logsetup import redact
from detector.aggregate.series import OTHER, RequestSeries


def test_a_deploys_only_control_stream_never_holds_the_watermark():
    """Deploy events arrive on their own topic; that topic is not a source of the watermark."""
    core = Core(load_pipeline())
    batch = DecodedBatch(deploys=[DeployEvent(pos=0, ts=1.7e9, service="a", deploy_id="d-1", version="v2")])
    core.process(batch, source=None)
    assert core.windows.max_ts == {}  # nothing holds the watermark back, nothing moved it either


def test_secrets_never_reach_the_settings_log_line():
    settings = {"sasl_password": "hunter2", "ssl_keyfile_password": "pw", "api_token": "t0k",
                "pagerduty_routing_key": "rk", "sasl_username": "alice", "bootstrap": "b:9092"}
    safe = redact(settings)
    assert "hunter2" not in repr(safe) and "t0k" not in repr(safe) and "rk" not in repr(safe)
    assert safe["sasl_username"] == "alice" and safe["bootstrap"] == "b:9092"


def test_a_running_sidecar_does_not_log_its_password(tmp_path):
    """`detector run` logs its settings at start; the SASL password is not among the bytes it writes."""
    p = load_pipeline()
    pipeline = dataclasses.replace(p, kafka=dataclasses.replace(
        p.kafka, sasl_username="alice", sasl_password="s3cret-pa55", http_port=-1))
    path = tmp_path / "pipeline.toml"
    path.write_text(to_toml(pipeline))
    proc = subprocess.Popen([sys.executable, "-m", "detector.cli", "run", "--bootstrap-servers", "127.0.0.1:9",
                             "--pipeline", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={"DETECTOR_LOG_LEVEL": "debug", "PATH": "/usr/bin:/bin"})
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    # Until it has logged its start (a loaded machine may take far longer than usual to import),
    # then a little longer for what it logs right after (its settings).
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None and not any(b"starting" in ln for ln in lines):
            time.sleep(0.1)
        time.sleep(2)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=10)
    out = b"".join(lines)
    assert b"starting" in out
    assert b"s3cret-pa55" not in out


def test_versions_beyond_the_cap_fold_into_other():
    it = Interner()
    series = RequestSeries(it, dataclasses.replace(Limits(), max_versions_per_service=3))
    svc, ep = it.intern("checkout"), it.intern("GET /a")
    versions = [it.intern(f"v{i}") for i in range(6)]
    idx = series.map(np.full(6, svc, np.int32), np.full(6, ep, np.int32), np.asarray(versions, np.int32))
    names = [it.lookup(int(series.version[i])) for i in idx]
    assert names == ["v0", "v1", "v2", OTHER, OTHER, OTHER]
    assert series.overflow == 3


def test_a_replay_never_runs_the_rollback_hook(tmp_path):
    """A replay of history with a rollback verdict and a live (not dry-run) hook runs nothing."""
    from detector.simulate.scoring import pipeline_for
    from detector.replay import run_replay
    from detector.simulate.main import resolve_scenario
    from detector.simulate.output import simulate_to_file
    from detector.simulate.scenario import load_scenario

    events = tmp_path / "events.jsonl"
    truth = simulate_to_file(load_scenario(resolve_scenario("config_fault"), rate_scale=0.3), events)
    marker = tmp_path / "rolled-back"
    base = pipeline_for(truth, None)
    pipeline = dataclasses.replace(base, sinks=dataclasses.replace(
        base.sinks, rollback_command=f"touch {marker}", rollback_dry_run=False,
        rollback_state_path=str(tmp_path / "rollback-state.json")))
    out = tmp_path / "out.jsonl"
    run_replay([str(events)], str(out), pipeline, quiet=True)
    decisions = [orjson.loads(x).get("decision") for x in out.read_bytes().splitlines()]
    assert "rollback" in decisions
    assert not marker.exists()
