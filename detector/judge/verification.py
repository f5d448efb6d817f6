"""Deploy lifecycle: one open verification per service.

A `started` deploy opens a verification of its version for its service for
`verification.period_s`; a later `started` deploy of the same service
supersedes it; `finished` marks the rollout complete; `rolled_back` closes it.

A ticket does not wait for the period's end: when a ticket rule holds, the
ticket goes out at once, unless a page or rollback rule is in sight; then the
verification holds it while one is, for at most `verification.ticket_hold_s`
(a page or rollback rule holding meanwhile decides instead).
After an early ticket the verification is still *watched* until its period
would have ended: a page or rollback rule holding then escalates it once
(an anomaly record naming the verdict), the verdict itself never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.ingest.columns import DeployEvent
from detector.judge.evidence import Population
from detector.records import Verdict


@dataclass
class Finding:
    """One rule holding (or a deviation explained elsewhere) at one time."""

    rule: str
    signal: str
    action: str
    endpoint: int  # -1: service-wide
    observed: float
    expected: float
    effect: float
    score: float
    n: int
    share: float
    window_start: float
    window_end: float
    reference: str  # "stable" (same windows) or "before" (the service before the deploy)
    dry_run: bool = False
    shared: tuple[str, ...] = ()  # why it is not the deploy's fault
    detail: dict = field(default_factory=dict)
    anomaly_id: str = ""

    @property
    def blamed_elsewhere(self) -> bool:
        return bool(self.shared)


@dataclass
class Verification:
    deploy: DeployEvent
    service: int
    version: int
    started: float
    ends: float
    finished_ts: float | None = None
    pre: Population | None = None
    slices: dict[float, dict[str, Population]] = field(default_factory=dict)  # window start -> traffic
    stable_versions: tuple[int, ...] = ()
    findings: dict[tuple[str, int], Finding] = field(default_factory=dict)
    log_findings: list = field(default_factory=list)  # TemplateFinding evidence, every window
    log_reported: dict = field(default_factory=dict)  # (signal, template id) -> first finding, sent as anomaly
    log_anomaly_ids: dict = field(default_factory=dict)  # (signal, template id) -> anomaly id
    log_lines: dict = field(default_factory=dict)  # template id -> [lines, first window start, last window end]
    # Accumulated evidence since the start: signal key -> endpoint id -> log likelihood
    # ratio of every alternative of the mixture grid (see judge.accumulate).
    evidence: dict = field(default_factory=dict)
    first_new_window: float | None = None
    first_error_window: float | None = None  # first window where the new version's errors stood out
    new_requests: int = 0
    endpoint_requests: dict = field(default_factory=dict)  # endpoint id -> the new version's requests there
    verdict: Verdict | None = None
    ticket_hold_until: float | None = None  # a ticket rule held: the ticket goes out by this event time
    watch_until: float | None = None  # an early ticket went out: page/rollback rules still watched until then
    escalation: str = ""  # the escalation anomaly's id, once one went out
    # (rule, endpoint) of a shared finding -> end of the last span where blame still found it shared
    shared_seen: dict = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.verdict is None

    @property
    def watching(self) -> bool:
        """A ticket went out before the period's end and no escalation yet: still evaluated."""
        return self.verdict is not None and self.watch_until is not None

    @property
    def verifying(self) -> bool:
        """Open or watched: the version is still under verification (not learnt by baselines)."""
        return self.open or self.watching

    def acted(self) -> list[Finding]:
        return [f for f in self.findings.values() if not f.dry_run and not f.blamed_elsewhere
                and f.action != "none"]
