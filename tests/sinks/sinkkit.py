"""Shared by the sink tests: the recording HTTP server (tests/recorder.py), an HTTP client with short backoff, sample records."""

from __future__ import annotations

from detector.records import Anomaly, Verdict
from recorder import Recorder, Request  # noqa: F401 - the sink tests import them from here
from detector.sinks import (
    HttpClient,
)

EVENT_TS = 1_764_140_520.0  # 2025-11-26T07:02:00Z: event time, deliberately not "now"
ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"


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


