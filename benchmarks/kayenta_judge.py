"""A Kayenta-style canary judge, as a second reference for the detector.

Like Netflix/Spinnaker's automated canary analysis: for each deploy, a few
service metrics are sampled per interval for the new version and a baseline
(the previous version over the same intervals when it still serves traffic,
else the service over the same length of time before the deploy), each
metric is classified with a Mann-Whitney U test plus an effect-size margin,
and the share of metrics that pass is the score: below 50 fail (rollback),
below 75 marginal (ticket), else pass (confirmed). Root cause is never
given.

    python benchmarks/kayenta_judge.py EVENTS.jsonl [--analysis-s 900] [--interval-s 30]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
import orjson
from scipy.stats import mannwhitneyu

METRICS = ("error_rate", "latency_p95", "txn_per_request")
WORSE = {"error_rate": 1, "latency_p95": 1, "txn_per_request": -1}
ALPHA = 0.05
MARGIN = 0.2  # a metric fails only when its median also moved by more than 20 %


def _series(reqs, lo: float, hi: float, interval: float) -> dict[str, list[float]]:
    """Per interval in [lo, hi): the metrics of the requests given (ts, status, latency, txn)."""
    buckets: dict[int, list] = defaultdict(list)
    for r in reqs:
        if lo <= r[0] < hi:
            buckets[int((r[0] - lo) // interval)].append(r)
    out = {m: [] for m in METRICS}
    for _k, rs in sorted(buckets.items()):
        if len(rs) < 1:
            continue
        out["error_rate"].append(sum(r[1] >= 500 for r in rs) / len(rs))
        out["latency_p95"].append(float(np.percentile([r[2] for r in rs], 95)))
        out["txn_per_request"].append(sum(r[3] for r in rs) / len(rs))
    return out


def _classify(metric: str, new: list[float], base: list[float]) -> bool:
    """True when the metric passes."""
    if len(new) < 3 or len(base) < 3:
        return True  # too little data: Kayenta reports NODATA, which does not fail the canary
    direction = WORSE[metric]
    alt = "greater" if direction > 0 else "less"
    p = mannwhitneyu(new, base, alternative=alt).pvalue
    mn, mb = float(np.median(new)), float(np.median(base))
    moved = (mn > mb * (1 + MARGIN) + 1e-9) if direction > 0 else (mn < mb * (1 - MARGIN) - 1e-9)
    return not (p < ALPHA and moved)


def judge(path: str, analysis_s: float = 900.0, interval_s: float = 30.0) -> list[dict]:
    deploys = []
    reqs: dict[str, list] = defaultdict(list)  # service -> (ts, status, latency, txn, version)
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            ev = orjson.loads(line)
            t = ev.get("type")
            if t == "request":
                reqs[ev["service"]].append((float(ev["ts"]), int(ev["status"]), float(ev["latency_ms"]),
                                            1 if ev.get("txn") else 0, ev.get("version")))
            elif t == "deploy" and ev.get("phase", "started") == "started":
                deploys.append(ev)
    out = []
    for d in deploys:
        svc, t0 = d["service"], float(d["ts"])
        later = [float(x["ts"]) for x in deploys if x["service"] == svc and float(x["ts"]) > t0]
        t1 = min([t0 + analysis_s] + later)
        rs = reqs.get(svc, [])
        new = [r for r in rs if r[4] == d["version"]]
        stable = [r for r in rs if r[4] != d["version"] and t0 <= r[0] < t1]
        new_in = [r for r in new if t0 <= r[0] < t1]
        if len(stable) >= 0.05 * max(len(new_in), 1) and stable:
            base = _series(stable, t0, t1, interval_s)
        else:
            base = _series([r for r in rs if t0 - (t1 - t0) <= r[0] < t0], t0 - (t1 - t0), t0, interval_s)
        cur = _series(new_in, t0, t1, interval_s)
        passed = sum(_classify(m, cur[m], base[m]) for m in METRICS)
        score = 100.0 * passed / len(METRICS)
        decision = "rollback" if score < 50 else "ticket" if score < 75 else "confirmed"
        out.append({"type": "verdict", "deploy_id": d["deploy_id"], "service": svc, "decision": decision,
                    "ts": t1, "root_cause": {"category": "unknown", "evidence": []},
                    "reasons": [f"canary score {score:.0f}"]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events")
    ap.add_argument("--analysis-s", type=float, default=900.0)
    ap.add_argument("--interval-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    for v in judge(args.events, args.analysis_s, args.interval_s):
        sys.stdout.buffer.write(orjson.dumps(v) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
