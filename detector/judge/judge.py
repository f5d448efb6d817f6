"""The judge: deploys in, anomalies and exactly one verdict per deploy out.

At every closed window it adds the window to each open verification's
accumulated evidence (`accumulate`, `sequential`: the new version against the
stable version in the same window when the stable version serves enough
traffic there, else against the service before the deploy) and evaluates the
escalation rules (`rules`) on that evidence and on the effect over each
rule's span. A rule that holds
becomes a finding and an anomaly; findings that are shared with what the
deploy did not change are blamed elsewhere. A rollback or page is decided as
soon as its rule holds; a ticket when its rule holds, unless a page or
rollback rule is in sight (its effect already there at a relaxed evidence
bar): then it waits for it up to `verification.ticket_hold_s` (a page or
rollback rule holding meanwhile decides instead), and after
an early ticket the page and rollback rules are still watched until the
period's end: one holding then sends one escalation anomaly (detail
`escalates`: the verdict's id), never a second verdict. Confirmations and
inconclusive verdicts come at the end of the verification period. A rollback
or page does not wait for log
evidence: for `verification.root_cause_grace_s` of event time after it, the
deploy's log lines are still counted, and the first window whose evidence
changes the root-cause category emits one `root_cause` record completing it.
The anomalies, reasons and verdicts themselves are written by `verdicts`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detector.ingest.columns import DeployEvent
from detector.config import Pipeline, Rule
from detector.ingest.interner import Interner
from detector import stats
from detector.judge import accumulate, blame, rules
from detector.judge.evidence import (Population, SpanSums, Traffic, WindowSums, on_endpoints, population,
                                     window_sums)
from detector.judge.rootcause import LogEvidence
from detector.judge.smoke import SmokeEvidence
from detector.logs.findings import DeployContext
from detector.judge.verdicts import ACTION_RANK, VerdictWriter
from detector.judge.verification import Finding, Verification
from detector.records import Anomaly, Record, RootCause
from detector.aggregate.series import MetricSeries, RequestSeries
from detector.aggregate.windows import WindowFacts



@dataclass(frozen=True)
class _TemplateSeen:
    """What `_shared_template` reads of a template."""

    template: str
    kind: str
    first_seen_ts: float


class Judge(VerdictWriter):
    def __init__(self, pipeline: Pipeline, interner: Interner, requests: RequestSeries, metrics: MetricSeries,
                 seasonal=None, logs=None) -> None:
        self.p = pipeline
        self.interner = interner
        self.requests = requests
        self.metrics = metrics
        self.logs = logs
        self.seasonal = seasonal
        self.verifications: dict[int, Verification] = {}
        # Verifications whose rollback or page went out, still collecting log evidence for
        # their root cause (service -> verification), until `root_cause_grace_s` after the verdict.
        self.grace: dict[int, Verification] = {}
        # Derived from each open verification's slices, never saved: service -> (verification, sums).
        self._spans: dict[int, tuple[Verification, SpanSums]] = {}
        # Windows added up during one evaluation: window ids -> (windows, sums).
        self._window_memo: dict[tuple, tuple[tuple[WindowFacts, ...], WindowSums]] = {}
        # Services whose held ticket has a page or rollback rule in sight this window (never saved:
        # recomputed from the verification at every window).
        self._sight: dict[int, bool] = {}
        self.done: deque[str] = deque(maxlen=10_000)  # deploy ids already judged (replays of their events)
        self._infra_ids = frozenset(interner.intern(n) for n in pipeline.verification.infra_metrics)
        self._critical = frozenset(pipeline.verification.critical_endpoints)
        self.fleet = None  # detector.fleet.evidence.FleetEvidence, set by the core when [fleet] is on
        self.smoke = SmokeEvidence(pipeline)  # check runs, handed over by the core in event-time order
        tested = [r for r in pipeline.rules if r.signal in ("error_rate", "latency", "transactions")]
        # The deploy's false-alarm budget, split evenly over the rules that compare requests.
        self._alpha_rule = pipeline.verification.false_alarm_rate / max(1, len(tested))
        keys = {accumulate.signal_key(r.signal, r.quantile): (r.signal, r.quantile) for r in tested}
        self._signal_keys = [(k, *keys[k]) for k in sorted(keys)]

    # --- lifecycle ---

    def on_deploy(self, ev: DeployEvent) -> list[Record]:
        out: list[Record] = []
        sid = self.interner.intern(ev.service, key=True)
        cur = self.verifications.get(sid)
        if ev.phase == "started":
            if ev.deploy_id in self.done or (cur is not None and cur.deploy.deploy_id == ev.deploy_id):
                return out
            if cur is not None and cur.open:
                out.append(self._verdict(cur, ev.ts, "superseded",
                                         [f"deploy {ev.deploy_id} of version {ev.version} started at "
                                          f"{ev.ts:.0f} before this verification ended"], "unknown", ()))
            elif cur is not None:  # judged (an early ticket's watch ends here): its events replayed are ignored
                self.done.append(cur.deploy.deploy_id)
            stable: tuple[int, ...] = ()
            if ev.previous_version:
                stable = (self.interner.intern(ev.previous_version, key=True),)
            self.verifications[sid] = Verification(
                deploy=ev, service=sid, version=self.interner.intern(ev.version, key=True), started=ev.ts,
                ends=ev.ts + self.p.verification.period_s, stable_versions=stable)
        elif cur is not None and cur.deploy.deploy_id == ev.deploy_id:
            if ev.phase == "finished":
                cur.finished_ts = ev.ts
            elif ev.phase == "rolled_back" and cur.open:
                out.extend(self._conclude(cur, ev.ts, rolled_back=True))
            elif ev.phase == "rolled_back":
                cur.watch_until = None  # nothing left to escalate
        return out

    # --- per closed window ---

    def on_window(self, w: WindowFacts, history: Sequence[WindowFacts]) -> list[Record]:
        out: list[Record] = self._complete_root_causes(w)
        for v in list(self.verifications.values()):
            if not v.verifying or w.end <= v.started:
                continue
            out.extend(self._step(v, w, history))
        self._retire()
        return out

    def _step(self, v: Verification, w: WindowFacts, history: Sequence[WindowFacts]) -> list[Record]:
        """One closed window of an open or watched verification."""
        out = self._evaluate(v, w, history)
        if v.verifying:
            out.extend(self._smoke(v, w.end))
        if v.open:
            out.extend(self._hold_ticket(v, w.end))
        if v.open and w.end >= v.ends:
            out.extend(self._conclude(v, w.end))
        if v.watching and w.end >= v.watch_until:
            v.watch_until = None
        return out

    def _hold_ticket(self, v: Verification, now: float) -> list[Record]:
        """A ticket rule holds and nothing more urgent: the ticket goes out at once when no page or
        rollback rule is in sight (`ticket_hold = "in_sight"`), else when none is any more, at the
        latest `ticket_hold_s` after it first held (`"always"`: then, in any case); the verification
        is watched until its period's end."""
        acted = v.acted()
        if not acted or max(ACTION_RANK[f.action] for f in acted) != ACTION_RANK["ticket"]:
            return []
        if v.ticket_hold_until is None:
            v.ticket_hold_until = now + self.p.verification.ticket_hold_s
        waits = self.p.verification.ticket_hold == "always" or self._sight.get(v.service, False)
        if now < v.ticket_hold_until and waits:
            return []
        out = self._decide(v, now, "ticket")
        if now < v.ends:
            v.watch_until = v.ends
        return out

    def _act(self, v: Verification, now: float, urgent: Sequence[Finding]) -> list[Record]:
        """A page or rollback rule holds: the verdict, or after an early ticket its escalation."""
        top = max(urgent, key=lambda f: ACTION_RANK[f.action])
        if v.open:
            return self._decide(v, now, top.action)
        if v.watching:
            return [self._escalate(v, now, top)]
        return []

    def _escalate(self, v: Verification, now: float, f: Finding) -> Anomaly:
        """The one anomaly that escalates an early ticket: the rule's signal, severity critical,
        the verdict's id in `detail.escalates` (the verdict itself is never sent again)."""
        assert v.verdict is not None
        detail = {**f.detail, "escalates": v.verdict.id, "rule": f.rule, "action": f.action,
                  "anomaly": f.anomaly_id, "reason": self._reason(f)}
        anomaly = Anomaly(
            ts=now, service=v.deploy.service, endpoint=self.interner.lookup(f.endpoint) if f.endpoint >= 0 else None,
            version=v.deploy.version, signal=f.signal, observed=f.observed, expected=f.expected, score=f.score,
            severity="critical", window_start=f.window_start, window_end=f.window_end,
            deploy_id=v.deploy.deploy_id, detail=detail).with_id()
        v.escalation = anomaly.id
        v.watch_until = None
        return anomaly

    def _smoke(self, v: Verification, now: float) -> list[Record]:
        """Smoke rules (detector/judge/smoke.py) at a closed window: findings, anomalies, a rollback or page."""
        out: list[Record] = []
        for key, f in self.smoke.findings(v.deploy, v.started, now, v.findings):
            anomaly = self._anomaly(v, f, next(r for r in self.p.rules if r.name == f.rule)).with_id()
            f.anomaly_id = anomaly.id
            v.findings[key] = f
            out.append(anomaly)
        urgent = [f for f in v.acted() if f.action in ("rollback", "page")]
        if out and urgent:
            out.extend(self._act(v, now, urgent))
        return out

    def _complete_root_causes(self, w: WindowFacts) -> list[Record]:
        """Log evidence of this window for the verdicts in their grace; a `root_cause` record
        for each whose category it changes (then its grace ends: one record per verdict)."""
        out: list[Record] = []
        grace_s = self.p.verification.root_cause_grace_s
        for sid, v in list(self.grace.items()):
            verdict = v.verdict
            if verdict is None or w.end <= verdict.ts:
                continue
            if w.start >= verdict.ts + grace_s:
                del self.grace[sid]
                continue
            if self.logs is not None:
                self._count_log_lines(v, self.logs.closed_counts(w.start, w.end))
                stable = self.interner.lookup(v.stable_versions[0]) if v.stable_versions else None
                ctx = DeployContext(v.deploy.service, v.deploy.deploy_id, v.started, v.deploy.version, stable)
                try:
                    v.log_findings.extend(self.logs.findings(ctx, w.start))
                except ValueError:  # the log window is not closed (no log line reached it yet)
                    pass
            category, evidence = self._root_cause(v, v.acted(), verdict.ts)
            if category != verdict.root_cause:
                out.append(RootCause(ts=w.end, service=verdict.service, deploy_id=verdict.deploy_id,
                                     root_cause=category, evidence=evidence))
                del self.grace[sid]
            elif w.end >= verdict.ts + grace_s:
                del self.grace[sid]
        return out

    def _retire(self) -> None:
        self._window_memo.clear()  # end of a window's evaluations: let its windows go
        for sid in [s for s, v in self.verifications.items() if not v.verifying]:
            self.done.append(self.verifications.pop(sid).deploy.deploy_id)
            self._spans.pop(sid, None)

    def _span_sums(self, v: Verification) -> SpanSums:
        """The span sums derived from `v`'s slices (kept across windows, rebuilt after a restore)."""
        held = self._spans.get(v.service)
        if held is None or held[0] is not v:
            held = self._spans[v.service] = (v, SpanSums())
        return held[1]

    def catch_up(self, ev: DeployEvent, history: Sequence[WindowFacts]) -> list[Record]:
        """A deploy event that arrived after windows following it had closed: judge those
        windows now, in order, as if it had arrived in time (they are still in history)."""
        v = self.verifications.get(self.interner.get(ev.service))
        if v is None or v.deploy.deploy_id != ev.deploy_id:
            return []
        out: list[Record] = []
        hist = list(history)
        # Windows the verification has already judged (its `started` event came in time, and this
        # is a late `finished`, or a repeated event) are not judged twice.
        judged_until = max(v.slices, default=-math.inf)
        for i, h in enumerate(hist):
            if h.end <= v.started or h.start <= judged_until:
                continue
            if not v.verifying:
                break
            out.extend(self._step(v, h, hist[: i + 1]))
        self._retire()
        return out

    def _pop(self, windows: Sequence[WindowFacts], service: int, versions=None, exclude_versions=(),
             endpoints=None) -> Population:
        rs = self.requests
        return population(self._window_sums(windows), rs.service, rs.endpoint, rs.version, service, versions,
                          exclude_versions, endpoints)

    def _window_sums(self, windows: Sequence[WindowFacts]) -> WindowSums:
        """`windows` added up once per evaluation, for every population cut from them
        (a window's two slices; the services compared when blaming)."""
        n_series = len(self.requests)
        key = (tuple(map(id, windows)), n_series)
        held = self._window_memo.get(key)
        if held is None:
            # Holding the windows keeps their ids from being reused while the entry lives.
            held = self._window_memo[key] = (tuple(windows), window_sums(windows, n_series))
        return held[1]

    def _slice(self, v: Verification, w: WindowFacts, endpoints: np.ndarray) -> dict[str, Population]:
        """This window's new-version, stable and whole-service traffic, computed once."""
        one = [w]
        stable_versions = v.stable_versions or None
        return {
            "new": self._pop(one, v.service, versions=(v.version,), endpoints=endpoints),
            "stable": self._pop(one, v.service, versions=stable_versions, exclude_versions=(v.version,),
                                endpoints=endpoints),
        }

    def _evaluate(self, v: Verification, w: WindowFacts, history: Sequence[WindowFacts]) -> list[Record]:
        self._window_memo.clear()
        self._sight.pop(v.service, None)
        width = self.p.windows.width_s
        start_floor = math.floor(v.started / width) * width
        endpoints = np.unique(self.requests.endpoint[self.requests.service == v.service]).astype(np.int32)
        if self.logs is not None:
            self._count_log_lines(v, self.logs.closed_counts(w.start, w.end))
        here = self._slice(v, w, endpoints)
        v.slices[w.start] = here
        new_here = here["new"].total_n
        v.new_requests += new_here
        for ep, n in zip(here["new"].endpoints.tolist(), here["new"].n.tolist()):
            if n:
                v.endpoint_requests[ep] = v.endpoint_requests.get(ep, 0) + int(n)
        if new_here and v.first_new_window is None:
            v.first_new_window = w.start
        out: list[Record] = self._log_findings(v, w)
        if v.first_new_window is None:
            return out
        before = [h for h in history if h.end <= start_floor and h.start >= start_floor - self.p.verification.baseline_s]
        # The fleet's "before" is what the history still holds, like `before`: a restored core
        # rebuilds its part of the fleet view from the history alone, and must blame alike.
        before_from = max(start_floor - self.p.verification.baseline_s, history[0].start if history else -math.inf)
        if v.pre is None:
            v.pre = self._pop(before, v.service, exclude_versions=(v.version,), endpoints=endpoints)
        # The service may have reached endpoints since (a new route, a flood folded into `other`).
        pre_all = on_endpoints(v.pre, endpoints)
        if v.first_error_window is None and here["new"].total_errors:
            # The first window where the new version's errors stood out (for the root cause:
            # errors from the first requests on point at configuration).
            before_rate = pre_all.total_errors / pre_all.total_n if pre_all.total_n else 0.0
            if here["new"].total_errors / new_here >= before_rate + self.p.verification.detectable_error_points / 100:
                v.first_error_window = w.start
        spans = self._span_sums(v)
        spans.begin(v.slices, endpoints)
        same_here = self._same_window(here)
        for key, signal, q in self._signal_keys:
            llr, before_counts = accumulate.window_llr(signal, here["new"], here["stable"], pre_all, same_here, q,
                                                       self.p.tests.latency_quantiles,
                                                       self.p.verification.window_evidence_cap)
            accumulate.add_window(v.evidence, key, here["new"].endpoints, llr, before_counts,
                                  self.p.verification.window_evidence_cap)

        evidence_of: dict[tuple, tuple] = {}  # (signal, quantile) -> log10 evidence: the same for every such rule
        tables_of: dict[tuple, tuple] = {}  # a span's tables, the same for every rule of its kind and span
        for rule in self.p.rules:
            if rule.signal not in ("error_rate", "latency", "transactions", "volume"):
                continue
            if w.end - max(start_floor, v.first_new_window) < rule.duration_s:
                continue
            starts = [s for s in v.slices if s >= w.end - rule.duration_s - 1e-9]
            if not starts:
                continue
            new = spans.total("new", starts)
            if new.total_n == 0:
                continue
            if rule.signal == "volume":
                total = new.total_n + spans.total("stable", starts).total_n
                c = self._volume_drop(v, rule, starts, total, pre_all, w)
                if c is not None and (rule.name, -1) not in v.findings:
                    f = Finding(rule=rule.name, signal="volume", action=rule.action, endpoint=-1,
                                observed=c.observed, expected=c.expected, effect=c.effect, score=c.score, n=c.n,
                                share=1.0, window_start=starts[0], window_end=w.end, reference=c.detail["reference"],
                                dry_run=rule.dry_run, detail=c.detail)
                    anomaly = self._anomaly(v, f, rule).with_id()
                    f.anomaly_id = anomaly.id
                    v.findings[(rule.name, -1)] = f
                    out.append(anomaly)
                continue
            ev_rows, ev_service = self._evidence(v, rule, evidence_of, endpoints, pre_all)
            if not rules.may_hold(rule, ev_rows, ev_service, self._alpha_rule):
                continue  # its evidence rules out any candidate: nothing below can change a decision
            inp, ref_name = self._rule_inputs(v, rule, starts, spans, pre_all, endpoints, ev_rows, ev_service,
                                              self._alpha_rule, tables_of)
            for c in rules.evaluate(rule, inp):
                key = (rule.name, c.endpoint)
                earlier = v.findings.get(key)
                if earlier is not None and not earlier.shared:
                    continue
                span = [h for h in history if h.start >= starts[0]]
                blame_before, blame_range = self._blame_before(history, before, (before_from, start_floor), starts[0])
                ctx = blame.Context(
                    span=span, before=blame_before, population=self._pop,
                    services=self._active_services(span), lookup=self.interner.lookup,
                    metric_service=self.metrics.arrays()[0], metric_name=self.metrics.arrays()[1],
                    metric_labels=self.metrics.arrays()[2],
                    infra_metric_ids=self._infra_ids,
                    new_versions={o.service: (o.version,) for o in self.verifications.values() if o.verifying},
                    min_requests=self.p.tests.min_requests, significance=self.p.tests.significance,
                    fleet=self.fleet, span_range=(starts[0], w.end),
                    before_range=blame_range, infra_blame=self.p.verification.infra_blame)
                compared = ref_name if self._compared_with_stable(v, starts, c.endpoint) else "before"
                shared = blame.shared_with(rule, v.service, v.version, compared, ctx, endpoint=c.endpoint)
                if earlier is not None:
                    # A shared finding looked at again is the deploy's only over the first clean
                    # spans: one that starts after the end of the last span where blame still
                    # found it shared, within one rule span of it. Blame may miss a shared cause
                    # the span still overlaps (its tail, or a baseline before the span that the
                    # cause already covers); a fault of the deploy's that outlasts the cause shows
                    # as soon as a span is clear of it. Later, the evidence gathered during the
                    # shared cause (it is never forgotten) would let noise in a clean span through.
                    if shared:
                        v.shared_seen[key] = w.end
                        continue  # still shared: reported once
                    seen = v.shared_seen.get(key, earlier.window_end)
                    if not seen <= starts[0] <= seen + rule.duration_s + 1e-9:
                        continue
                action = self._action(v, rule, c.endpoint, pre_all, new)
                f = Finding(rule=rule.name, signal=rule.signal, action=action, endpoint=c.endpoint,
                            observed=c.observed, expected=c.expected, effect=c.effect, score=c.score, n=c.n,
                            share=c.share, window_start=starts[0], window_end=w.end, reference=ref_name,
                            dry_run=rule.dry_run, shared=shared, detail=c.detail)
                anomaly = self._anomaly(v, f, rule).with_id()
                f.anomaly_id = anomaly.id
                v.findings[key] = f
                out.append(anomaly)
        acted = v.acted()
        if acted and max(ACTION_RANK[f.action] for f in acted) == ACTION_RANK["ticket"] \
                and self.p.verification.ticket_hold == "in_sight":
            self._sight[v.service] = self._urgent_in_sight(
                v, w.end, w.end - max(start_floor, v.first_new_window), spans, pre_all, endpoints, evidence_of,
                tables_of)
        horizon = w.end - max([r.duration_s for r in self.p.rules] + [width]) - width
        for s in [s for s in v.slices if s < horizon]:
            del v.slices[s]
        urgent = [f for f in v.acted() if f.action in ("rollback", "page")]
        if urgent:
            out.extend(self._act(v, w.end, urgent))
        return out

    def _blame_before(self, history: Sequence[WindowFacts], before: list[WindowFacts],
                      before_range: tuple[float, float], span_start: float
                      ) -> tuple[list[WindowFacts], tuple[float, float]]:
        """What blame compares a span with: the windows before the deploy while the history still
        holds a third of `baseline_s` of them; later in the verification (the history keeps
        `baseline_s` and the longest rule span, so they age out after about that long), the
        `baseline_s` before the span. Without this, a shared cause that began in the second
        half of a verification found nothing to compare with and was the deploy's."""
        width = self.p.windows.width_s
        if len(before) * width >= self.p.verification.baseline_s / 3:
            return before, before_range
        start = span_start - self.p.verification.baseline_s
        windows = [h for h in history if h.end <= span_start and h.start >= start]
        return windows, (max(start, history[0].start if history else -math.inf), span_start)

    @staticmethod
    def _evidence(v: Verification, rule: Rule, evidence_of: dict, endpoints: np.ndarray,
                  pre_all: Population) -> tuple[np.ndarray, float]:
        """The accumulated log10 evidence (per endpoint row, service-wide) a rule reads: the same
        for every rule of its signal and quantile, so computed once per evaluation."""
        key = (rule.signal, rule.quantile)
        if key not in evidence_of:
            evidence_of[key] = accumulate.log10_evidence(
                v.evidence, accumulate.signal_key(rule.signal, rule.quantile), endpoints,
                *accumulate.before_counts(rule.signal, pre_all, rule.quantile))
        return evidence_of[key]

    def _rule_inputs(self, v: Verification, rule: Rule, starts: list[float], spans: SpanSums, pre_all: Population,
                     endpoints: np.ndarray, ev_rows: np.ndarray, ev_service: float, alpha: float,
                     tables_of: dict) -> tuple[rules.Inputs, str]:
        """What `rules.evaluate` reads for `rule` over the span of windows `starts`: the reference
        ("stable" or "before"), traffic shares, and the span's latency parts or rate tables."""
        new = spans.total("new", starts)
        same = [self._same_window(v.slices[s]) for s in starts]
        in_same = sum(v.slices[s]["new"].total_n for s, u in zip(starts, same) if u)
        # "stable" only when every window of the span compared with the stable version:
        # where any compared with the past, a shared cause (a slow database) is not
        # cancelled out, and blame must look for it.
        ref_name = "stable" if in_same >= new.total_n else "before"
        stable = spans.total("stable", starts)
        shares = stable if ref_name == "stable" and stable.total_n else pre_all if pre_all.total_n else new

        def share_of(ep: int, _p: Traffic = shares) -> float:
            row = _p.row(ep)
            return float(_p.n[row] / _p.total_n) if row >= 0 and _p.total_n else 0.0

        # A shared finding is looked at again while its rule holds: once its span no longer
        # overlaps the shared cause (a slowdown that ended), blame can tell whether it is the deploy's.
        found = {ep for (name, ep), f in v.findings.items() if name == rule.name and not f.shared}
        inp = rules.Inputs(endpoints, ev_rows, ev_service, alpha, share_of=share_of, skip=found)
        if rule.signal == "latency":
            k = len(starts)
            inp.new, inp.ref = new, (stable if ref_name == "stable" else pre_all)
            inp.parts = [spans.total("new", starts[j * k // 3:(j + 1) * k // 3]) for j in range(3)] \
                if k >= 3 else []
        else:
            kind = "error_rate" if rule.signal == "error_rate" else "completions"
            if (kind, *starts) not in tables_of:
                tables_of[(kind, *starts)] = accumulate.span_tables(
                    kind, [v.slices[s]["new"] for s in starts], [v.slices[s]["stable"] for s in starts],
                    pre_all, same, endpoints)
            inp.tables = tables_of[(kind, *starts)]
        return inp, ref_name

    def _compared_with_stable(self, v: Verification, starts: list[float], endpoint: int) -> bool:
        """Whether every request of the new version on `endpoint` (-1: on any endpoint) over the
        span was compared with the stable version's in the same window. Evidence is gathered
        window by window and endpoint by endpoint: where the stable version served none of an
        endpoint's requests in a window (a rarely used endpoint), the new version's were compared
        with the service before the deploy, so a shared cause (a slow database) is not cancelled
        out there and blame must look for it, as for a span compared with the past."""
        for s in starts:
            here = v.slices[s]
            new = here["new"]
            if not new.total_n:
                continue
            if not self._same_window(here):
                return False
            served = dict(zip(here["stable"].endpoints.tolist(), here["stable"].n.tolist()))
            for ep, n in zip(new.endpoints.tolist(), new.n.tolist()):
                if n and (endpoint < 0 or ep == endpoint) and not served.get(ep, 0):
                    return False
        return True

    def _urgent_in_sight(self, v: Verification, now: float, elapsed: float, spans: SpanSums, pre_all: Population,
                         endpoints: np.ndarray, evidence_of: dict, tables_of: dict) -> bool:
        """While a ticket is held: is a page or rollback rule in sight? One whose effect over the
        span it has so far (its last `duration_s`, or all since the new version's first requests)
        already meets its `min_effect` at the square root of its evidence bar (half of it in
        log10). Only then does the ticket wait for it; otherwise the ticket goes out at once,
        since nothing more urgent is coming soon. Neither persistence (the span may begin before
        the fault did) nor blame is asked: a blip or a shared cause in sight only makes the
        ticket wait, as every ticket did before; it never decides anything."""
        alpha = math.sqrt(self._alpha_rule)
        canary = v.deploy.strategy == "canary"
        for rule in self.p.rules:
            if rule.signal not in ("error_rate", "latency", "transactions") or rule.dry_run:
                continue
            could = {rule.action, rule.critical_action or rule.action}
            if canary and "page" in could:
                could.add(self.p.verification.canary_action)
            if not could & {"page", "rollback"}:
                continue
            starts = [s for s in v.slices if s >= now - min(rule.duration_s, elapsed) - 1e-9]
            if not starts:
                continue
            new = spans.total("new", starts)
            if new.total_n == 0:
                continue
            ev_rows, ev_service = self._evidence(v, rule, evidence_of, endpoints, pre_all)
            relaxed = dataclasses.replace(rule, min_score=rule.min_score / 2)
            if not rules.may_hold(relaxed, ev_rows, ev_service, alpha):
                continue
            inp, _ = self._rule_inputs(v, rule, starts, spans, pre_all, endpoints, ev_rows, ev_service, alpha,
                                       tables_of)
            inp.persistence = False
            if any(self._action(v, rule, c.endpoint, pre_all, new) in ("page", "rollback")
                   for c in rules.evaluate(relaxed, inp)):
                return True
        return False

    def _action(self, v: Verification, rule: Rule, endpoint: int, pre_all: Population, new: Traffic) -> str:
        """What a finding of `rule` on `endpoint` does: its action, its critical action on a critical
        endpoint, and a canary's page is its canary action (a canary is cheap to undo: a
        regression it shows is rolled back, not paged)."""
        action = rule.action
        if endpoint >= 0 and rule.critical_action and self._is_critical(endpoint, pre_all, new):
            action = rule.critical_action
        if v.deploy.strategy == "canary" and action == "page":
            action = self.p.verification.canary_action
        return action

    def _same_window(self, here: dict[str, Population]) -> bool:
        """Whether the stable version served enough traffic in a window to be compared with there
        (decided from request counts only, never from outcomes). `verification.comparison`:
        auto (at least `stable_min_share` of the new version's requests), canary (any stable
        traffic at all), before_after (never: always the service before the deploy)."""
        stable, new = here["stable"].total_n, here["new"].total_n
        how = self.p.verification.comparison
        if how == "before_after":
            return False
        if how == "canary":
            return stable > 0
        return stable > 0 and stable >= self.p.verification.stable_min_share * new

    def _is_critical(self, endpoint: int, *populations: Traffic) -> bool:
        """Listed in `verification.critical_endpoints`, or (by default) an endpoint that
        completes business transactions."""
        if self.interner.lookup(endpoint) in self._critical:
            return True
        if not self.p.verification.transaction_endpoints_critical:
            return False
        for p in populations:
            row = p.row(endpoint)
            if row >= 0 and p.txn[row] > 0:
                return True
        return False

    def _log_findings(self, v: Verification, w: WindowFacts) -> list[Record]:
        """Template novelty and error shifts of this window: evidence, anomalies, log rules."""
        if self.logs is None:
            return []
        stable = self.interner.lookup(v.stable_versions[0]) if v.stable_versions else None
        ctx = DeployContext(v.deploy.service, v.deploy.deploy_id, v.started, v.deploy.version, stable)
        try:
            found = self.logs.findings(ctx, w.start)
        except ValueError:  # the log window is not closed (no log line reached it yet)
            found = []
        out: list[Record] = []
        for f in found:
            v.log_findings.append(f)
            key = (f.signal, f.template_id)
            if key in v.log_reported:
                continue
            v.log_reported[key] = f
            anomaly = Anomaly(
                ts=w.end, service=f.service, endpoint=None, version=f.version, signal=f.signal,
                observed=f.observed, expected=f.expected, score=f.score,
                severity=f.severity if f.attributed else "warning",
                window_start=f.window_start, window_end=f.window_end,
                deploy_id=f.deploy_id if f.attributed else None,
                detail={"template_id": f.template_id, "template": f.template, "kind": f.kind, "level": f.level,
                        "scope": f.scope, "first_seen_after_deploy_s": f.first_seen_after_deploy_s,
                        "count_since_deploy": f.count_since_deploy, "versions": list(f.versions),
                        "services": list(f.services),
                        **({} if f.attributed else {"suspected_deploy_id": f.deploy_id})}).with_id()
            v.log_anomaly_ids[key] = anomaly.id
            out.append(anomaly)
        self._log_rules(v, w)
        return out

    def _volume_drop(self, v: Verification, rule: Rule, starts: list[float], observed: int, pre: Population,
                     w: WindowFacts) -> rules.Candidate | None:
        """The service's requests (every version) over the span against what this time of day
        expects (the seasonal baseline; before it is ready, the level before the deploy):
        a surge or the morning ramp is never a finding, only a drop."""
        width = self.p.windows.width_s
        mean, var, ready, seasonal = (float("nan"), float("nan"), False, False)
        if self.seasonal is not None:
            mean, var, ready, seasonal = self.seasonal.expected_volume_detail(v.service, starts)
        reference = "seasonal" if seasonal else "recent"
        if not ready:
            if pre.seconds <= 0 or pre.total_n == 0:
                return None
            mean = pre.total_n / pre.seconds * len(starts) * width
            var = 2.0 * mean  # overdispersion unknown before the baseline is ready: assume some
            reference = "before"
        drop = 1.0 - observed / mean if mean > 0 else 0.0
        if drop < rule.min_effect and math.isfinite(mean) and mean >= 0 and math.isfinite(var) and var >= 0:
            return None  # too small a drop whatever the test says (which would accept these inputs)
        dev = stats.count_deviation(observed, mean, var, direction="drop")
        if drop < rule.min_effect or dev.score < rule.min_score:
            return None
        return rules.Candidate(-1, float(observed), float(mean), drop, float(dev.score), observed, 1.0,
                               {"reference": reference})

    @staticmethod
    def _count_log_lines(v: Verification, log_windows: Sequence) -> None:
        """WARN-and-above lines of the new version per template, from closed log windows only
        (so the count is the same however the lines arrived)."""
        for lw in log_windows:
            if lw.end_ts <= v.started:
                continue
            for row in lw.rows:
                if row.service != v.deploy.service or row.version != v.deploy.version or row.level == "info":
                    continue
                seen = v.log_lines.get(row.template_id)
                if seen is None:
                    v.log_lines[row.template_id] = [row.count, lw.start_ts, lw.end_ts]
                else:
                    seen[0] += row.count
                    seen[2] = max(seen[2], lw.end_ts)

    def _log_rules(self, v: Verification, w: WindowFacts) -> None:
        """A log rule holds for a template of the deploy's own (not shared) findings
        when it has at least min_effect lines at WARN or above, at least min_level
        lines per request of the new version, and kept appearing for duration_s
        after it was first seen (a pod-restart blip's lines do not)."""
        for (signal, tid), f in v.log_reported.items():
            if not f.attributed or f.level == "info":
                continue
            seen = v.log_lines.get(tid)
            if seen is None:
                continue
            lines, first_start, last_end = seen
            for rule in self.p.rules:
                key = (rule.name, tid)
                if rule.signal != signal or key in v.findings:
                    continue
                if lines < rule.min_effect or f.score < rule.min_score:
                    continue
                if lines / max(v.new_requests, 1) < rule.min_level:
                    continue
                if last_end - first_start < rule.duration_s:
                    continue
                finding = Finding(rule=rule.name, signal=signal, action=rule.action, endpoint=-1,
                                  observed=float(lines), expected=f.expected, effect=float(lines), score=f.score,
                                  n=lines, share=1.0, window_start=f.window_start, window_end=w.end,
                                  reference="before", dry_run=rule.dry_run, shared=self._shared_template(v, f),
                                  detail={"template": f.template, "kind": f.kind})
                finding.anomaly_id = v.log_anomaly_ids[(signal, tid)]
                v.findings[key] = finding

    def _shared_template(self, v: Verification, f) -> tuple[str, ...]:
        """Other services of this partition that began logging a template like this one
        (a refused connection, an exhausted pool, ...) within
        `verification.shared_window_s` of it: a shared dependency, not the deploy.
        Texts differ between services (pool and host names), so the kind and the time
        say it for dependency failures, most of the words for the rest."""
        if self.logs is None:
            return ()
        near = self.p.verification.shared_window_s
        words = set(f.template.split())

        def alike(text: str) -> bool:
            # Dependency failures (connections, data) look alike whatever their words;
            # other kinds need most of their words in common.
            if f.kind in ("connection", "data"):
                return True
            other = set(text.split())
            return len(words & other) >= 0.6 * max(1, len(words | other))

        if self.fleet is not None:  # the fleet view: templates of every partition's services
            seen = self.fleet.templates()
        else:
            seen = [(t.service, t.kind, t.first_seen_ts, t.text) for t in self.logs.templates()
                    if not t.overflow and any(n for lvl, n in t.counts_by_level.items() if lvl != "info")]
        others = sorted({svc for svc, kind, first_seen_ts, text in seen
                         if svc != v.deploy.service and kind == f.kind
                         and abs(first_seen_ts - f.first_seen_ts) <= near
                         and first_seen_ts >= v.started - near
                         and alike(text)})
        if not others:
            return ()
        return (f"other services began logging a new {f.kind} template like it at the same time: "
                f"{', '.join(others)}",)

    def _log_evidence(self, v: Verification) -> list[LogEvidence]:
        best: dict[str, LogEvidence] = {}
        for f in v.log_findings:
            if f.level == "info":
                continue
            best[f.template_id] = LogEvidence(template=f.template, kind=f.kind, count=f.count_since_deploy,
                                              first_seen_after_s=f.first_seen_after_deploy_s,
                                              shared=not f.attributed)
        # Evidence needs no threshold (rules keep theirs): a template never seen before the
        # deploy, logged at WARN or above by the deploy's own version and by no other, counts
        # from its first line, before the log findings would report it.
        if self.logs is not None:
            grace = self.p.windows.width_s
            for tid, (lines, _first, _last) in v.log_lines.items():
                if tid in best:
                    continue
                t = self.logs.template_by_id(tid)
                if t is None or t.overflow or t.first_seen_ts < v.started - grace \
                        or set(t.versions) - {v.deploy.version}:
                    continue
                shared = self._shared_template(v, _TemplateSeen(t.text, t.kind, t.first_seen_ts))
                best[tid] = LogEvidence(template=t.text, kind=t.kind, count=int(lines),
                                        first_seen_after_s=t.first_seen_ts - v.started, shared=bool(shared),
                                        reported=False)
        return sorted(best.values(), key=lambda e: (-e.count, e.template))

    def _active_services(self, span: Sequence[WindowFacts]) -> list[int]:
        seen: set[int] = set()
        for h in span:
            k = len(h.count)
            seen.update(np.unique(self.requests.service[:k][h.count > 0]).tolist())
        return sorted(seen)

    def open_verifications(self) -> list[Verification]:
        return [v for v in self.verifications.values() if v.open]
