"""Smoke evidence: post-deploy check results, kept per service and check, judged per deploy.

A `check` event is one run of a smoke test against production (a CD
pipeline's, a synthetic prober's, or `detector run`'s own, see
`detector.smoke`). The core hands each one over when the window holding it
closes (in event-time order, so a replay sees what the live run saw); a
check that arrives after its window closed is kept at once and weighs from
the next closed window on.

For an open verification, a smoke rule (`signal = "smoke"`) holds for a
check when at least `min_effect` runs of the new version failed within
`duration_s` of the deploy's start (and at least `min_level` of its runs
there). Which runs are the new version's: those naming its version, or the
deploy's id without a version, or naming neither (a CD pipeline's check of
the service after the deploy). The failure is the deploy's only when the same
check passed where the deploy changed nothing:

- on another (the stable) version in the same period, or else
- at its last run before the deploy.

A check that also failed on the stable version in that period, or was
already failing before the deploy, is blamed elsewhere (a broken check or a
broken environment): reported, never acted on. A check with no pass to
compare with at all is reported with action `none`.

State is plain data (`to_state` / `load_state`), bounded per service and
check, and checkpointed with the core.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from scipy.stats import hypergeom

from detector.ingest.columns import CheckEvent, DeployEvent
from detector.config import Pipeline, Rule
from detector.judge.rootcause import Hint
from detector.judge.verification import Finding
from detector.logs.kinds import classify

MAX_CHECKS_PER_SERVICE = 64
MAX_RUNS_PER_CHECK = 512
MAX_MESSAGE_CHARS = 300
# A root-cause category a failing check's message suggests (the log classifier's kinds).
_MESSAGE_CATEGORY = {"config": "config", "exception": "code"}


@dataclass(frozen=True, order=True)
class Run:
    """One check result as the evidence keeps it (ordered canonically, so arrival order never matters)."""

    ts: float
    version: str  # "" when the event named none
    deploy_id: str
    instance: str
    passed: bool
    message: str
    duration_ms: float  # -1 when unknown
    url: str

    @classmethod
    def of(cls, ev: CheckEvent) -> "Run":
        return cls(ts=float(ev.ts), version=ev.version or "", deploy_id=ev.deploy_id or "",
                   instance=ev.instance or "", passed=bool(ev.passed), message=(ev.message or "")[:MAX_MESSAGE_CHARS],
                   duration_ms=-1.0 if ev.duration_ms is None else float(ev.duration_ms),
                   url=(ev.url or "")[:MAX_MESSAGE_CHARS])

    def state(self) -> list:
        return [self.ts, self.version, self.deploy_id, self.instance, self.passed, self.message,
                None if self.duration_ms < 0 else self.duration_ms, self.url]

    @classmethod
    def from_state(cls, row: list) -> "Run":
        ts, version, deploy_id, instance, passed, message, duration_ms, url = row
        if not (isinstance(ts, (int, float)) and all(isinstance(x, str) for x in (version, deploy_id, instance,
                                                                                  message, url))
                and type(passed) is bool and (duration_ms is None or isinstance(duration_ms, (int, float)))):
            raise ValueError(f"smoke run should be [ts, version, deploy_id, instance, passed, message, "
                             f"duration_ms, url], got {row!r:.120}")
        return cls(float(ts), version, deploy_id, instance, passed, message,
                   -1.0 if duration_ms is None else float(duration_ms), url)

    def describe(self) -> str:
        what = self.message or ("passed" if self.passed else "failed")
        return f"{what} ({self.url})" if self.url and self.url not in what else what


def _is_new(r: Run, deploy: DeployEvent) -> bool:
    if r.version:
        return r.version == deploy.version
    return r.deploy_id in ("", deploy.deploy_id)


@dataclass(frozen=True)
class Judged:
    """One check of one deploy over one rule's span."""

    name: str
    new: tuple[Run, ...]  # the new version's runs in the span
    stable: tuple[Run, ...]  # other versions' runs in the span
    before: Run | None  # the last run before the deploy

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.new if not r.passed]


class SmokeEvidence:
    """Check runs per service and check name, and the smoke rules judged on them."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.rules: tuple[Rule, ...] = tuple(r for r in pipeline.rules if r.signal == "smoke")
        longest = max([r.duration_s for r in self.rules], default=0.0)
        ver = pipeline.verification
        # long enough for any open verification's runs and the runs before it
        self.keep_s = ver.period_s + ver.baseline_s + longest
        self.runs: dict[str, dict[str, list[Run]]] = {}
        self.dropped = 0  # runs refused by the per-service caps

    # --- input ---

    def add(self, ev: CheckEvent) -> None:
        checks = self.runs.setdefault(ev.service, {})
        runs = checks.get(ev.name)
        if runs is None:
            if len(checks) >= MAX_CHECKS_PER_SERVICE:
                self.dropped += 1
                return
            runs = checks[ev.name] = []
        run = Run.of(ev)
        i = bisect.bisect_left(runs, run)
        if i < len(runs) and runs[i] == run:
            return  # the same result delivered twice (an at-least-once producer's retry)
        runs.insert(i, run)
        self._prune(runs)

    def _prune(self, runs: list[Run]) -> None:
        """Drop runs older than keep_s before the newest, keeping the last one before that horizon
        (it is the 'before' of a deploy that follows a long quiet spell)."""
        horizon = runs[-1].ts - self.keep_s
        k = bisect.bisect_left([r.ts for r in runs], horizon)
        if k > 1:
            del runs[:k - 1]
        if len(runs) > MAX_RUNS_PER_CHECK:
            self.dropped += len(runs) - MAX_RUNS_PER_CHECK
            del runs[:len(runs) - MAX_RUNS_PER_CHECK]

    # --- judging ---

    def judged(self, deploy: DeployEvent, started: float, end: float) -> list[Judged]:
        """Each check of the deploy's service over [started, end)."""
        out = []
        for name, runs in sorted(self.runs.get(deploy.service, {}).items()):
            span = [r for r in runs if started <= r.ts < end]
            prior = [r for r in runs if r.ts < started]
            out.append(Judged(name, tuple(r for r in span if _is_new(r, deploy)),
                              tuple(r for r in span if r.version and r.version != deploy.version),
                              prior[-1] if prior else None))
        return out

    def findings(self, deploy: DeployEvent, started: float, now: float,
                 have: Iterable[tuple]) -> list[tuple[tuple[str, str], Finding]]:
        """New findings of the smoke rules at event time `now` ((rule, check) keys not in `have`)."""
        have = set(have)
        out = []
        for rule in self.rules:
            end = min(now, started + rule.duration_s)
            for j in self.judged(deploy, started, end):
                key = (rule.name, j.name)
                failed = j.failed
                if key in have or not failed or len(failed) < rule.min_effect \
                        or len(failed) / len(j.new) < rule.min_level:
                    continue
                out.append((key, self._finding(rule, deploy, started, now, j)))
        return out

    def _finding(self, rule: Rule, deploy: DeployEvent, started: float, now: float, j: Judged) -> Finding:
        failed, new = j.failed, j.new
        stable_failed = [r for r in j.stable if not r.passed]
        shared: list[str] = []
        if stable_failed:
            versions = ", ".join(sorted({r.version for r in stable_failed}))
            shared.append(f"check '{j.name}' also failed on version {versions} in the same period "
                          f"({len(stable_failed)} of {len(j.stable)} runs: {stable_failed[0].describe()})")
        if j.before is not None and not j.before.passed:
            shared.append(f"check '{j.name}' was already failing before the deploy "
                          f"({j.before.describe()} at {j.before.ts:.0f})")
        if j.stable:
            reference, ref_failed, ref_n = "stable", len(stable_failed), len(j.stable)
        elif j.before is not None:
            reference, ref_failed, ref_n = "before", int(not j.before.passed), 1
        else:
            reference, ref_failed, ref_n = "none", 0, 0
        action = rule.action if reference != "none" or shared else "none"
        # One-sided exact test of the new version's failures against the reference's runs: reported,
        # not required (a handful of runs never reaches a traffic rule's significance).
        p = float(hypergeom.sf(len(failed) - 1, len(new) + ref_n, len(failed) + ref_failed, len(new))) \
            if ref_n else 1.0
        detail = {"check": j.name, "version": deploy.version, "failed": len(failed), "runs": len(new),
                  "first_failure": failed[0].describe(), "first_failure_ts": failed[0].ts,
                  "stable_runs": len(j.stable), "stable_failed": len(stable_failed),
                  "stable_versions": sorted({r.version for r in j.stable}),
                  "before": None if j.before is None else ("passed" if j.before.passed else "failed")}
        return Finding(rule=rule.name, signal="smoke", action=action, endpoint=-1,
                       observed=len(failed) / len(new), expected=ref_failed / ref_n if ref_n else 0.0,
                       effect=float(len(failed)), score=-math.log10(max(p, 1e-300)), n=len(new), share=1.0,
                       window_start=started, window_end=now, reference=reference, dry_run=rule.dry_run,
                       shared=tuple(shared), detail=detail)

    # --- words ---

    @staticmethod
    def reason(f: Finding, rule: Rule) -> str:
        d = f.detail
        what = (f"smoke check '{d['check']}' failed {d['failed']} of {d['runs']} runs on version {d['version']} "
                f"within {rule.duration_s:g} s of the deploy (first: {d['first_failure']})")
        if f.reference == "stable":
            ref = (f"on the stable version {', '.join(d['stable_versions'])} it failed {d['stable_failed']} of "
                   f"{d['stable_runs']} runs in the same period")
        elif f.reference == "before":
            ref = f"its last run before the deploy {d['before']}"
        else:
            return (f"{what}; no run of this check passed before the deploy or on another version, so nothing "
                    f"shows the deploy broke it: not acted on")
        return (f"{what}; {ref}; rule '{f.rule}' needs {rule.min_effect:g} failed runs within "
                f"{rule.duration_s:g} s -> {f.action}")

    def evidence(self, deploy: DeployEvent, started: float, now: float) -> tuple[str, ...]:
        """One line per check run since the deploy: how the new and the other versions fared."""
        out = []
        for j in self.judged(deploy, started, now + 1e-9)[:5]:
            if not j.new and not j.stable:
                continue
            line = f"smoke check '{j.name}': {len(j.failed)} of {len(j.new)} runs failed on {deploy.version}"
            if j.failed:
                line += f" ({j.failed[0].describe()})"
            if j.stable:
                versions = ", ".join(sorted({r.version for r in j.stable}))
                line += f"; {sum(not r.passed for r in j.stable)} of {len(j.stable)} failed on {versions}"
            out.append(line)
        return tuple(out)

    @staticmethod
    def refine(h: Hint, acted: Sequence[Finding]) -> Hint:
        """An `unknown` root cause made specific by what the deploy's failing checks said."""
        smoke = [f for f in acted if f.signal == "smoke"]
        if h.category != "unknown" or not smoke:
            return h
        for f in smoke:
            category = _MESSAGE_CATEGORY.get(classify(f.detail.get("first_failure", "")))
            if category:
                return Hint(category, (f"smoke check '{f.detail['check']}' failed with: "
                                       f"{f.detail['first_failure']}", *h.evidence))
        return h

    # --- state ---

    def to_state(self) -> dict:
        return {"runs": [[svc, [[name, [r.state() for r in runs]] for name, runs in sorted(checks.items())]]
                         for svc, checks in sorted(self.runs.items())],
                "dropped": self.dropped}

    def load_state(self, saved: dict) -> None:
        runs: dict[str, dict[str, list[Run]]] = {}
        for svc, checks in saved["runs"]:
            if not isinstance(svc, str):
                raise ValueError(f"smoke service should be a string, got {svc!r:.80}")
            runs[svc] = {}
            for name, rows in checks:
                if not isinstance(name, str) or not isinstance(rows, list):
                    raise ValueError(f"smoke check of {svc!r} should be [name, runs], got {name!r:.80}")
                runs[svc][name] = sorted(Run.from_state(row) for row in rows)
        if type(saved["dropped"]) is not int:
            raise ValueError(f"smoke dropped count should be an int, got {saved['dropped']!r:.80}")
        self.runs, self.dropped = runs, saved["dropped"]
