"""The contract's rules event by event: the precise path's reference.

`check_request`, `check_log` and `check_metric` decide whether one event of
a column type is valid and say why not (the column checks of
`columnchecks.py` decide exactly as they do, a whole group at a time, and
fall back on them to give every bad event its reason). The rare types
(deploy, check, incident) are decoded one by one into plain objects by
`decode_deploy`, `decode_check` and `decode_incident`.
"""

from __future__ import annotations

import math

from detector.ingest.columns import (
    INCIDENT_STATUSES,
    PHASES,
    ROOT_CAUSES,
    STRATEGIES,
    CheckEvent,
    DeployEvent,
    IncidentEvent,
)
from detector.ingest.fields import (
    _NUM,
    MAX_LEVEL_CHARS,
    MAX_NAME_CHARS,
    MAX_SERVICE_CHARS,
    BadEvent,
    _jtype,
    parse_ts,
)


def _req_str(d: dict, key: str, max_chars: int = MAX_NAME_CHARS) -> str:
    v = d.get(key)
    if v is None:
        raise BadEvent(f"missing field '{key}'")
    if type(v) is not str:
        raise BadEvent(f"field '{key}' must be a string (got {_jtype(v)})")
    if not v:
        raise BadEvent(f"field '{key}' must not be empty")
    if len(v) > max_chars:
        raise BadEvent(f"field '{key}' is longer than {max_chars} characters (got {len(v)})")
    return v


def _opt_str(d: dict, key: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if type(v) is not str:
        raise BadEvent(f"field '{key}' must be a string or absent (got {_jtype(v)})")
    if len(v) > max_chars:
        raise BadEvent(f"field '{key}' is longer than {max_chars} characters (got {len(v)})")
    return v

def _opt_choice(d: dict, key: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    """An optional string out of `allowed`; absent (or empty, when there is a default) gives `default`."""
    v = _opt_str(d, key)
    if default is not None and not v:
        return default
    if v is not None and v not in allowed:
        raise BadEvent(f"field '{key}' must be one of {', '.join(allowed)} (got {v[:64]!r})")
    return v


def _req_num(d: dict, key: str) -> float:
    v = d.get(key)
    if v is None:
        raise BadEvent(f"missing field '{key}'")
    if type(v) not in _NUM:
        raise BadEvent(f"field '{key}' must be a number (got {_jtype(v)})")
    f = float(v)
    if not math.isfinite(f):
        raise BadEvent(f"field '{key}' must be finite (got {v!r})")
    return f


def check_request(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "endpoint")
    st = d.get("status")
    if st is None:
        raise BadEvent("missing field 'status'")
    if type(st) is not int:
        raise BadEvent(f"field 'status' must be an integer (got {_jtype(st)})")
    if not 100 <= st <= 599:
        raise BadEvent(f"field 'status' must be within 100-599 (got {st})")
    lat = _req_num(d, "latency_ms")
    if lat < 0:
        raise BadEvent(f"field 'latency_ms' must be >= 0 (got {lat})")
    for key in ("version", "instance", "txn"):
        _opt_str(d, key)


def check_log(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "level", MAX_LEVEL_CHARS)
    msg = d.get("message")
    if msg is None:
        raise BadEvent("missing field 'message'")
    if type(msg) is not str:
        raise BadEvent(f"field 'message' must be a string (got {_jtype(msg)})")
    for key in ("version", "instance", "logger", "trace_id"):
        _opt_str(d, key)


def check_metric(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "name")
    _req_num(d, "value")
    labels = d.get("labels")
    if labels is not None:
        if type(labels) is not dict:
            raise BadEvent(f"field 'labels' must be an object of string to string (got {_jtype(labels)})")
        for k, v in labels.items():
            if type(v) is not str:
                raise BadEvent(f"field 'labels.{k[:64]}' must be a string (got {_jtype(v)})")
    for key in ("version", "instance"):
        _opt_str(d, key)


def decode_deploy(d: dict, pos: int) -> DeployEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    deploy_id = _req_str(d, "deploy_id")
    version = _req_str(d, "version")
    phase = _opt_choice(d, "phase", PHASES, "started")
    strategy = _opt_choice(d, "strategy", STRATEGIES)
    weight = d.get("canary_weight")
    if weight is not None:
        weight = _req_num(d, "canary_weight")
        if not 0.0 <= weight <= 1.0:
            raise BadEvent(f"field 'canary_weight' must be within 0-1 (got {weight})")
    return DeployEvent(
        pos=pos,
        ts=ts,
        service=service,
        deploy_id=deploy_id,
        version=version,
        phase=phase,
        previous_version=_opt_str(d, "previous_version"),
        strategy=strategy,
        canary_weight=weight,
        change_kind=_opt_str(d, "change_kind"),
        commit=_opt_str(d, "commit"),
        author=_opt_str(d, "author"),
        reviewers=_opt_str_list(d, "reviewers"),
        labels=_opt_labels(d, "labels"),
    )


def _opt_str_list(d: dict, key: str) -> tuple[str, ...]:
    v = d.get(key)
    if v is None:
        return ()
    if type(v) is not list or any(type(x) is not str for x in v):
        raise BadEvent(f"field '{key}' must be an array of strings or absent (got {_jtype(v)})")
    return tuple(x[:MAX_NAME_CHARS] for x in v)


def _opt_labels(d: dict, key: str) -> tuple[tuple[str, str], ...]:
    v = d.get(key)
    if v is None:
        return ()
    if type(v) is not dict:
        raise BadEvent(f"field '{key}' must be an object of string to string (got {_jtype(v)})")
    for k, x in v.items():
        if type(x) is not str:
            raise BadEvent(f"field '{key}.{k[:64]}' must be a string (got {_jtype(x)})")
    return tuple(sorted(v.items()))


def _opt_num(d: dict, key: str) -> float | None:
    return None if d.get(key) is None else _req_num(d, key)


def decode_check(d: dict, pos: int) -> CheckEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    name = _req_str(d, "name")
    passed = d.get("passed")
    if passed is None:
        raise BadEvent("missing field 'passed'")
    if type(passed) is not bool:
        raise BadEvent(f"field 'passed' must be a boolean (got {_jtype(passed)})")
    duration = _opt_num(d, "duration_ms")
    if duration is not None and duration < 0:
        raise BadEvent(f"field 'duration_ms' must be >= 0 (got {duration})")
    return CheckEvent(pos=pos, ts=ts, service=service, name=name, passed=passed, version=_opt_str(d, "version"),
                      deploy_id=_opt_str(d, "deploy_id"), instance=_opt_str(d, "instance"), duration_ms=duration,
                      message=_opt_str(d, "message", 10_000), url=_opt_str(d, "url", 10_000))


def decode_incident(d: dict, pos: int) -> IncidentEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    incident_id = _req_str(d, "incident_id")
    status = _opt_choice(d, "status", INCIDENT_STATUSES, "opened")
    root = _opt_choice(d, "root_cause", ROOT_CAUSES)
    resolved = d.get("resolved_ts")
    return IncidentEvent(pos=pos, ts=ts, service=service, incident_id=incident_id, status=status,
                         severity=_opt_str(d, "severity"), title=_opt_str(d, "title", 10_000),
                         deploy_id=_opt_str(d, "deploy_id"), root_cause=root,
                         resolved_ts=None if resolved is None else parse_ts(resolved))
