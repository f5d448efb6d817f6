"""Shared by the sink tests: a recording HTTP server, an HTTP client with short backoff, sample records."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field


from detector.records import Anomaly, Verdict
from detector.sinks import (
    HttpClient,
)

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


