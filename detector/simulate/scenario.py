"""Scenario files: TOML -> frozen dataclasses, validated once.

A scenario says which services exist (endpoints with their rates, error rates
and latency), which deploys happen when (strategy, faults injected into the
new version, the verdict a correct detector should reach) and which benign
disturbances hit production meanwhile. Every unknown key, wrong type or
impossible value is a `ScenarioError` naming the file, the key, the value and
what was expected; nothing is defaulted silently except the documented
defaults below.
"""

from __future__ import annotations

import hashlib
import math
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

from detector.simulate.messages import PLACEHOLDERS

STRATEGIES = ("rolling", "canary", "blue_green")
CHANGE_KINDS = ("code", "config", "unknown")  # unknown: the deploy event names none
VERDICTS = ("rollback", "page", "ticket", "confirmed", "inconclusive", "superseded")
ROOT_CAUSES = ("code", "config", "data_or_infra", "unknown")
LOG_LEVELS = ("INFO", "WARN", "ERROR", "FATAL")
LATENCY_MODES = ("step", "ramp")
AUTHORS = ("alice.ng", "bo.ferreira", "chen.wei", "dana.okafor", "eli.jansen", "fatima.rao")

# Scenario times are seconds relative to `start`; this caps them so that a
# typo (milliseconds, a Unix time) is reported instead of simulated for years.
MAX_DURATION_S = 30 * 86_400.0


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names file, key, value and the fix."""


# --- the frozen model -------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    rps: float  # mean request rate over a day (the diurnal cycle averages to 1)
    error_rate: float  # probability of a 5xx in normal operation
    client_error_rate: float  # probability of a 4xx (not an error for the detector)
    latency_median_ms: float
    latency_p99_ms: float
    critical: bool = False
    txn: str | None = None  # business transaction completed by a successful request
    txn_fraction: float = 0.0  # share of successful requests that complete `txn`

    @property
    def method(self) -> str:
        head = self.name.split(" ", 1)[0].upper()
        return head if head in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD") else "GET"

    @property
    def path(self) -> str:
        parts = self.name.split(" ", 1)
        return parts[1] if len(parts) == 2 else parts[0]


@dataclass(frozen=True)
class Service:
    name: str
    version: str  # version serving all traffic at the start
    instances: int
    endpoints: tuple[Endpoint, ...]
    db: str | None = None  # shared database this service uses (infra_slowdown target)
    db_latency_ms: float = 4.0
    cpu_base: float = 0.35  # cpu utilisation at the nominal request rate
    info_log_rate: float = 0.12  # INFO lines per request
    warn_log_rate: float = 0.01  # WARN lines per request
    error_log_fraction: float = 0.9  # share of 5xx requests that log an ERROR line

    def endpoint_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.endpoints)


@dataclass(frozen=True)
class Fault:
    """Base of everything injected into a deploy's new version."""

    kind: ClassVar[str] = ""
    harmful: ClassVar[bool] = True
    onset_s: float  # delay after the deploy starts
    endpoints: tuple[str, ...]  # empty: every endpoint of the service
    duration_s: float  # how long it lasts once begun (inf: until the version is gone)

    def params(self) -> dict[str, Any]:
        skip = {"onset_s", "endpoints", "duration_s"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


@dataclass(frozen=True)
class ErrorIncrease(Fault):
    kind: ClassVar[str] = "error_increase"
    error_rate: float = 0.05  # extra probability of a 5xx


@dataclass(frozen=True)
class LatencyIncrease(Fault):
    kind: ClassVar[str] = "latency_increase"
    factor: float = 2.0
    mode: str = "step"
    ramp_s: float = 0.0


@dataclass(frozen=True)
class DropTransactions(Fault):
    kind: ClassVar[str] = "drop_transactions"
    fraction: float = 0.5  # share of transaction completions lost


@dataclass(frozen=True)
class TrafficLoss(Fault):
    """Requests meant for the new version never arrive (a broken route, clients failing
    before they reach it): the service sees less traffic than the time of day brings."""

    kind: ClassVar[str] = "traffic_loss"
    fraction: float = 0.5  # share of the new version's requests lost


@dataclass(frozen=True)
class NewLogTemplate(Fault):
    kind: ClassVar[str] = "new_log_template"
    pattern: str = ""
    level: str = "ERROR"
    rate_per_request: float = 0.05


@dataclass(frozen=True)
class PodRestartBlip(Fault):
    """New pods failing for a few seconds while they start: benign."""

    kind: ClassVar[str] = "pod_restart_blip"
    harmful: ClassVar[bool] = False
    error_rate: float = 0.3


@dataclass(frozen=True)
class Disturbance:
    """Base of benign production events that hit every version alike."""

    kind: ClassVar[str] = ""
    start_s: float
    duration_s: float
    ramp_s: float
    services: tuple[str, ...]  # resolved: never empty after validation

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def params(self) -> dict[str, Any]:
        skip = {"start_s", "duration_s", "ramp_s", "services", "endpoints"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


@dataclass(frozen=True)
class TrafficSurge(Disturbance):
    kind: ClassVar[str] = "traffic_surge"
    multiplier: float = 2.0


@dataclass(frozen=True)
class RetryStorm(Disturbance):
    kind: ClassVar[str] = "retry_storm"
    endpoints: tuple[str, ...] = ()  # empty: every endpoint of `services`
    multiplier: float = 2.0
    error_rate: float = 0.02  # extra 503s (load shedding) in every version


@dataclass(frozen=True)
class InfraSlowdown(Disturbance):
    kind: ClassVar[str] = "infra_slowdown"
    db: str = ""
    latency_factor: float = 2.0
    error_rate: float = 0.01
    db_latency_factor: float = 8.0
    timeout_ms: int = 3000
    log_rate: float = 0.02  # extra WARN lines about the slow database per request


@dataclass(frozen=True)
class Deploy:
    deploy_id: str
    service: str
    at_s: float
    version: str
    strategy: str
    change_kind: str
    commit: str
    author: str
    rollout_s: float = 0.0  # rolling: time for the new version to reach 100 %
    canary_weight: float | None = None
    promote_after_s: float | None = None  # canary: when the canary takes all traffic
    faults: tuple[Fault, ...] = ()
    expect: str | None = None
    expect_root_cause: str | None = None

    def finished_at_s(self) -> float | None:
        """When the new version serves all traffic (None: it never does)."""
        if self.strategy == "rolling":
            return self.at_s + self.rollout_s
        if self.strategy == "blue_green":
            return self.at_s
        if self.promote_after_s is not None:
            return self.at_s + self.promote_after_s
        return None


@dataclass(frozen=True)
class SmokeCheck:
    """A post-deploy smoke check the simulated CD system runs after each deploy of `service`:
    one request to `endpoint`, `delay_s` after the deploy starts, then every `interval_s`,
    `runs` times, against the new version and (with `stable`) the previous one. A run fails as
    a request of that version would at that time (error rate, faults, disturbances), or when the
    version's median latency there exceeds `timeout_ms`."""

    service: str
    name: str
    endpoint: str
    delay_s: float = 10.0
    interval_s: float = 10.0
    runs: int = 6
    stable: bool = True
    timeout_ms: float = 2000.0


@dataclass(frozen=True)
class Traffic:
    diurnal_amplitude: float = 0.35  # 0: flat; 0.35: peak 35 % above the daily mean
    peak_hour: float = 15.0  # local hour of the daily peak
    utc_offset_h: float = 0.0  # local time = UTC + offset
    drift_amplitude: float = 0.05  # slow per-endpoint wander of the rate
    drift_period_s: float = 6 * 3600.0
    rate_scale: float = 1.0  # multiplies every endpoint's rps (thin out a long baseline)


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    seed: int
    start_ts: float
    duration_s: float
    services: tuple[Service, ...]
    deploys: tuple[Deploy, ...] = ()
    disturbances: tuple[Disturbance, ...] = ()
    checks: tuple[SmokeCheck, ...] = ()
    traffic: Traffic = field(default_factory=Traffic)
    metric_interval_s: float = 10.0
    out_of_order_s: float = 1.0  # bound on how late an event may arrive
    verification_s: float = 900.0  # how long after a rollout the truth counts overlaps

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.duration_s

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def active_deploys(self) -> tuple[Deploy, ...]:
        """Deploys that start within the (possibly shortened) duration."""
        return tuple(d for d in self.deploys if d.at_s < self.duration_s)

    def with_overrides(
        self, *, seed: int | None = None, duration_s: float | None = None, rate_scale: float | None = None
    ) -> Scenario:
        if duration_s is not None and not (0 < duration_s <= MAX_DURATION_S):
            raise ScenarioError(
                f"{self.source}: duration override must be within (0, {MAX_DURATION_S:.0f}] s (got {duration_s})"
            )
        if rate_scale is not None and not (0 < rate_scale <= 100):
            raise ScenarioError(f"{self.source}: rate scale override must be within (0, 100] (got {rate_scale})")
        if seed is not None and not (0 <= seed < 2**63):
            raise ScenarioError(f"{self.source}: seed override must be within [0, 2**63) (got {seed})")
        traffic = self.traffic if rate_scale is None else replace(self.traffic, rate_scale=float(rate_scale))
        return replace(
            self,
            seed=self.seed if seed is None else seed,
            duration_s=self.duration_s if duration_s is None else float(duration_s),
            traffic=traffic,
        )


# --- strict reading ----------------------------------------------------------


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


class _Table:
    """One TOML table being read: remembers its path and which keys were used."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: {where or 'top level'} must be a table (got {_tname(data)})")
        self.data = data
        self.where = where
        self.source = source
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def fail(self, k: str, value: Any, expected: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.key(k)} must be {expected} (got {value!r})")

    def has(self, k: str) -> bool:
        return k in self.data

    def raw(self, k: str, default: Any = ...) -> Any:
        self.used.add(k)
        if k not in self.data:
            if default is ...:
                raise ScenarioError(f"{self.source}: missing required key {self.key(k)}")
            return default
        return self.data[k]

    def num(
        self,
        k: str,
        default: Any = ...,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
    ) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        bounds = " and ".join(s for s in (lo_s, hi_s) if s)
        expected = f"a number{' ' + bounds if bounds else ''}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(k, v, expected)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.fail(k, v, expected)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise self.fail(k, v, expected)
        return float(v)

    def int_(self, k: str, default: Any = ..., *, lo: int | None = None, hi: int | None = None) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        expected = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(k, v, expected)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(k, v, expected)
        return v

    def str_(self, k: str, default: Any = ..., *, choices: tuple[str, ...] | None = None) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        if choices is not None:
            if v not in choices:
                raise self.fail(k, v, "one of " + ", ".join(repr(c) for c in choices))
            return v
        if not isinstance(v, str) or not v.strip():
            raise self.fail(k, v, "a non-empty string")
        if len(v) > 200:
            raise self.fail(k, v, "a string of at most 200 characters")
        return v

    def bool_(self, k: str, default: bool) -> bool:
        v = self.raw(k, default)
        if not isinstance(v, bool):
            raise self.fail(k, v, "true or false")
        return v

    def str_list(self, k: str) -> tuple[str, ...]:
        v = self.raw(k, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(k, v, "an array of non-empty strings")
        if len(set(v)) != len(v):
            raise self.fail(k, v, "an array without duplicates")
        return tuple(v)

    def tables(self, k: str, required: bool = False) -> list[_Table]:
        v = self.raw(k, ... if required else [])
        if not isinstance(v, list):
            raise self.fail(k, v, "an array of tables ([[" + self.key(k) + "]])")
        if required and not v:
            raise self.fail(k, v, "a non-empty array of tables")
        return [_Table(item, f"{self.key(k)}[{i}]", self.source) for i, item in enumerate(v)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            raise ScenarioError(
                f"{self.source}: unknown key {self.key(unknown[0])!s} (allowed here: {allowed}); "
                "check its spelling or remove it"
            )


def _start_ts(t: _Table) -> float:
    v = t.raw("start")
    if isinstance(v, bool):
        raise t.fail("start", v, "a Unix time in seconds or an RFC 3339 time with an offset")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0:
            raise t.fail("start", v, "a Unix time >= 0")
        return float(v)
    dt: Any = v
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z"))
        except ValueError:
            raise t.fail(
                "start", v, "a Unix time in seconds or an RFC 3339 time such as 2026-11-26T07:30:00Z"
            ) from None
    if isinstance(dt, datetime):
        if dt.tzinfo is None:
            raise t.fail("start", v, "an RFC 3339 time with a UTC offset or 'Z'")
        return dt.astimezone(UTC).timestamp()
    if isinstance(dt, date):
        raise t.fail("start", v, "a date with a time and an offset, e.g. 2026-11-26T07:30:00Z")
    raise t.fail("start", v, "a Unix time in seconds or an RFC 3339 time")


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
