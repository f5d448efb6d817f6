"""What a page says about each deploy: its events, verdict, anomalies and checks, joined.

Inputs are plain contract dicts (alerts records, `check` events) and the
deploy events the detector saw, so the same join serves a file report and
the live page. A `root_cause` record completes its verdict's evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DeployView:
    deploy_id: str
    service: str
    version: str
    ts: float
    strategy: str = ""
    previous_version: str | None = None
    change_kind: str | None = None
    commit: str | None = None
    author: str | None = None
    verdict: dict | None = None
    anomalies: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    verifying: bool = False  # live: still under verification
    elapsed_s: float | None = None  # live: event time since the deploy
    evidence_so_far: list[str] = field(default_factory=list)  # live: findings of an open verification

    @property
    def state(self) -> str:
        if self.verdict is not None:
            return str(self.verdict.get("decision", "unknown"))
        return "verifying" if self.verifying else "no verdict"

    @property
    def root_cause(self) -> str:
        if self.verdict is None:
            return "-"
        return str((self.verdict.get("root_cause") or {}).get("category", "-"))

    @property
    def time_to_verdict_s(self) -> float | None:
        if self.verdict is None:
            return None
        return float(self.verdict["ts"]) - self.ts

    def span(self, period_s: float) -> tuple[float, float]:
        """The verification span: from the deploy to its verdict (or the end of the period)."""
        if self.verdict is not None:
            ver = self.verdict.get("verification") or {}
            return float(ver.get("started", self.ts)), float(ver.get("ended", self.verdict["ts"]))
        return self.ts, self.ts + period_s


def from_deploy_event(ev) -> DeployView:
    """From a decoded `DeployEvent` (or anything with its attributes)."""
    return DeployView(deploy_id=ev.deploy_id, service=ev.service, version=ev.version, ts=float(ev.ts),
                      strategy=ev.strategy or "", previous_version=ev.previous_version,
                      change_kind=ev.change_kind, commit=ev.commit, author=ev.author)


def join(deploys: list[DeployView], records: list[dict], checks: list[dict]) -> tuple[list[DeployView], list[dict]]:
    """Attach verdicts, anomalies and checks to their deploys; return (deploys in time order, anomalies
    without a deploy). A verdict whose deploy event was never seen still gets a view."""
    by_id: dict[str, DeployView] = {}
    for d in sorted(deploys, key=lambda d: (d.ts, d.deploy_id)):
        by_id.setdefault(d.deploy_id, d)
    shared: list[dict] = []
    completions: dict[str, dict] = {}
    for r in records:
        kind = r.get("type")
        if kind == "verdict":
            d = by_id.get(r["deploy_id"])
            if d is None:
                started = float((r.get("verification") or {}).get("started", r["ts"]))
                d = by_id[r["deploy_id"]] = DeployView(r["deploy_id"], r["service"], r["version"], started,
                                                       strategy=str((r.get("detail") or {}).get("strategy", "")))
            d.verdict = {**r, "root_cause": dict(r.get("root_cause") or {})}
            d.verifying = False
            if not d.strategy:
                d.strategy = str((r.get("detail") or {}).get("strategy", ""))
        elif kind == "anomaly":
            d = by_id.get(r.get("deploy_id") or "")
            if d is not None:
                d.anomalies.append(r)
            else:
                shared.append(r)
        elif kind == "root_cause":
            completions[r["verdict_id"]] = r
    for d in by_id.values():
        if d.verdict is not None and d.verdict.get("id") in completions:
            d.verdict["root_cause"] = dict(completions[d.verdict["id"]]["root_cause"])
    for c in checks:
        d = by_id.get(c.get("deploy_id") or "")
        if d is None:  # matched by service and version (or time) when the check names no deploy
            cands = [x for x in by_id.values() if x.service == c.get("service")
                     and (c.get("version") in (None, x.version)) and x.ts <= float(c["ts"])]
            d = max(cands, key=lambda x: x.ts) if cands else None
        if d is not None:
            d.checks.append(c)
    views = sorted(by_id.values(), key=lambda d: (d.ts, d.deploy_id))
    return views, sorted(shared, key=lambda r: r["ts"])
