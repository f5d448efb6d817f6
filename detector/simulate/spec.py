"""What a scenario is: the frozen dataclasses a scenario file becomes, and their allowed values.

Services and their endpoints, the deploys (with the faults injected into the
new version and the verdict a correct detector should reach), the benign
disturbances, smoke checks, traffic settings and the `Scenario` that holds
them; `ScenarioError` is raised for anything invalid. Reading a file into
these is `scenario`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

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
