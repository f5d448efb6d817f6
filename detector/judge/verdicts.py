"""What the judge writes: a finding's anomaly and reason, and each deploy's one verdict.

`VerdictWriter` is mixed into `Judge`: it turns acted-on findings into a
rollback, page or ticket with its root cause (`rootcause.hint`, smoke checks'
evidence included), and a verification without one into a confirmation or an
inconclusive verdict that says what its data could and could not exclude
(`exclusion`: service-wide and on the least-covered endpoints; `exclusion_signals`:
the same for latency and completed transactions).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from detector.config import Rule
from detector.judge import exclusion, exclusion_signals
from detector.judge.rootcause import hint
from detector.judge.verification import Finding, Verification
from detector.records import Anomaly, Record, Verdict

ACTION_RANK = {"rollback": 3, "page": 2, "ticket": 1, "none": 0}
SEVERITY = {"rollback": "critical", "page": "critical", "ticket": "warning", "none": "info"}


class VerdictWriter:
    """The records of a verification (mixed into `Judge`, whose state it reads)."""

    def _anomaly(self, v: Verification, f: Finding, rule: Rule) -> Anomaly:
        sev = "warning" if f.blamed_elsewhere else SEVERITY[f.action]
        if f.dry_run:
            sev = "info"
        detail = {"rule": f.rule, "action": f.action, "reference": f.reference, "effect": f.effect,
                  "requests": f.n, "traffic_share": f.share, "dry_run": f.dry_run, **f.detail}
        if f.shared:
            detail["shared"] = list(f.shared)
            detail["suspected_deploy_id"] = v.deploy.deploy_id
        return Anomaly(
            ts=f.window_end, service=v.deploy.service,
            endpoint=self.interner.lookup(f.endpoint) if f.endpoint >= 0 else None,
            version=v.deploy.version, signal=f.signal, observed=f.observed, expected=f.expected,
            score=f.score, severity=sev, window_start=f.window_start, window_end=f.window_end,
            deploy_id=None if f.shared else v.deploy.deploy_id, detail=detail)

    def _reason(self, f: Finding) -> str:
        rule = next(r for r in self.p.rules if r.name == f.rule)
        scope = f"endpoint {self.interner.lookup(f.endpoint)} ({f.share:.0%} of traffic)" if f.endpoint >= 0 \
            else "all endpoints"
        ref = "the stable version in the same windows" if f.reference == "stable" else "the service before the deploy"
        p = 10 ** -f.score
        ev = f"evidence 10^{f.score:.1f}"
        need = f"rule '{f.rule}' needs"
        if f.signal == "error_rate":
            what = (f"error rate {f.observed:.2%} vs {f.expected:.2%} for {ref} on {scope} "
                    f"(+{f.effect:.1f} points window by window, {ev}, {f.n} requests)")
            need += f" +{rule.min_effect:g} points"
        elif f.signal == "latency":
            q = f.detail.get("quantile", rule.quantile)
            what = (f"p{q * 100:g} latency {f.observed:.0f} ms vs {f.expected:.0f} ms for {ref} on {scope} "
                    f"({f.effect:.2f}x, {ev}, {f.n} requests)")
            need += f" {rule.min_effect:g}x"
        elif f.signal in ("log_novelty", "log_errors"):
            label = "new log template" if f.signal == "log_novelty" else "log template rising"
            what = (f'{label} ({f.detail.get("kind", "other")}) "{f.detail.get("template", "")}": '
                    f"{f.n} lines from the new version since the deploy")
            return (f"{what}; rule '{f.rule}' needs {rule.min_effect:g} lines, {rule.min_level:.1%} of the new "
                    f"version's requests, still appearing {rule.duration_s:g} s after the first -> {f.action}")
        elif f.signal == "smoke":
            return self.smoke.reason(f, rule)
        elif f.signal == "volume":
            basis = {"seasonal": "for this time of day", "recent": "from recent traffic"}.get(
                f.reference, "from the level before the deploy")
            what = f"{f.observed:.0f} requests to the service vs {f.expected:.0f} expected {basis} " \
                   f"(-{f.effect:.0%}, p={p:.1g})"
            need += f" a drop of {rule.min_effect:.0%}"
        else:
            what = (f"completed transactions {f.observed:.2%} of requests vs {f.expected:.2%} for {ref} on {scope} "
                    f"(-{f.effect:.0%}, {ev})")
            need += f" a drop of {rule.min_effect:.0%}"
        if rule.min_level:
            need += f" above {rule.min_level:g}"
        budget = f"the deploy's false-alarm budget ({self.p.verification.false_alarm_rate:g})"
        return f"{what} over {rule.duration_s:g} s; {need} within {budget} -> {f.action}"

    def _decide(self, v: Verification, now: float, decision: str) -> list[Record]:
        acted = sorted(v.acted(), key=lambda f: (-ACTION_RANK[f.action], f.window_end))
        category, evidence = self._root_cause(v, acted, now)
        reasons = [self._reason(f) for f in acted[:5]]
        verdict = self._verdict(v, now, decision, reasons, category, evidence, smoke=False)
        if decision in ("rollback", "page") and self.p.verification.root_cause_grace_s > 0:
            self.grace[v.service] = v
        return [verdict]

    def _root_cause(self, v: Verification, acted: Sequence[Finding], now: float) -> tuple[str, tuple[str, ...]]:
        """The root-cause category and evidence (smoke checks' included) of acted-on findings."""
        blamed = [f for f in v.findings.values() if f.blamed_elsewhere]
        logs = self._log_evidence(v)
        endpoints_with_traffic = self._endpoints_with_new_traffic(v)
        first_err = None
        errs = [f for f in acted if f.signal == "error_rate"]
        if errs and v.first_new_window is not None:
            first = v.first_error_window if v.first_error_window is not None else min(f.window_start for f in errs)
            first_err = max(0.0, first - v.first_new_window)
        h = self.smoke.refine(hint(acted, blamed, logs, endpoints_with_traffic, first_err, v.deploy.change_kind),
                              acted)
        return h.category, tuple(h.evidence) + self.smoke.evidence(v.deploy, v.started, now)

    def _endpoints_with_new_traffic(self, v: Verification) -> int:
        rs = self.requests
        return int(len(np.unique(rs.endpoint[(rs.service == v.service) & (rs.version == v.version)])))

    def _conclude(self, v: Verification, now: float, rolled_back: bool = False) -> list[Record]:
        acted = v.acted()
        if acted:
            top = max(acted, key=lambda f: ACTION_RANK[f.action])
            return self._decide(v, now, top.action)
        blamed = [f for f in v.findings.values() if f.blamed_elsewhere]
        ver = self.p.verification
        seen = exclusion.service_points(v.new_requests, v.pre, self._alpha_rule)
        powers = exclusion.endpoints(v.endpoint_requests, v.pre, self._alpha_rule, self.p.rules, self.interner.lookup)
        weak = exclusion.least_covered(powers, ver.detectable_error_points)
        by_name = {e.endpoint: e for e in powers}
        # Latency and transactions: statements only; the decision stays the error rate's (README, Deciding).
        more, other_signals, named = exclusion_signals.statements(
            [f(v.endpoint_requests, v.pre, self._alpha_rule, self.p.rules, self.interner.lookup)
             for f in (exclusion_signals.latency, exclusion_signals.transactions)],
            [e.endpoint for e in weak], lambda name: by_name[name].to_dict())
        detectable = {"error_points": round(seen, 2), **more, "endpoints": named}
        on_endpoints = [*(e.reason(ver.detectable_error_points) for e in weak), *other_signals]
        if v.new_requests < ver.inconclusive_min_requests or seen > ver.detectable_error_points:
            if seen >= 99.99 - self._reference_rate(v) * 100:
                what = "no regression of the error rate would have been seen at all"
            else:
                what = f"only an error-rate regression of +{seen:.1f} points or more would have been seen"
            reasons = [f"with {v.new_requests} requests to version {v.deploy.version} in {now - v.started:.0f} s "
                       f"{what}; a +{ver.detectable_error_points:g}-point regression cannot be excluded",
                       *on_endpoints]
            return [self._verdict(v, now, "inconclusive", reasons, "unknown", (), detectable=detectable)]
        seen = max(seen, exclusion.service_floor(self.p.rules))
        detectable["error_points"] = round(seen, 2)
        reasons = [f"no rule held for version {v.deploy.version} over {now - v.started:.0f} s "
                   f"({v.new_requests} requests); an error-rate regression of +{seen:.1f} points or more "
                   f"would have been seen", *on_endpoints]
        if rolled_back:
            reasons.append("the deploy was rolled back before the verification period ended")
        if blamed:
            reasons.extend(f"{self._reason(f)}; not the deploy's: {'; '.join(f.shared)}" for f in blamed[:3])
            h = hint([], blamed, self._log_evidence(v), 0, None, None)
            return [self._verdict(v, now, "confirmed", reasons, h.category, h.evidence, detectable=detectable)]
        return [self._verdict(v, now, "confirmed", reasons, "unknown", (), detectable=detectable)]

    def _reference_rate(self, v: Verification) -> float:
        pre = v.pre
        if pre is not None and pre.total_n:
            return pre.total_errors / pre.total_n
        return 0.0

    def _verdict(self, v: Verification, now: float, decision: str, reasons: Sequence[str], category: str,
                 evidence: Sequence[str], smoke: bool = True, detectable: dict | None = None) -> Verdict:
        anomalies = tuple(f.anomaly_id for f in v.findings.values() if f.anomaly_id)
        verdict = Verdict(ts=now, service=v.deploy.service, deploy_id=v.deploy.deploy_id, version=v.deploy.version,
                          decision=decision, reasons=tuple(reasons), root_cause=category,
                          evidence=tuple(evidence) + (self.smoke.evidence(v.deploy, v.started, now) if smoke else ()),
                          anomalies=anomalies, started=v.started, ended=now,
                          detail={"strategy": v.deploy.strategy, "new_version_requests": v.new_requests,
                                  **({"detectable": detectable} if detectable is not None else {})})
        v.verdict = verdict
        return verdict
