"""Scenario files: TOML -> frozen dataclasses, validated once.

A scenario says which services exist (endpoints with their rates, error rates
and latency), which deploys happen when (strategy, faults injected into the
new version, the verdict a correct detector should reach) and which benign
disturbances hit production meanwhile. Every unknown key, wrong type or
impossible value is a `ScenarioError` naming the file, the key, the value and
what was expected; nothing is defaulted silently except the documented
defaults below.

The model is in `spec`, the strict table reader in `strict_toml`; this
module turns the tables of a file into the model.
"""

from __future__ import annotations

import hashlib
import math
import string
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detector.simulate.messages import PLACEHOLDERS
from detector.simulate.spec import (AUTHORS, CHANGE_KINDS, LATENCY_MODES, LOG_LEVELS, MAX_DURATION_S, ROOT_CAUSES,
                                    STRATEGIES, VERDICTS, Deploy, Disturbance, DropTransactions, Endpoint,
                                    ErrorIncrease, Fault, InfraSlowdown, LatencyIncrease, NewLogTemplate,
                                    PodRestartBlip, RetryStorm, Scenario, ScenarioError, Service, SmokeCheck, Traffic,
                                    TrafficLoss, TrafficSurge)
from detector.simulate.strict_toml import _start_ts, _Table


def _endpoint(t: _Table) -> Endpoint:
    median = t.num("latency_median_ms", lo=0.0, lo_open=True)
    p99 = t.num("latency_p99_ms", lo=0.0, lo_open=True)
    if p99 <= median * 1.05:
        raise t.fail("latency_p99_ms", p99, f"a number above 1.05 x latency_median_ms ({median:g})")
    txn = t.str_("txn", None)
    txn_fraction = t.num("txn_fraction", 0.9 if txn else 0.0, lo=0.0, hi=1.0)
    if txn is None and t.has("txn_fraction"):
        raise t.fail("txn_fraction", txn_fraction, "given only together with txn")
    ep = Endpoint(
        name=t.str_("name"),
        rps=t.num("rps", lo=0.0, lo_open=True, hi=100_000.0),
        error_rate=t.num("error_rate", 0.002, lo=0.0, hi=0.5),
        client_error_rate=t.num("client_error_rate", 0.02, lo=0.0, hi=0.5),
        latency_median_ms=median,
        latency_p99_ms=p99,
        critical=t.bool_("critical", False),
        txn=txn,
        txn_fraction=txn_fraction,
    )
    t.done()
    return ep


def _service(t: _Table) -> Service:
    name = t.str_("name")
    eps = tuple(_endpoint(e) for e in t.tables("endpoints", required=True))
    names = [e.name for e in eps]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise t.fail("endpoints", sorted(dup), "endpoints with distinct names")
    svc = Service(
        name=name,
        version=t.str_("version", "v1"),
        instances=t.int_("instances", 4, lo=1, hi=200),
        endpoints=eps,
        db=t.str_("db", None),
        db_latency_ms=t.num("db_latency_ms", 4.0, lo=0.0, lo_open=True),
        cpu_base=t.num("cpu_base", 0.35, lo=0.01, hi=0.9),
        info_log_rate=t.num("info_log_rate", 0.12, lo=0.0, hi=5.0),
        warn_log_rate=t.num("warn_log_rate", 0.01, lo=0.0, hi=5.0),
        error_log_fraction=t.num("error_log_fraction", 0.9, lo=0.0, hi=1.0),
    )
    t.done()
    return svc


def _check_endpoints(t: _Table, key: str, names: tuple[str, ...], svc: Service) -> tuple[str, ...]:
    known = svc.endpoint_names()
    for n in names:
        if n not in known:
            raise t.fail(key, n, f"an endpoint of service {svc.name!r} ({', '.join(known)})")
    return names


def _pattern(t: _Table) -> str:
    pattern = t.str_("pattern")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as e:
        raise t.fail(
            "pattern", pattern, f"a pattern with balanced braces ({e}); write {{{{ for a literal brace"
        ) from None
    allowed = ", ".join(sorted(PLACEHOLDERS))
    for name in fields:
        if name not in PLACEHOLDERS:
            raise t.fail("pattern", pattern, f"placeholders among {{{allowed}}} (found {{{name}}})")
    return pattern


def _fault(t: _Table, svc: Service) -> Fault:
    kind = t.str_("kind", choices=tuple(FAULT_READERS))
    fault = FAULT_READERS[kind](t, svc)
    t.done()
    return fault


def _fault_common(t: _Table, svc: Service, duration_default: float = math.inf) -> dict[str, Any]:
    return dict(
        onset_s=t.num("onset_s", 0.0, lo=0.0),
        endpoints=_check_endpoints(t, "endpoints", t.str_list("endpoints"), svc),
        duration_s=t.num("duration_s", duration_default, lo=0.0, lo_open=True),
    )


def _latency_increase(t: _Table, svc: Service) -> LatencyIncrease:
    mode = t.str_("mode", "step", choices=LATENCY_MODES)
    ramp_s = t.num("ramp_s", 0.0, lo=0.0)
    if mode == "ramp" and ramp_s <= 0:
        raise t.fail("ramp_s", ramp_s, "a number > 0 when mode = 'ramp'")
    if mode == "step" and t.has("ramp_s"):
        raise t.fail("ramp_s", ramp_s, "given only with mode = 'ramp'")
    return LatencyIncrease(
        **_fault_common(t, svc), factor=t.num("factor", lo=1.0, lo_open=True, hi=100.0), mode=mode, ramp_s=ramp_s
    )


FAULT_READERS: dict[str, Callable[[_Table, Service], Fault]] = {
    "error_increase": lambda t, s: ErrorIncrease(
        **_fault_common(t, s), error_rate=t.num("error_rate", lo=0.0, lo_open=True, hi=1.0)
    ),
    "latency_increase": _latency_increase,
    "drop_transactions": lambda t, s: DropTransactions(
        **_fault_common(t, s), fraction=t.num("fraction", lo=0.0, lo_open=True, hi=1.0)
    ),
    "traffic_loss": lambda t, s: TrafficLoss(
        **_fault_common(t, s), fraction=t.num("fraction", lo=0.0, lo_open=True, hi=1.0)
    ),
    "new_log_template": lambda t, s: NewLogTemplate(
        **_fault_common(t, s),
        pattern=_pattern(t),
        level=t.str_("level", "ERROR", choices=LOG_LEVELS),
        rate_per_request=t.num("rate_per_request", 0.05, lo=0.0, lo_open=True, hi=5.0),
    ),
    "pod_restart_blip": lambda t, s: PodRestartBlip(
        **_fault_common(t, s, duration_default=10.0), error_rate=t.num("error_rate", 0.3, lo=0.0, lo_open=True, hi=1.0)
    ),
}


def _short_hash(*parts: str, n: int = 40) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:n]


def _deploy(t: _Table, services: dict[str, Service], duration_s: float) -> Deploy:
    svc_name = t.str_("service")
    if svc_name not in services:
        raise t.fail("service", svc_name, f"one of the scenario's services ({', '.join(services)})")
    svc = services[svc_name]
    version = t.str_("version")
    at_s = t.num("at_s", lo=0.0, hi=duration_s, hi_open=True)
    strategy = t.str_("strategy", "rolling", choices=STRATEGIES)
    rollout_s = t.num("rollout_s", 300.0 if strategy == "rolling" else 0.0, lo=0.0)
    if strategy == "rolling" and rollout_s <= 0:
        raise t.fail("rollout_s", rollout_s, "a number > 0 for a rolling deploy")
    if strategy != "rolling" and t.has("rollout_s"):
        raise t.fail("rollout_s", rollout_s, f"given only for strategy 'rolling' (strategy is {strategy!r})")
    weight = None
    promote = None
    if strategy == "canary":
        weight = t.num("canary_weight", 0.1, lo=0.0, lo_open=True, hi=1.0, hi_open=True)
        promote = t.num("promote_after_s", None, lo=0.0, lo_open=True)
    else:
        for k in ("canary_weight", "promote_after_s"):
            if t.has(k):
                raise t.fail(k, t.raw(k), f"given only for strategy 'canary' (strategy is {strategy!r})")
    deploy_id = t.str_("id", f"d-{svc_name}-{version}")
    faults = tuple(_fault(f, svc) for f in t.tables("faults"))
    d = Deploy(
        deploy_id=deploy_id,
        service=svc_name,
        at_s=at_s,
        version=version,
        strategy=strategy,
        change_kind=t.str_("change_kind", "code", choices=CHANGE_KINDS),
        commit=t.str_("commit", _short_hash(svc_name, version)),
        author=t.str_("author", AUTHORS[int(_short_hash(deploy_id, n=8), 16) % len(AUTHORS)]),
        rollout_s=rollout_s,
        canary_weight=weight,
        promote_after_s=promote,
        faults=faults,
        expect=t.str_("expect", None, choices=VERDICTS),
        expect_root_cause=t.str_("expect_root_cause", None, choices=ROOT_CAUSES),
    )
    t.done()
    return d


def _disturbance(t: _Table, services: dict[str, Service], duration_s: float) -> Disturbance:
    kind = t.str_("kind", choices=("traffic_surge", "retry_storm", "infra_slowdown"))
    common: dict[str, Any] = dict(
        start_s=t.num("start_s", lo=0.0, hi=duration_s, hi_open=True),
        duration_s=t.num("duration_s", lo=0.0, lo_open=True),
        ramp_s=t.num("ramp_s", 30.0 if kind != "retry_storm" else 10.0, lo=0.0),
    )
    if 2 * common["ramp_s"] > common["duration_s"]:
        raise t.fail("ramp_s", common["ramp_s"], f"at most half of duration_s ({common['duration_s']:g})")
    names = t.str_list("services")
    for n in names:
        if n not in services:
            raise t.fail("services", n, f"one of the scenario's services ({', '.join(services)})")
    dist: Disturbance
    if kind == "traffic_surge":
        dist = TrafficSurge(
            **common, services=names or tuple(services), multiplier=t.num("multiplier", lo=0.0, lo_open=True, hi=50.0)
        )
    elif kind == "retry_storm":
        if len(names) != 1:
            raise t.fail("services", list(names), "exactly one service for a retry_storm")
        eps = _check_endpoints(t, "endpoints", t.str_list("endpoints"), services[names[0]])
        dist = RetryStorm(
            **common,
            services=names,
            endpoints=eps,
            multiplier=t.num("multiplier", lo=1.0, lo_open=True, hi=50.0),
            error_rate=t.num("error_rate", 0.02, lo=0.0, hi=1.0),
        )
    else:
        db = t.str_("db")
        users = tuple(s.name for s in services.values() if s.db == db)
        if names:
            users = names
        if not users:
            raise t.fail("db", db, "a database some service uses (services.db) or an explicit services list")
        dist = InfraSlowdown(
            **common,
            services=users,
            db=db,
            latency_factor=t.num("latency_factor", 2.0, lo=1.0, hi=100.0),
            error_rate=t.num("error_rate", 0.01, lo=0.0, hi=1.0),
            db_latency_factor=t.num("db_latency_factor", 8.0, lo=1.0, hi=1000.0),
            timeout_ms=t.int_("timeout_ms", 3000, lo=1),
            log_rate=t.num("log_rate", 0.02, lo=0.0, hi=5.0),
        )
    t.done()
    return dist


def _smoke_check(t: _Table, services: dict[str, Service]) -> SmokeCheck:
    svc_name = t.str_("service")
    if svc_name not in services:
        raise t.fail("service", svc_name, f"one of the scenario's services ({', '.join(services)})")
    (endpoint,) = _check_endpoints(t, "endpoint", (t.str_("endpoint"),), services[svc_name])
    check = SmokeCheck(
        service=svc_name,
        name=t.str_("name"),
        endpoint=endpoint,
        delay_s=t.num("delay_s", 10.0, lo=0.0),
        interval_s=t.num("interval_s", 10.0, lo=0.0, lo_open=True),
        runs=t.int_("runs", 6, lo=1, hi=1000),
        stable=t.bool_("stable", True),
        timeout_ms=t.num("timeout_ms", 2000.0, lo=0.0, lo_open=True),
    )
    t.done()
    return check


def _check_deploy_order(deploys: tuple[Deploy, ...], services: dict[str, Service], source: str) -> None:
    ids = [d.deploy_id for d in deploys]
    for i, d in enumerate(deploys):
        if ids.count(d.deploy_id) > 1:
            raise ScenarioError(f"{source}: deploys[{i}].id {d.deploy_id!r} is used twice; deploy ids must be unique")
    for svc in services.values():
        mine = sorted((d for d in deploys if d.service == svc.name), key=lambda d: d.at_s)
        seen = {svc.version}
        for prev, d in zip([None, *mine], mine):
            if d.version in seen:
                raise ScenarioError(
                    f"{source}: deploy {d.deploy_id!r} re-deploys version {d.version!r} of {svc.name!r}; "
                    "give every deploy of a service a new version"
                )
            seen.add(d.version)
            if prev is None:
                continue
            if d.at_s == prev.at_s:
                raise ScenarioError(
                    f"{source}: deploys {prev.deploy_id!r} and {d.deploy_id!r} of {svc.name!r} start at the same at_s"
                )
            fin = prev.finished_at_s()
            # A canary may be superseded (the contract allows it); a half-done
            # rolling deploy may not, because its traffic split would be undefined.
            if prev.strategy == "rolling" and fin is not None and d.at_s < fin:
                raise ScenarioError(
                    f"{source}: deploy {d.deploy_id!r} starts at_s={d.at_s:g} before the rolling deploy "
                    f"{prev.deploy_id!r} of {svc.name!r} finishes at {fin:g} s; move it later or shorten rollout_s"
                )


def parse_scenario(data: dict[str, Any], source: str = "<scenario>", name: str | None = None) -> Scenario:
    """Validate a decoded TOML document; `source` names it in error messages."""
    t = _Table(data, "", source)
    duration_s = t.num("duration_s", lo=0.0, lo_open=True, hi=MAX_DURATION_S)
    tr = _Table(t.raw("traffic", {}), "traffic", source)
    traffic = Traffic(
        diurnal_amplitude=tr.num("diurnal_amplitude", Traffic.diurnal_amplitude, lo=0.0, hi=0.95),
        peak_hour=tr.num("peak_hour", Traffic.peak_hour, lo=0.0, hi=24.0, hi_open=True),
        utc_offset_h=tr.num("utc_offset_h", Traffic.utc_offset_h, lo=-14.0, hi=14.0),
        drift_amplitude=tr.num("drift_amplitude", Traffic.drift_amplitude, lo=0.0, hi=0.5),
        drift_period_s=tr.num("drift_period_s", Traffic.drift_period_s, lo=60.0),
        rate_scale=tr.num("rate_scale", Traffic.rate_scale, lo=0.0, lo_open=True, hi=100.0),
    )
    tr.done()
    services_l = [_service(s) for s in t.tables("services", required=True)]
    services = {s.name: s for s in services_l}
    if len(services) != len(services_l):
        raise ScenarioError(f"{source}: two services share a name; service names must be unique")
    deploys = tuple(sorted((_deploy(d, services, duration_s) for d in t.tables("deploys")), key=lambda d: d.at_s))
    _check_deploy_order(deploys, services, source)
    disturbances = tuple(_disturbance(d, services, duration_s) for d in t.tables("disturbances"))
    checks = tuple(_smoke_check(c, services) for c in t.tables("checks"))
    names = [(c.service, c.name) for c in checks]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{source}: two checks of one service share a name; check names must be unique")
    scenario = Scenario(
        name=t.str_("name", name or "scenario"),
        source=source,
        seed=t.int_("seed", 1, lo=0, hi=2**63 - 1),
        start_ts=_start_ts(t),
        duration_s=duration_s,
        services=tuple(services_l),
        deploys=deploys,
        disturbances=disturbances,
        checks=checks,
        traffic=traffic,
        metric_interval_s=t.num("metric_interval_s", 10.0, lo=1.0, hi=3600.0),
        out_of_order_s=t.num("out_of_order_s", 1.0, lo=0.0, hi=60.0),
        verification_s=t.num("verification_s", 900.0, lo=0.0, lo_open=True),
    )
    t.done()
    return scenario


def parse_scenario_text(text: str, source: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    return parse_scenario(data, source)


def load_scenario(
    path: str | Path, *, seed: int | None = None, duration_s: float | None = None, rate_scale: float | None = None
) -> Scenario:
    """Read and validate a scenario file, then apply command-line overrides."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read scenario file ({e.strerror}); check the path") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    scenario = parse_scenario(data, str(p), name=p.stem)
    return scenario.with_overrides(seed=seed, duration_s=duration_s, rate_scale=rate_scale)
