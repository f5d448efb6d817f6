"""Score detector output against the ground truth of simulated (or labelled) deploys.

Used to tune thresholds on history: which deploys were caught, which benign
ones were wrongly alarmed, how long a problem took to reach its verdict, and
which rules fired on real incidents versus on benign deploys.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import orjson

ALARMS = ("rollback", "page", "ticket")


@dataclass
class DeployResult:
    deploy_id: str
    service: str
    expected: str | None
    got: str | None
    expected_root_cause: str | None
    got_root_cause: str | None
    onset_ts: float | None
    verdict_ts: float | None
    rules: tuple[str, ...] = ()

    @property
    def bad(self) -> bool:
        return self.expected in ALARMS

    @property
    def caught(self) -> bool:
        return self.bad and self.got in ALARMS

    @property
    def false_alarm(self) -> bool:
        return self.expected is not None and not self.bad and self.got in ALARMS

    @property
    def matches(self) -> bool:
        return self.expected is not None and self.got == self.expected

    @property
    def root_cause_matches(self) -> bool | None:
        if not self.expected_root_cause:
            return None
        return self.got_root_cause == self.expected_root_cause

    @property
    def time_to_verdict_s(self) -> float | None:
        if self.onset_ts is None or self.verdict_ts is None:
            return None
        return max(0.0, self.verdict_ts - self.onset_ts)


@dataclass
class Summary:
    results: list[DeployResult] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return sum(r.bad for r in self.results)

    @property
    def caught(self) -> int:
        return sum(r.caught for r in self.results)

    @property
    def benign(self) -> int:
        return sum(r.expected is not None and not r.bad for r in self.results)

    @property
    def false_alarms(self) -> int:
        return sum(r.false_alarm for r in self.results)

    @property
    def matching(self) -> int:
        return sum(r.matches for r in self.results)

    @property
    def root_causes(self) -> tuple[int, int]:
        judged = [r.root_cause_matches for r in self.results if r.root_cause_matches is not None]
        return sum(judged), len(judged)

    @property
    def median_time_to_verdict_s(self) -> float | None:
        times = [r.time_to_verdict_s for r in self.results if r.caught and r.time_to_verdict_s is not None]
        return statistics.median(times) if times else None

    def rule_outcomes(self) -> dict[str, dict[str, int]]:
        """Per rule: how often it fired on bad deploys and on benign ones."""
        out: dict[str, dict[str, int]] = {}
        for r in self.results:
            for rule in r.rules:
                row = out.setdefault(rule, {"bad": 0, "benign": 0})
                row["bad" if r.bad else "benign"] += 1
        return out


def _onset(deploy: dict) -> float:
    onsets = [f["onset_ts"] for f in deploy.get("faults", []) if f.get("onset_ts") is not None]
    return min(onsets) if onsets else deploy["started_ts"]


def score(truth: dict, records: Iterable[dict]) -> Summary:
    verdicts: dict[str, dict] = {}
    completed: dict[str, dict] = {}  # deploy id -> the latest root_cause record completing its verdict
    rules: dict[str, set[str]] = {}
    for rec in records:
        if rec.get("type") == "verdict":
            verdicts.setdefault(rec["deploy_id"], rec)
        elif rec.get("type") == "root_cause":
            completed[rec["deploy_id"]] = rec
        elif rec.get("type") == "anomaly":
            dep = rec.get("deploy_id") or rec.get("detail", {}).get("suspected_deploy_id")
            rule = rec.get("detail", {}).get("rule")
            if dep and rule:
                rules.setdefault(dep, set()).add(rule)
    summary = Summary()
    for d in truth.get("deploys", []):
        v = verdicts.get(d["deploy_id"])
        summary.results.append(DeployResult(
            deploy_id=d["deploy_id"], service=d["service"], expected=d.get("expect"),
            got=v["decision"] if v else None, expected_root_cause=d.get("expect_root_cause"),
            got_root_cause=(completed.get(d["deploy_id"]) or v)["root_cause"]["category"] if v else None,
            onset_ts=_onset(d), verdict_ts=v["ts"] if v else None,
            rules=tuple(sorted(rules.get(d["deploy_id"], ())))))
    return summary


def load_records(path: str | Path) -> list[dict]:
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def table(rows: list[tuple[str, Summary]]) -> str:
    """Markdown table: one row per detector (or scenario set)."""
    lines = ["| detector | bad deploys caught | benign wrongly alarmed | decision as expected | root cause right "
             "| median time to verdict |", "|---|---|---|---|---|---|"]
    for name, s in rows:
        rc_ok, rc_n = s.root_causes
        ttv = s.median_time_to_verdict_s
        lines.append(f"| {name} | {s.caught}/{s.bad} | {s.false_alarms}/{s.benign} | "
                     f"{s.matching}/{len(s.results)} | {rc_ok}/{rc_n} | "
                     f"{'-' if ttv is None else f'{ttv:.0f} s'} |")
    return "\n".join(lines)


def pipeline_for(truth: dict, pipeline=None):
    """The pipeline with the verification period the scenario was written for."""
    import dataclasses

    from detector.config import load_pipeline

    p = pipeline or load_pipeline()
    period = truth.get("verification_s")
    if period:
        p = dataclasses.replace(p, verification=dataclasses.replace(p.verification, period_s=float(period)))
    return p


def replay_scenario(scenario: str | Path, workdir: str | Path, pipeline=None, rate_scale: float | None = None,
                    seed: int | None = None) -> tuple[dict, list[dict], Path]:
    """Simulate a scenario into `workdir`, replay it, return (truth, records, events file)."""
    from detector.records import encode
    from detector.replay import replay
    from detector.simulate.main import resolve_scenario
    from detector.simulate.output import simulate_to_file
    from detector.simulate.scenario import load_scenario

    sc = load_scenario(resolve_scenario(str(scenario)), rate_scale=rate_scale, seed=seed)
    tag = f"{sc.name}-x{rate_scale}" if rate_scale else sc.name
    events = Path(workdir) / f"{tag}.jsonl"
    truth = simulate_to_file(sc, events)
    records: list[dict] = []
    replay([events], pipeline_for(truth, pipeline), lambda r: records.append(orjson.loads(encode(r))))
    return truth, records, events
