"""Robustness sweep of the judge: many randomised deploys it was not written for.

Each trial (benchmarks/sweep_world.py, independent of the rules and of the
scenario files) is one deploy with or without a fault, with benign
disturbances, written as contract JSONL and replayed through the detector
with the pipeline given (the shipped default unless --pipeline). Two
baselines run on the same events: the threshold script
(benchmarks/threshold_rollback.sh: error rate over the first 5 minutes above
5 % -> rollback) and a Kayenta-style Mann-Whitney judge
(benchmarks/kayenta_judge.py).

Reports: detection rate against effect size and the new version's traffic on
what the fault touches (a power curve), realised false alarms (page or
rollback) per benign deploy, tickets on benign deploys, root cause right on
the labelled deploys, and time from fault onset to verdict.

    python benchmarks/judge_sweep.py --quick        # 40 deploys, a few minutes
    python benchmarks/judge_sweep.py                # 200 deploys
    python benchmarks/judge_sweep.py --trials 500 --seed 7 --json out/sweep.json
    python benchmarks/judge_sweep.py --pool out/a.json out/b.json   # one report over saved runs
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from detector.config import load_pipeline  # noqa: E402
from detector.replay import replay  # noqa: E402
from kayenta_judge import judge as kayenta  # noqa: E402
from sweep_world import PERIOD_S, events, make_trial  # noqa: E402

ALARM = ("rollback", "page", "ticket")
URGENT = ("rollback", "page")
TIERS = {
    "errors": ([1.0, 3.0, 10.0], "points", ["< +1", "+1-3", "+3-10", ">= +10"]),
    "latency": ([1.4, 2.0, 3.0], "x", ["< x1.4", "x1.4-2", "x2-3", ">= x3"]),
    "transactions": ([0.2, 0.4, 0.7], "drop", ["< 20 %", "20-40 %", "40-70 %", ">= 70 %"]),
}
TRAFFIC = ([0.5, 5.0], ["< 0.5 req/s", "0.5-5 req/s", ">= 5 req/s"])


def _bin(x: float, edges: list[float]) -> int:
    return sum(x >= e for e in edges)


def run_trial(index: int, seed: int, pipeline, work: Path) -> dict:
    trial = make_trial(index, seed)
    path = work / f"trial-{index}.jsonl"
    n = 0
    with open(path, "wb") as fh:
        for line in events(trial):
            fh.write(line + b"\n")
            n += 1
    verdicts: list[dict] = []
    completed: dict[str, dict] = {}  # deploy id -> its verdict's root cause, completed after the verdict
    escalated: dict[str, dict] = {}  # deploy id -> the anomaly escalating its early ticket

    def keep(rec) -> None:
        d = rec.to_dict()
        if d["type"] == "verdict":
            verdicts.append(d)
        elif d["type"] == "root_cause":
            completed[d["deploy_id"]] = d["root_cause"]
        elif d["type"] == "anomaly" and "escalates" in d["detail"]:
            escalated[d["deploy_id"]] = d

    t = time.perf_counter()
    replay([path], pipeline, keep)
    seconds = time.perf_counter() - t
    script = subprocess.run(["bash", str(ROOT / "benchmarks" / "threshold_rollback.sh"), str(path)],
                            capture_output=True, check=True).stdout
    kay = next((v for v in kayenta(str(path), analysis_s=PERIOD_S) if v["deploy_id"] == trial.deploy_id), None)
    path.unlink()
    base = [orjson.loads(x) for x in script.splitlines() if x.strip()]
    mine = next((v for v in verdicts if v["deploy_id"] == trial.deploy_id), None)
    theirs = next((v for v in base if v["deploy_id"] == trial.deploy_id), None)
    truth = trial.truth()
    return {**truth, "events": n, "replay_s": seconds,
            "decision": mine["decision"] if mine else None,
            "root_cause": completed.get(trial.deploy_id, mine["root_cause"])["category"] if mine else None,
            "root_cause_completed": trial.deploy_id in completed,
            "verdict_ts": mine["ts"] if mine else None,
            "escalation": escalated[trial.deploy_id]["detail"]["action"] if trial.deploy_id in escalated else None,
            "escalation_ts": escalated[trial.deploy_id]["ts"] if trial.deploy_id in escalated else None,
            "reasons": mine["reasons"] if mine else [],
            "script_decision": theirs["decision"] if theirs else None,
            "script_ts": theirs["ts"] if theirs else None,
            "kayenta_decision": kay["decision"] if kay else None,
            "kayenta_ts": kay["ts"] if kay else None}


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f} s" if xs else "-"


def _urgent(r: dict, decision: str) -> bool:
    """Paged or rolled back: by the verdict, or (the detector's) by an escalation of an early ticket."""
    return r[decision] in URGENT or (decision == "decision" and r.get("escalation") in URGENT)


def summarise(rows: list[dict], decision: str, ts: str, root: str | None) -> dict:
    bad = [r for r in rows if r["bad"]]
    benign = [r for r in rows if not r["bad"]]
    caught = [r for r in bad if r[decision] in ALARM]
    labelled = [r for r in bad if r["expected_root_cause"]]
    return {
        "caught": f"{len(caught)}/{len(bad)}",
        "false_alarms": f"{sum(_urgent(r, decision) for r in benign)}/{len(benign)}",
        "benign_tickets": f"{sum(r[decision] == 'ticket' for r in benign)}/{len(benign)}",
        "root_cause": (f"{sum(r[root] == r['expected_root_cause'] for r in labelled)}/{len(labelled)}"
                       if root else "-"),
        "ttv": _median([r[ts] - r["onset_ts"] for r in caught if r[ts] is not None]),
        "ttv_urgent": _median([r[ts] - r["onset_ts"] for r in caught if r[decision] in URGENT]),
    }


def report(rows: list[dict]) -> str:
    out = []
    mine = summarise(rows, "decision", "verdict_ts", "root_cause")
    base = summarise(rows, "script_decision", "script_ts", None)
    kay = summarise(rows, "kayenta_decision", "kayenta_ts", None)
    out.append("| judge | bad deploys caught | benign: page/rollback | benign: ticket | root cause right "
               "| median onset -> verdict (caught) | ... rollback/page only |")
    out.append("|---|---|---|---|---|---|---|")
    for name, s in (("detector", mine), ("threshold script (5 % in the first 5 min)", base),
                    ("Kayenta-style Mann-Whitney judge", kay)):
        out.append(f"| {name} | {s['caught']} | {s['false_alarms']} | {s['benign_tickets']} | {s['root_cause']} "
                   f"| {s['ttv']} | {s['ttv_urgent']} |")
    out.append("")
    out.append("Detection rate of bad deploys by effect size (rows) and the new version's traffic on what "
               "the fault touches (columns), detector (threshold script, Kayenta-style):")
    out.append("")
    out.append("| fault | effect | " + " | ".join(TRAFFIC[1]) + " |")
    out.append("|---|---|" + "---|" * len(TRAFFIC[1]))
    for kind, (edges, _unit, labels) in TIERS.items():
        cells: dict[tuple[int, int], list[dict]] = defaultdict(list)
        for r in rows:
            if r["bad"] and r["fault"]["kind"] == kind:
                cells[(_bin(r["fault"]["size"], edges), _bin(r["affected_rate"], TRAFFIC[0]))].append(r)
        for t, label in enumerate(labels):
            row = []
            for c in range(len(TRAFFIC[1])):
                rs = cells.get((t, c), [])
                row.append(f"{sum(r['decision'] in ALARM for r in rs)}/{len(rs)} "
                           f"({sum(r['script_decision'] in ALARM for r in rs)}, "
                           f"{sum(r['kayenta_decision'] in ALARM for r in rs)})" if rs else "-")
            out.append(f"| {kind} | {label} | " + " | ".join(row) + " |")
    out.append("")
    out.append("Benign deploys by disturbance (page or rollback / deploys):")
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if not r["bad"]:
            for d in r["disturbances"]:
                by[d["kind"]].append(r)
    out.append(", ".join(f"{k} {sum(_urgent(r, 'decision') for r in v)}/{len(v)}" for k, v in sorted(by.items())))
    esc = [r for r in rows if r.get("escalation")]
    out.append("")
    out.append(f"Early tickets escalated by a page or rollback rule later in the period: {len(esc)} "
               f"({sum(r['bad'] for r in esc)} on bad deploys, {sum(not r['bad'] for r in esc)} on benign; "
               "benign ones count above as paged)")
    for r in esc:
        kind = "bad" if r["bad"] else "benign"
        out.append(f"  {r['deploy_id']} {kind}: ticket at +{r['verdict_ts'] - r['onset_ts']:.0f} s, "
                   f"{r['escalation']} at +{r['escalation_ts'] - r['onset_ts']:.0f} s")
    wrong = [r for r in rows if (r["bad"] and r["decision"] not in ALARM) or (not r["bad"] and _urgent(r, "decision"))]
    out.append("")
    out.append(f"Missed or false alarms ({len(wrong)}):")
    for r in wrong[:40]:
        f = r["fault"]
        what = f"{f['kind']} {f['scope']} size {f['size']:.3g}" if f else "benign " + "+".join(
            d["kind"] for d in r["disturbances"])
        out.append(f"  {r['deploy_id']} {r['strategy']} w={r['canary_weight']:.2f} rollout={r['rollout_s']:.0f}s "
                   f"{what} affected {r['affected_rate']:.2f} req/s -> {r['decision']}: "
                   f"{(r['reasons'] or [''])[0][:160]}")
        # what the verdict could not exclude on its least-covered endpoint
        out.extend(f"    {x[:220]}" for x in r["reasons"][1:2] if x.startswith("on endpoint"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 deploys (a few minutes)")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--pipeline", help="pipeline file (default: the shipped one)")
    ap.add_argument("--json", help="write every trial's row here")
    ap.add_argument("--pool", nargs="+", metavar="JSON",
                    help="run nothing: one report over the rows of these --json files (several seeds pooled)")
    args = ap.parse_args(argv)
    if args.pool:
        rows = [r for f in args.pool for r in orjson.loads(Path(f).read_bytes())]
        print(f"{len(rows)} deploys pooled from {len(args.pool)} runs")
        print()
        print(report(rows))
        return 0
    trials = 40 if args.quick else args.trials
    if trials < 1:
        ap.error(f"--trials must be >= 1 (got {trials})")
    pipeline = load_pipeline(args.pipeline)
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(trials):
            rows.append(run_trial(i, args.seed, pipeline, Path(tmp)))
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{i + 1}/{trials} deploys, {time.perf_counter() - t0:.0f} s")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    events_n = sum(r["events"] for r in rows)
    print(f"{trials} deploys (seed {args.seed}), {events_n:,} events, {time.perf_counter() - t0:.0f} s; "
          f"pipeline {pipeline.source}")
    print()
    print(report(rows))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
