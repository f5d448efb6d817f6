"""Ground truth: what a scenario injected, written beside the events.

For every deploy it records when the new version got traffic, which faults
were injected (kind, onset, endpoints, parameters), which benign
disturbances overlapped its verification, and the verdict and root-cause
category the scenario expects. Judge tests and benchmarks score the
detector's verdicts against this file; it is built from the scenario and the
timeline alone, so it holds exactly what the generator was told to do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from detector.simulate.spec import PodRestartBlip, Scenario
from detector.simulate.timeline import Timeline

TRUTH_SUFFIX = ".truth.json"


def truth_path_for(events_path: str | Path) -> Path:
    """`events.jsonl` -> `events.truth.json` (same folder)."""
    p = Path(events_path)
    return p.with_name(p.name[: -len(p.suffix)] + TRUTH_SUFFIX if p.suffix else p.name + TRUTH_SUFFIX)


def _abs(scenario: Scenario, rel_s: float | None) -> float | None:
    if rel_s is None or math.isinf(rel_s):
        return None
    return round(scenario.start_ts + rel_s, 3)


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and math.isinf(v) else list(v) if isinstance(v, tuple) else v)
        for k, v in params.items()
    }


def build_truth(scenario: Scenario, timeline: Timeline, counts: dict[str, int] | None = None) -> dict[str, Any]:
    sc = scenario
    end_s = sc.duration_s
    deploys = []
    for rec in sorted(timeline.records, key=lambda r: r.deploy.at_s):
        d = rec.deploy
        svc = sc.service(d.service)
        rollout_end = rec.finished_s if rec.finished_s is not None else d.at_s
        window_end = min(rollout_end + sc.verification_s, end_s)
        if rec.next_deploy_s is not None:
            window_end = min(window_end, rec.next_deploy_s)
        faults, benign = [], []
        for f in d.faults:
            onset = d.at_s + f.onset_s
            item = {
                "kind": f.kind,
                "onset_ts": _abs(sc, onset),
                "end_ts": _abs(sc, onset + f.duration_s),
                "endpoints": list(f.endpoints or svc.endpoint_names()),
                "all_endpoints": not f.endpoints,
                "params": _clean(f.params()),
            }
            if isinstance(f, PodRestartBlip):
                benign.append(item)
            elif onset < end_s:
                faults.append(item)
        for dist in sc.disturbances:
            if d.service in dist.services and dist.start_s < window_end and dist.end_s > d.at_s:
                benign.append(
                    {
                        "kind": dist.kind,
                        "start_ts": _abs(sc, dist.start_s),
                        "end_ts": _abs(sc, dist.end_s),
                        "services": list(dist.services),
                        "endpoints": list(getattr(dist, "endpoints", ())),
                        "params": _clean(dist.params()),
                    }
                )
        deploys.append(
            {
                "deploy_id": d.deploy_id,
                "service": d.service,
                "version": d.version,
                "previous_version": rec.previous_version,
                "strategy": d.strategy,
                "canary_weight": d.canary_weight,
                "rollout_s": d.rollout_s if d.strategy == "rolling" else None,
                "change_kind": d.change_kind,
                "commit": d.commit,
                "author": d.author,
                "started_ts": _abs(sc, d.at_s),
                "finished_ts": _abs(sc, rec.finished_s),
                "superseded_ts": _abs(sc, rec.superseded_s),
                "next_deploy_ts": _abs(sc, rec.next_deploy_s),
                "verification_end_ts": _abs(sc, window_end),
                "faults": faults,
                "fault_kinds": sorted({f["kind"] for f in faults}),
                "benign": benign,
                "expect": d.expect,
                "expect_root_cause": d.expect_root_cause,
            }
        )
    return {
        "scenario": sc.name,
        "source": Path(sc.source).name,
        "seed": sc.seed,
        "start_ts": sc.start_ts,
        "end_ts": sc.end_ts,
        "duration_s": sc.duration_s,
        "out_of_order_s": sc.out_of_order_s,
        "verification_s": sc.verification_s,
        "metric_interval_s": sc.metric_interval_s,
        "services": [
            {
                "name": s.name,
                "initial_version": s.version,
                "instances": s.instances,
                "db": s.db,
                "endpoints": [
                    {
                        "name": e.name,
                        "rps": e.rps,
                        "error_rate": e.error_rate,
                        "latency_median_ms": e.latency_median_ms,
                        "latency_p99_ms": e.latency_p99_ms,
                        "critical": e.critical,
                        "txn": e.txn,
                    }
                    for e in s.endpoints
                ],
            }
            for s in sc.services
        ],
        "deploys": deploys,
        "disturbances": [
            {
                "kind": dist.kind,
                "start_ts": _abs(sc, dist.start_s),
                "end_ts": _abs(sc, dist.end_s),
                "services": list(dist.services),
                "endpoints": list(getattr(dist, "endpoints", ())),
                "params": _clean(dist.params()),
            }
            for dist in sc.disturbances
            if dist.start_s < end_s
        ],
        "counts": counts,
    }


def write_truth(path: str | Path, truth: dict[str, Any]) -> Path:
    p = Path(path)
    p.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    return p
