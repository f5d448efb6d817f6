"""Root-cause hints, in the order on-call engineers investigate.

1. Shared with other versions or services, or visible in infrastructure
   metrics -> `data_or_infra`.
2. Errors from the new version's first requests on (nearly) every endpoint,
   or new configuration-error log templates -> `config`.
3. Confined to the new version, with new exception log templates, or on some
   endpoints only of a code change -> `code`. Also a slowdown or a drop of
   completed transactions (no error finding) of the new version alone, on a
   deploy that declares itself a code change, wherever it shows, service-wide
   or on every endpoint: nothing shared moved (blame already cleared it), no
   configuration sign (those are errors from the first requests on, or
   configuration log lines), and the deploy's own event says what changed. A
   deploy that names no change kind, or names `config`, stays `unknown`: the
   judge does not guess the change from a slowdown alone.
4. Otherwise `unknown`: an honest answer that tells a person to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from detector.judge.verification import Finding


@dataclass(frozen=True)
class LogEvidence:
    """A log template the new version emits, as the judge needs it."""

    template: str
    kind: str  # config | connection | exception | data | other
    count: int
    first_seen_after_s: float
    shared: bool  # also in other versions or services
    # False for a template counted from its first lines, before the log findings would
    # report it: it names a code fault, but does not overrule errors that began
    # everywhere at once (a generic error line is new to a service that had no errors).
    reported: bool = True


@dataclass(frozen=True)
class Hint:
    category: str
    evidence: tuple[str, ...]


def hint(
    findings: Sequence[Finding],
    blamed: Sequence[Finding],
    logs: Sequence[LogEvidence],
    endpoints_with_traffic: int,
    first_error_after_s: float | None,
    change_kind: str | None,
) -> Hint:
    evidence: list[str] = []
    if blamed and not findings:
        for f in blamed[:3]:
            evidence.extend(f.shared)
        shared_logs = [e for e in logs if e.shared and e.kind in ("connection", "data")]
        evidence.extend(f"shared log template: {e.template}" for e in shared_logs[:2])
        return Hint("data_or_infra", tuple(dict.fromkeys(evidence)))
    own_logs = [e for e in logs if not e.shared]
    config_logs = [e for e in own_logs if e.kind == "config"]
    code_logs = [e for e in own_logs if e.kind in ("exception", "data")]
    error_findings = [f for f in findings if f.signal == "error_rate"]
    endpoints_hit = {f.endpoint for f in error_findings if f.endpoint >= 0}
    localised = {f.endpoint for f in findings if f.endpoint >= 0}
    service_wide = any(f.endpoint < 0 for f in error_findings)
    # (Nearly) every endpoint: at least 80 % of those with traffic, rounded up, so that one of
    # two endpoints (or two of three) is some code paths, not every one.
    everywhere = service_wide and (not endpoints_hit
                                   or len(endpoints_hit) >= max(1, (4 * endpoints_with_traffic + 4) // 5))
    early = first_error_after_s is not None and first_error_after_s <= 60
    if config_logs or (everywhere and early and not [e for e in code_logs if e.reported]):
        if early and error_findings:
            evidence.append(f"errors began within {first_error_after_s:.0f} s of the new version's first requests")
        if everywhere:
            evidence.append("errors on every endpoint of the new version, not on some code paths")
        evidence.extend(f"new log template: {e.template}" for e in config_logs[:3])
        if change_kind == "config":
            evidence.append("the deploy is a configuration change")
        return Hint("config", tuple(evidence))
    # Some code paths: endpoint findings on fewer endpoints than had traffic (a service-wide
    # finding too when those endpoints carry it, as long as the errors are not everywhere).
    some_paths = bool(localised) and not everywhere and len(localised) < endpoints_with_traffic
    # Slower, or fewer completed transactions, and no errors: nothing points at configuration.
    not_errors = bool(findings) and all(f.signal in ("latency", "transactions") for f in findings)
    if code_logs or (change_kind == "code" and (some_paths or not_errors)):
        if some_paths:
            evidence.append(f"confined to the new version on {len(localised)} of {endpoints_with_traffic} endpoints")
        elif not_errors and not code_logs:
            evidence.append("a slowdown or fewer completed transactions of the new version alone, no errors, "
                            "nothing shared")
        evidence.extend(f"new log template: {e.template}" for e in code_logs[:3])
        if change_kind == "code":
            evidence.append("the deploy is a code change")
        return Hint("code", tuple(evidence))
    if findings:
        evidence.append("confined to the new version; no log pattern or infrastructure signal explains it")
    return Hint("unknown", tuple(evidence))
