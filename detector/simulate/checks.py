"""Smoke check results for scenarios that declare `[[checks]]`.

The simulated CD system runs each declared check after every deploy of its
service, as `detector run`'s prober would: against the new version and, when
the check says `stable = true`, against the previous version too. A run is a
request to the check's endpoint on that version at that time, so it fails
as such a request would: the endpoint's error rate, the deploy's faults
(error increase, lost traffic, pod-restart blips), benign disturbances (a
retry storm, a shared database slowing down), or a latency above the
check's timeout. A failure says what a real answer would (`HTTP 500 from
POST /refund: <the new log template's text>` or `timed out after 2 s`).

Draws come from their own random stream, so declaring checks never changes
any other event of the scenario.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import orjson

from detector.simulate.spec import (
    ErrorIncrease,
    InfraSlowdown,
    LatencyIncrease,
    NewLogTemplate,
    PodRestartBlip,
    RetryStorm,
    TrafficLoss,
)

if TYPE_CHECKING:
    from detector.simulate.traffic import Simulator

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _version_index(sim: "Simulator", service_index: int, name: str) -> int:
    tl = sim.timeline
    for i, (v, s) in enumerate(zip(tl.versions, tl.version_service)):
        if v == name and s == service_index:
            return i
    raise KeyError(name)


def _outcome(sim: "Simulator", svc: int, ep: int, ver: int, t: float, timeout_ms: float) -> tuple[float, str, float]:
    """(probability of failing, what a failure says, latency in ms) of one run."""
    at, e_, v_ = np.array([t]), np.array([ep]), np.array([ver])
    p = float(sim.ep_err[ep])
    latency = float(sim.ep_median[ep])
    cause = "error"
    body = ""
    for e in sim.effects.faults:
        if not e.hits(v_, e_, at)[0] and not (isinstance(e.fault, NewLogTemplate) and e.version == ver
                                               and e.start_s <= t < e.end_s):
            continue
        f = e.fault
        if isinstance(f, (ErrorIncrease, PodRestartBlip)):
            p += f.error_rate
        elif isinstance(f, TrafficLoss):
            p += f.fraction
            cause = "refused"
        elif isinstance(f, LatencyIncrease):
            latency *= 1.0 + (f.factor - 1.0) * float(e.ramp(at)[0])
        elif isinstance(f, NewLogTemplate) and f.level in ("ERROR", "FATAL"):
            body = _PLACEHOLDER.sub(lambda m: f"<{m.group(1)}>", f.pattern)
    for e in sim.effects.disturbances:
        d = e.disturbance
        env = float(e.envelope(at)[0])
        if isinstance(d, RetryStorm) and e.endpoint_mask[ep]:
            p += d.error_rate * env
        elif isinstance(d, InfraSlowdown) and e.service_mask[svc]:
            p += d.error_rate * env
            latency *= 1.0 + (d.latency_factor - 1.0) * env
    if latency > timeout_ms:
        return 1.0, "timeout", latency
    return min(p, 1.0), (cause if not body else f"error:{body}"), latency


def smoke_events(sim: "Simulator") -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """(relative event time, service index, serialised check event) of every run, in time order."""
    sc = sim.scenario
    if not sc.checks:
        return np.empty(0), np.empty(0, np.int64), []
    rng = np.random.default_rng([sc.seed, 0xC4EC])
    rows: list[tuple[float, int, bytes]] = []
    for check in sc.checks:
        svc = sim.service_names.index(check.service)
        ep = next(i for i, (n, s) in enumerate(zip(sim.ep_names, sim.ep_service)) if n == check.endpoint and s == svc)
        method, path = sim._ep_method[ep], sim._ep_path[ep]
        for rec in sim.timeline.records:
            d = rec.deploy
            if d.service != check.service:
                continue
            end = min(rec.next_deploy_s if rec.next_deploy_s is not None else sc.duration_s, sc.duration_s)
            targets = [(d.version, rec.version_index)]
            if check.stable:
                targets.append((rec.previous_version, _version_index(sim, svc, rec.previous_version)))
            for i in range(check.runs):
                t = d.at_s + check.delay_s + i * check.interval_s
                if t >= end:
                    break
                for name, ver in targets:
                    p, cause, latency = _outcome(sim, svc, ep, ver, t, check.timeout_ms)
                    failed = bool(rng.random() < p)
                    duration_ms = min(latency, check.timeout_ms) * float(rng.lognormal(0.0, 0.1))
                    event = {"type": "check", "ts": round(sc.start_ts + t + duration_ms / 1000.0, 3),
                             "service": check.service, "name": check.name, "passed": not failed, "version": name,
                             "deploy_id": d.deploy_id, "duration_ms": round(duration_ms, 1),
                             "url": f"http://{check.service}{path}"}
                    if failed:
                        if cause == "timeout":
                            event["message"] = f"timed out after {check.timeout_ms / 1000:g} s: {method} {path}"
                        elif cause == "refused":
                            event["message"] = f"ConnectError from {method} {path}: connection refused"
                        else:
                            text = cause.split(":", 1)[1] if ":" in cause else "Internal Server Error"
                            event["message"] = f"HTTP 500 from {method} {path}: {text}"
                    else:
                        event["message"] = f"HTTP {int(sim.ep_ok[ep])} from {method} {path}"
                    rows.append((event["ts"] - sc.start_ts, svc, orjson.dumps(event)))
    rows.sort(key=lambda r: r[0])
    return (np.asarray([r[0] for r in rows], dtype=np.float64), np.asarray([r[1] for r in rows], dtype=np.int64),
            [r[2] for r in rows])
