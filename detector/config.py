"""Pipeline file (TOML) -> frozen settings, validated once at start.

Every section is a frozen dataclass. The loader rejects unknown keys, wrong
types and impossible values with one message naming the file, the key, the
offending value and what was expected. The core never reads files or the
environment: it receives a `Pipeline`.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detector.smoke.settings import Prober, SmokeCheck, SmokeSettingError, parse_checks

# The shipped pipeline: pipelines/default.toml in a source tree (detector/data/ links to it),
# package data in any install.
DEFAULT_PIPELINE = Path(str(resources.files("detector") / "data" / "default.toml"))

SIGNALS = ("error_rate", "latency", "volume", "transactions", "log_errors", "log_novelty", "smoke")  # what rules test
# A smoke rule counts failed runs of one check (min_effect) within duration_s of the deploy's start;
# min_level is the share of the new version's runs that failed. The other rule keys do not apply.
SMOKE_RULE_KEYS = ("name", "signal", "action", "min_effect", "min_level", "duration_s", "dry_run")
ACTIONS = ("rollback", "page", "ticket", "none")
SCOPES = ("service", "endpoint")
COMPARISONS = ("auto", "canary", "before_after")
TICKET_HOLDS = ("in_sight", "always")
INFRA_BLAMES = ("size", "any")
DECISIONS = ("rollback", "page", "ticket", "confirmed", "inconclusive", "superseded")
SEVERITIES = ("critical", "warning", "info")


class ConfigError(ValueError):
    """The pipeline file is wrong; the message says where and what to write instead."""


@dataclass(frozen=True)
class Topics:
    requests: str = "requests"
    logs: str = "logs"
    metrics: str = "metrics"
    deploys: str = "deploys"
    checks: str = "checks"  # smoke check results (a control stream, like deploys)
    incidents: str = "incidents"  # what people found: read by `detector tune` and the live rule counters

    def check(self) -> None:
        # the incidents topic is only read, never created, so nothing else would check its name
        _require(type(self.incidents) is str and re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", self.incidents) is not None
                 and self.incidents not in (".", ".."), "topics.incidents", self.incidents,
                 "a Kafka topic name: 1-249 characters from a-z A-Z 0-9 . _ -")
    alerts: str = "alerts"
    dlq: str = "detector.dlq"
    state: str = "detector.state"


@dataclass(frozen=True)
class Windows:
    width_s: float = 10.0
    lateness_s: float = 5.0

    def check(self) -> None:
        _require(self.width_s > 0 and 86400 % self.width_s == 0, "windows.width_s", self.width_s,
                 "a positive number of seconds that divides a day (86400)")
        _require(self.lateness_s >= 0, "windows.lateness_s", self.lateness_s, "a number >= 0")


@dataclass(frozen=True)
class Limits:
    max_services: int = 2_000
    max_endpoints_per_service: int = 200
    max_versions_per_service: int = 16
    max_metric_series_per_service: int = 256
    max_txn_names_per_service: int = 64
    max_message_bytes: int = 1_048_576
    max_interned_strings: int = 1_000_000
    max_future_skew_s: float = 300.0

    def check(self) -> None:
        for f in fields(self):
            what = "a number of seconds >= 1" if f.name.endswith("_s") else "an integer >= 1"
            _require(getattr(self, f.name) >= 1, f"limits.{f.name}", getattr(self, f.name), what)


DAY_PROFILES = ("none", "weekday_weekend", "day_of_week")  # detector.baselines.calendar: profiles per week


@dataclass(frozen=True)
class Baselines:
    slot_s: float = 1800.0
    level_half_life_s: float = 1800.0
    min_history_s: float = 600.0
    seasonal_min_days: float = 1.0
    warm_start: str = ""
    timezone: str = "UTC"
    day_profiles: str = "weekday_weekend"

    def check(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            _require(False, "baselines.timezone", self.timezone,
                     "an IANA time zone name of the system's tz database, like 'UTC' or 'Europe/Berlin'")
        _require(self.day_profiles in DAY_PROFILES, "baselines.day_profiles", self.day_profiles,
                 f"one of {', '.join(DAY_PROFILES)}")
        _require(self.slot_s > 0 and 86400 % self.slot_s == 0, "baselines.slot_s", self.slot_s,
                 "a positive number of seconds that divides a day (86400)")
        _require(self.level_half_life_s > 0, "baselines.level_half_life_s", self.level_half_life_s, "a number > 0")
        _require(self.min_history_s >= 0, "baselines.min_history_s", self.min_history_s, "a number >= 0")


@dataclass(frozen=True)
class Metrics:
    """The streaming metric detector (detector/anomaly): every metric series, scored per closed window."""

    enabled: bool = True
    score_threshold: float = 4.0  # -log10 p at which a series-window is anomalous
    persist_windows: int = 1  # consecutive anomalous windows (with samples) before the episode's record
    quiet_windows: int = 12  # consecutive normal windows that end an episode
    warmup_samples: int = 30  # windows with samples learnt before a series is judged
    level_half_life_samples: float = 24.0  # how fast the level follows (in the series' own samples)
    scale_half_life_samples: float = 96.0  # how fast the noise estimate follows
    sustained_half_life_samples: float = 4.0  # memory of the sustained-shift test
    shift_adopt_samples: int = 12  # a one-sided departure this long becomes the new level
    seasonality: str = "auto"  # auto: daily / weekly profiles where they explain the series; off
    season_min_gain: float = 0.2  # a profile must remove this share of the residual variance
    context_levels: int = 0  # contextual novelty test: levels a value is quantised into (2 .. 8); 0: off
    context_half_life_samples: float = 8.0  # memory of the density of novel transitions
    spread_test: bool = False  # a test for a rise in the rate of wide residuals (a change of spread)
    spread_half_life_samples: float = 24.0  # memory of that recent rate
    scores_topic: str = ""  # live: every series-window's score row to this topic (empty: off)

    def check(self) -> None:
        _require(self.score_threshold > 0, "metrics.score_threshold", self.score_threshold,
                 "a score (-log10 p) > 0, e.g. 4.0")
        for key in ("persist_windows", "quiet_windows", "warmup_samples", "shift_adopt_samples"):
            _require(getattr(self, key) >= 1, f"metrics.{key}", getattr(self, key), "an integer >= 1")
        for key in ("level_half_life_samples", "scale_half_life_samples", "sustained_half_life_samples"):
            _require(getattr(self, key) >= 1, f"metrics.{key}", getattr(self, key), "a number of samples >= 1")
        _require(self.seasonality in ("auto", "off"), "metrics.seasonality", self.seasonality, "auto or off")
        _require(0 <= self.season_min_gain < 1, "metrics.season_min_gain", self.season_min_gain,
                 "a share of variance in [0, 1)")
        _require(self.context_levels == 0 or 2 <= self.context_levels <= 8, "metrics.context_levels",
                 self.context_levels, "0 (off) or an integer from 2 to 8 (memory grows as its fourth power)")
        _require(self.context_half_life_samples >= 1, "metrics.context_half_life_samples",
                 self.context_half_life_samples, "a number of samples >= 1")
        _require(self.spread_half_life_samples >= 1, "metrics.spread_half_life_samples",
                 self.spread_half_life_samples, "a number of samples >= 1")
        _require(self.scores_topic == self.scores_topic.strip() and " " not in self.scores_topic,
                 "metrics.scores_topic", self.scores_topic, "a topic name without spaces, or empty (off)")


@dataclass(frozen=True)
class Tests:
    significance: float = 0.001
    latency_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
    min_requests: int = 30

    def check(self) -> None:
        _require(0 < self.significance < 0.5, "tests.significance", self.significance, "a p-value in (0, 0.5)")
        for q in self.latency_quantiles:
            _require(0 < q < 1, "tests.latency_quantiles", q, "quantiles strictly between 0 and 1")
        _require(self.min_requests >= 1, "tests.min_requests", self.min_requests, "an integer >= 1")


@dataclass(frozen=True)
class Verification:
    period_s: float = 1800.0
    baseline_s: float = 900.0
    comparison: str = "auto"
    infra_metrics: tuple[str, ...] = ("db_latency_ms",)
    critical_endpoints: tuple[str, ...] = ()
    inconclusive_min_requests: int = 0
    detectable_error_points: float = 5.0
    false_alarm_rate: float = 0.001
    canary_action: str = "rollback"
    stable_min_share: float = 0.05
    transaction_endpoints_critical: bool = True
    shared_window_s: float = 300.0
    window_evidence_cap: float = 1.0
    root_cause_grace_s: float = 60.0
    ticket_hold_s: float = 120.0
    ticket_hold: str = "in_sight"
    infra_blame: str = "any"

    def check(self) -> None:
        _require(self.infra_blame in INFRA_BLAMES, "verification.infra_blame", self.infra_blame,
                 f"one of {', '.join(INFRA_BLAMES)} (size: deviating infrastructure makes an error or transaction finding shared "
                 "unless the new version moved significantly more than every population it hit; any: always)")
        _require(self.ticket_hold_s >= 0, "verification.ticket_hold_s", self.ticket_hold_s,
                 "a number of seconds >= 0 (how long a ticket waits for a page or rollback rule before it "
                 "goes out; 0: at once)")
        _require(self.ticket_hold in TICKET_HOLDS, "verification.ticket_hold", self.ticket_hold,
                 f"one of {', '.join(TICKET_HOLDS)} (in_sight: a ticket waits only while a page or rollback "
                 "rule is in sight; always: every ticket waits ticket_hold_s)")
        _require(self.root_cause_grace_s >= 0, "verification.root_cause_grace_s", self.root_cause_grace_s,
                 "a number of seconds >= 0 (0: a verdict's root cause is never completed later)")
        _require(0 < self.false_alarm_rate < 0.5, "verification.false_alarm_rate", self.false_alarm_rate,
                 "a probability in (0, 0.5)")
        _require(self.canary_action in ACTIONS, "verification.canary_action", self.canary_action,
                 f"one of {', '.join(ACTIONS)}")
        _require(0 <= self.stable_min_share <= 1, "verification.stable_min_share", self.stable_min_share, "0-1")
        _require(self.window_evidence_cap > 0, "verification.window_evidence_cap", self.window_evidence_cap,
                 "a number > 0 (log10 of the most one window's comparison with the stable version may count)")
        _require(self.shared_window_s >= 0, "verification.shared_window_s", self.shared_window_s,
                 "a number of seconds >= 0")
        _require(self.inconclusive_min_requests >= 0, "verification.inconclusive_min_requests",
                 self.inconclusive_min_requests, "an integer >= 0")
        _require(self.detectable_error_points > 0, "verification.detectable_error_points",
                 self.detectable_error_points, "a number of percentage points > 0")
        _require(self.period_s > 0, "verification.period_s", self.period_s, "a number of seconds > 0")
        _require(self.baseline_s > 0, "verification.baseline_s", self.baseline_s, "a number of seconds > 0")
        _require(self.comparison in COMPARISONS, "verification.comparison", self.comparison,
                 f"one of {', '.join(COMPARISONS)}")


@dataclass(frozen=True)
class Rule:
    name: str
    signal: str
    action: str
    scope: str = "service"
    min_effect: float = 0.0
    min_score: float = 3.0
    duration_s: float = 60.0
    min_traffic_share: float = 0.0
    max_traffic_share: float = 1.0
    min_level: float = 0.0
    quantile: float = 0.95
    critical_action: str = ""
    dry_run: bool = False

    def check(self, where: str) -> None:
        _require(self.signal in SIGNALS, f"{where}.signal", self.signal, f"one of {', '.join(SIGNALS)}")
        _require(self.action in ACTIONS, f"{where}.action", self.action, f"one of {', '.join(ACTIONS)}")
        _require(self.critical_action in ACTIONS + ("",), f"{where}.critical_action", self.critical_action,
                 f"one of {', '.join(ACTIONS)} or empty")
        _require(self.scope in SCOPES, f"{where}.scope", self.scope, f"one of {', '.join(SCOPES)}")
        _require(self.duration_s >= 0, f"{where}.duration_s", self.duration_s, "a number of seconds >= 0")
        _require(0 <= self.min_traffic_share <= 1, f"{where}.min_traffic_share", self.min_traffic_share, "0-1")
        _require(0 < self.max_traffic_share <= 1, f"{where}.max_traffic_share", self.max_traffic_share, "(0, 1]")
        _require(0 < self.quantile < 1, f"{where}.quantile", self.quantile, "a quantile strictly between 0 and 1")
        if self.signal == "smoke":
            _require(self.min_effect >= 1 and float(self.min_effect).is_integer(), f"{where}.min_effect",
                     self.min_effect, "a whole number of failed runs >= 1 for a smoke rule")
            _require(0 <= self.min_level <= 1, f"{where}.min_level", self.min_level,
                     "the share of failed runs, 0-1, for a smoke rule")


@dataclass(frozen=True)
class Logs:
    enabled: bool = True
    max_templates_per_service: int = 1_000
    max_message_chars: int = 2_000


@dataclass(frozen=True)
class Fleet:
    """The fleet view (detector.fleet): per-window summaries shared by every sidecar."""

    enabled: bool = True
    topic: str = "detector.fleet"
    max_wait_s: float = 30.0  # live: longest wait for a partition's summary before judging without it
    windows_kept: int = 120  # windows of summaries held (services x windows bounds the memory)
    retention_h: float = 6.0  # the topic's retention.ms

    def check(self) -> None:
        _require(re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", self.topic) is not None and self.topic not in (".", ".."),
                 "fleet.topic", self.topic, "a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
        _require(self.max_wait_s > 0, "fleet.max_wait_s", self.max_wait_s, "a number of seconds > 0")
        _require(self.windows_kept >= 1, "fleet.windows_kept", self.windows_kept, "an integer >= 1")
        _require(self.retention_h > 0, "fleet.retention_h", self.retention_h, "a number of hours > 0")


RECORD_SINK_KEYS = ("alertmanager_url", "webhook_url", "pagerduty_routing_key")  # sinks that deliver records


@dataclass(frozen=True)
class Sinks:
    """Where anomalies and verdicts go besides the alerts topic; empty strings switch a sink off.

    There is no JSONL key: `detector replay --output` writes records to a JSONL file, `detector run` to
    the alerts topic (a `jsonl` key here was never read; it is rejected, see REMOVED_KEYS).
    """

    alerts_topic: bool = True
    alertmanager_url: str = ""  # e.g. http://127.0.0.1:9093
    alertmanager_severities: tuple[str, ...] = ("critical",)  # anomaly severities posted as alerts
    alertmanager_decisions: tuple[str, ...] = ("rollback", "page")  # verdicts posted as alerts
    alertmanager_resend_s: float = 60.0  # firing alerts are re-sent this often until resolved
    alert_resolve_s: float = 600.0  # a firing alert resolves after this long without a new finding
    generator_url: str = ""  # link back to the detector, shown by Alertmanager
    pagerduty_routing_key: str = ""  # Events API v2 integration key; or env DETECTOR_PAGERDUTY_ROUTING_KEY
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_decisions: tuple[str, ...] = ("rollback", "page")
    webhook_url: str = ""
    webhook_decisions: tuple[str, ...] = ("rollback", "page", "ticket", "confirmed", "inconclusive", "superseded")
    queue_max: int = 10_000  # per sink; past it the oldest records are dropped and counted
    timeout_s: float = 5.0  # per HTTP request
    max_retries: int = 5  # on 429 and 5xx, with exponential backoff
    rollback_command: str = ""  # e.g. "kubectl rollout undo deployment/{service}"
    rollback_url: str = ""  # or an HTTP POST of the verdict
    rollback_dry_run: bool = True  # log and publish what would run, run nothing
    rollback_timeout_s: float = 60.0
    rollback_state_path: str = "detector-rollback-state.json"  # verdict ids already acted on (once per id)
    # verdict alerts posted to Alertmanager and still firing, kept across restarts ("": not kept)
    alertmanager_state_path: str = "detector-alertmanager-state.json"

    def check(self) -> None:
        for key in ("alertmanager_resend_s", "alert_resolve_s", "timeout_s", "rollback_timeout_s"):
            _require(getattr(self, key) > 0, f"sinks.{key}", getattr(self, key), "a number of seconds > 0")
        _require(self.queue_max >= 1, "sinks.queue_max", self.queue_max, "an integer >= 1")
        _require(self.max_retries >= 0, "sinks.max_retries", self.max_retries, "an integer >= 0")
        for key in ("alertmanager_url", "pagerduty_url", "webhook_url", "rollback_url", "generator_url"):
            url = getattr(self, key)
            _require(not url or url.startswith(("http://", "https://")), f"sinks.{key}", url,
                     "an http:// or https:// URL, or empty")
        for d in self.alertmanager_decisions + self.pagerduty_decisions + self.webhook_decisions:
            _require(d in DECISIONS, "sinks.*_decisions", d, f"one of {', '.join(DECISIONS)}")
        _require(not self.alertmanager_state_path
                 or Path(self.alertmanager_state_path).resolve() != Path(self.rollback_state_path).resolve(),
                 "sinks.alertmanager_state_path", self.alertmanager_state_path,
                 "a file of its own, not sinks.rollback_state_path (each sink rewrites its file whole), or \"\"")
        for sev in self.alertmanager_severities:
            _require(sev in SEVERITIES, "sinks.alertmanager_severities", sev, f"one of {', '.join(SEVERITIES)}")
        # Off, the other sinks are the records' only destination; the file must name one (a PagerDuty key
        # from the environment or --alertmanager-url alone would leave it to the command line).
        _require(self.alerts_topic or any(getattr(self, k).strip() for k in RECORD_SINK_KEYS), "sinks.alerts_topic",
                 self.alerts_topic, "true when no other sink is set: with it false, set one of "
                 + ", ".join(f"sinks.{k}" for k in RECORD_SINK_KEYS) + " (else records would go nowhere)")


@dataclass(frozen=True)
class Kafka:
    """Live mode (`detector run`). Secrets may come from the environment instead
    (DETECTOR_KAFKA_SASL_PASSWORD); they are never logged."""

    bootstrap_servers: str = ""  # or --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS
    group_id: str = "detector"
    group_instance_id: str = ""  # static membership: no rebalance when a sidecar restarts
    client_id: str = "detector"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    enable_idempotence: bool = False  # on against a real cluster; the embedded broker refuses it
    partitions: int = 8  # for topics the detector creates
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_batch_records: int = 20_000  # per getmany
    checkpoint_interval_s: float = 10.0  # wall clock between checkpoints (and commits)
    source_idle_s: float = 30.0  # a topic silent this long stops holding the watermark back
    op_timeout_s: float = 30.0  # outer timeout on every broker operation
    connect_timeout_s: float = 120.0  # at start, how long to retry an unreachable broker before exit 1
    shutdown_timeout_s: float = 5.0  # SIGTERM: time for the final checkpoint and commit before exiting anyway
    http_port: int = 8080  # /healthz /readyz /metrics; 0 picks a free port, -1 disables
    http_host: str = "127.0.0.1"

    def check(self) -> None:
        _require(self.security_protocol in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
                 "kafka.security_protocol", self.security_protocol, "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        _require(self.sasl_mechanism in ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "kafka.sasl_mechanism",
                 self.sasl_mechanism, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or empty")
        _require(self.partitions >= 1, "kafka.partitions", self.partitions, "an integer >= 1")
        _require(self.heartbeat_interval_ms * 3 <= self.session_timeout_ms, "kafka.heartbeat_interval_ms",
                 self.heartbeat_interval_ms, "at most a third of kafka.session_timeout_ms")
        for key in ("checkpoint_interval_s", "source_idle_s", "op_timeout_s", "connect_timeout_s",
                    "shutdown_timeout_s"):
            _require(getattr(self, key) > 0, f"kafka.{key}", getattr(self, key), "a number of seconds > 0")
        _require(self.max_batch_records >= 1, "kafka.max_batch_records", self.max_batch_records, "an integer >= 1")
        _require(-1 <= self.http_port <= 65535, "kafka.http_port", self.http_port, "a port, 0 (any) or -1 (off)")


@dataclass(frozen=True)
class Pipeline:
    source: str = "<defaults>"
    topics: Topics = field(default_factory=Topics)
    windows: Windows = field(default_factory=Windows)
    limits: Limits = field(default_factory=Limits)
    baselines: Baselines = field(default_factory=Baselines)
    metrics: Metrics = field(default_factory=Metrics)
    tests: Tests = field(default_factory=Tests)
    verification: Verification = field(default_factory=Verification)
    logs: Logs = field(default_factory=Logs)
    sinks: Sinks = field(default_factory=Sinks)
    kafka: Kafka = field(default_factory=Kafka)
    prober: Prober = field(default_factory=Prober)
    fleet: Fleet = field(default_factory=Fleet)
    rules: tuple[Rule, ...] = ()
    smoke: tuple[SmokeCheck, ...] = ()


class _Invalid(Exception):
    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(key, value, expected)
        self.key, self.value, self.expected = key, value, expected


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise _Invalid(key, value, expected)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        _require(type(value) is bool, key, value, "true or false")
        return value
    if tp is int:
        _require(type(value) is int, key, value, "an integer")
        return value
    if tp is float:
        _require(type(value) in (int, float), key, value, "a number")
        return float(value)
    if tp is str:
        _require(type(value) is str, key, value, "a string")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        _require(type(value) is list, key, value, "an array")
        return tuple(_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        _require(type(value) is dict, key, value, "a table")
        return _build(tp, value, key)
    raise TypeError(f"unsupported settings type {tp!r} for {key}")  # programming error


# Keys that were accepted once and are gone: what to write instead (a tuned.toml written by an older
# version spells every key out, so it may still carry one).
REMOVED_KEYS = {
    "sinks.jsonl": "left out: no code ever read it (detector replay --output writes records to a JSONL file, "
                   "detector run to the alerts topic)",
}


def _build(cls: type, table: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    kwargs = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in known:
            raise _Invalid(key, v, REMOVED_KEYS.get(key, f"no such key; known keys here: {', '.join(sorted(known))}"))
        kwargs[k] = _coerce(hints[k], v, key)
    for name, f in known.items():
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            raise _Invalid(f"{prefix}.{name}" if prefix else name, None, "a value (this key is required)")
    return cls(**kwargs)


def parse_pipeline(text: str, source: str = "<string>") -> Pipeline:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        rules_raw = data.pop("rules", [])
        _require(type(rules_raw) is list, "rules", rules_raw, "an array of tables ([[rules]])")
        smoke = parse_checks(data.pop("smoke", []))
        pipeline = _build(Pipeline, data, "")
        for i, r in enumerate(rules_raw):
            if type(r) is dict and r.get("signal") == "smoke":
                for k in r:
                    _require(k in SMOKE_RULE_KEYS, f"rules[{i}].{k}", r[k],
                             f"left out: it does not apply to a smoke rule (keys of smoke rules: "
                             f"{', '.join(SMOKE_RULE_KEYS)})")
        rules = tuple(_coerce(Rule, r, f"rules[{i}]") for i, r in enumerate(rules_raw))
        for section in (pipeline.windows, pipeline.limits, pipeline.baselines, pipeline.metrics, pipeline.tests,
                        pipeline.verification, pipeline.sinks, pipeline.kafka, pipeline.prober, pipeline.fleet,
                        pipeline.topics):
            section.check()
        taken = {f.name: getattr(pipeline.topics, f.name) for f in fields(Topics)}
        _require(pipeline.metrics.scores_topic not in taken.values(), "metrics.scores_topic",
                 pipeline.metrics.scores_topic, f"a topic of its own, not one of [topics] ({', '.join(taken)})")
        names = set()
        for i, r in enumerate(rules):
            r.check(f"rules[{i}]")
            _require(r.name not in names, f"rules[{i}].name", r.name, "a name not used by another rule")
            names.add(r.name)
    except (_Invalid, SmokeSettingError) as e:
        shown = "(missing)" if e.value is None else repr(e.value)
        raise ConfigError(f"{source}: {e.key} must be {e.expected} (got {shown})") from None
    return Pipeline(source=source, topics=pipeline.topics, windows=pipeline.windows, limits=pipeline.limits,
                    baselines=pipeline.baselines, metrics=pipeline.metrics, tests=pipeline.tests,
                    verification=pipeline.verification, logs=pipeline.logs, sinks=pipeline.sinks,
                    kafka=pipeline.kafka, prober=pipeline.prober, fleet=pipeline.fleet, rules=rules, smoke=smoke)


def load_pipeline(path: str | Path | None = None) -> Pipeline:
    """Load and validate a pipeline file; the shipped default when `path` is None."""
    p = Path(path) if path else DEFAULT_PIPELINE
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read pipeline file: {e.strerror}") from None
    return parse_pipeline(text, str(path) if path else "pipelines/default.toml")



def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(pipeline: Pipeline) -> str:
    """The pipeline as a complete pipeline file (every key spelled out); parses back equal."""
    lines: list[str] = [f"# written from {pipeline.source}"]
    for f in fields(pipeline):
        if f.name in ("source", "rules", "smoke"):
            continue
        section = getattr(pipeline, f.name)
        lines.append(f"\n[{f.name}]")
        lines.extend(f"{k.name} = {_toml_value(getattr(section, k.name))}" for k in fields(section))
    for rule in pipeline.rules:
        lines.append("\n[[rules]]")
        keys = SMOKE_RULE_KEYS if rule.signal == "smoke" else [k.name for k in fields(rule)]
        lines.extend(f"{k} = {_toml_value(getattr(rule, k))}" for k in keys)
    for check in pipeline.smoke:
        lines.append("\n[[smoke]]")
        for k in fields(check):
            v = getattr(check, k.name)
            if k.name == "headers":
                v = "{ " + ", ".join(f"{_toml_value(h)} = {_toml_value(x)}" for h, x in v) + " }"
                lines.append(f"headers = {v}")
            else:
                lines.append(f"{k.name} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
