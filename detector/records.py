"""Wire contract, output side: anomaly, verdict and root_cause records.

Ids are deterministic: an anomaly id hashes (service, scope, signal, window
start, deploy); a verdict id is derived from the deploy id. The same finding
after a replay or a crash restart carries the same id, so consumers can
deduplicate. Encoding is canonical (sorted keys, rounded floats) so that the
same input gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

SEVERITIES = ("critical", "warning", "info")
DECISIONS = ("rollback", "page", "ticket", "confirmed", "inconclusive", "superseded")
ROOT_CAUSES = ("code", "config", "data_or_infra", "unknown")


def _round(v: Any) -> Any:
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        # times keep milliseconds; measures keep six significant digits
        return round(v, 3) if abs(v) >= 1e5 else float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round(x) for x in v]
    return v


def anomaly_id(service: str, endpoint: str | None, version: str | None, signal: str, window_start: float,
               deploy_id: str | None, detail_key: str = "") -> str:
    key = "\x00".join([service, endpoint or "", version or "", signal, f"{window_start:.3f}", deploy_id or "",
                       detail_key])
    return "a-" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


def verdict_id(deploy_id: str) -> str:
    return f"v-{deploy_id}"


@dataclass(frozen=True)
class Anomaly:
    ts: float
    service: str
    endpoint: str | None
    version: str | None
    signal: str
    observed: float
    expected: float
    score: float
    severity: str
    window_start: float
    window_end: float
    deploy_id: str | None
    detail: dict = field(default_factory=dict)
    id: str = ""

    def with_id(self) -> "Anomaly":
        key = (str(self.detail.get("quantile", "")) + str(self.detail.get("template_id", ""))
               + str(self.detail.get("series", "")))
        if self.signal == "smoke":  # one anomaly per rule and check of a deploy
            key += f"{self.detail.get('rule', '')}\x00{self.detail.get('check', '')}"
        if "escalates" in self.detail:  # an early ticket's escalation: not its finding's anomaly
            key += f"\x00escalates {self.detail['escalates']}"
        aid = anomaly_id(self.service, self.endpoint, self.version, self.signal, self.window_start,
                         self.deploy_id, key)
        return Anomaly(**{**self.__dict__, "id": aid})

    def to_dict(self) -> dict:
        return {
            "type": "anomaly",
            "id": self.id,
            "ts": self.ts,
            "service": self.service,
            "endpoint": self.endpoint,
            "version": self.version,
            "signal": self.signal,
            "observed": self.observed,
            "expected": self.expected,
            "score": self.score,
            "severity": self.severity,
            "window": {"start": self.window_start, "end": self.window_end},
            "deploy_id": self.deploy_id,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Verdict:
    ts: float
    service: str
    deploy_id: str
    version: str
    decision: str
    reasons: tuple[str, ...]
    root_cause: str
    evidence: tuple[str, ...]
    anomalies: tuple[str, ...]
    started: float
    ended: float
    detail: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return verdict_id(self.deploy_id)

    def to_dict(self) -> dict:
        return {
            "type": "verdict",
            "id": self.id,
            "ts": self.ts,
            "service": self.service,
            "deploy_id": self.deploy_id,
            "version": self.version,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "root_cause": {"category": self.root_cause, "evidence": list(self.evidence)},
            "anomalies": list(self.anomalies),
            "verification": {"started": self.started, "ended": self.ended},
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RootCause:
    """A verdict's root cause, completed after the verdict went out (a rollback does not
    wait for log evidence). At most one per verdict; its id derives from the verdict's."""

    ts: float
    service: str
    deploy_id: str
    root_cause: str
    evidence: tuple[str, ...]

    @property
    def verdict_id(self) -> str:
        return verdict_id(self.deploy_id)

    @property
    def id(self) -> str:
        return f"{self.verdict_id}-rc"

    def to_dict(self) -> dict:
        return {
            "type": "root_cause",
            "id": self.id,
            "verdict_id": self.verdict_id,
            "ts": self.ts,
            "service": self.service,
            "deploy_id": self.deploy_id,
            "root_cause": {"category": self.root_cause, "evidence": list(self.evidence)},
        }


Record = Anomaly | Verdict | RootCause


def encode(record: Record) -> bytes:
    """Canonical JSON bytes of a record (one JSONL line without the newline)."""
    return orjson.dumps(_round(record.to_dict()), option=orjson.OPT_SORT_KEYS)
