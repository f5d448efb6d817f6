"""Process CPU time of a file replay, by stage, for one or more source trees in alternation.

On a shared machine wall times of the same replay move by 2 x from one run to
the next; CPU time of the process moves much less, and running the trees in
turn, round after round, spreads what load remains over all of them. Each
replay runs in its own process (`python -c`, the tree first on the path), so
trees never share imports or caches.

Stages are measured without a profiler (cProfile inflates per-call overhead,
and so the stages made of many small calls, such as reading lines, several
fold): the process CPU time spent in each of the core's steps below, summed;
"rest" is the replay's total minus those.

Every run prints its records' SHA-256: a change meant to be faster only must
leave it as it was.

Run: `python benchmarks/replay_cpu.py FILE [--tree DIR ...] [--rounds N] [--json]`
(default: this tree alone, three rounds). Example, before and after a change:
`git worktree add /tmp/before main` then
`python benchmarks/replay_cpu.py quiet.jsonl --tree /tmp/before --tree .`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, module, class or None, attribute): steps that never call one another
STAGES = [
    ("decode", "detector.replay", None, "decode_batch"),
    ("windows: add", "detector.aggregate.windows", "WindowStore", "add"),
    ("windows: close", "detector.aggregate.windows", "WindowStore", "close_ready"),
    ("log templates: add", "detector.logs.templates", "LogTemplates", "add_batch"),
    ("log templates: close", "detector.logs.templates", "LogTemplates", "close_windows"),
    ("seasonal watch", "detector.baselines.watch", "SeasonalWatch", "observe"),
    ("seasonal: rollups ahead", "detector.baselines.watch", "SeasonalWatch", "prepare"),
    ("metric watch", "detector.anomaly.watch", "MetricWatch", "observe"),
    ("fleet summary", "detector.fleet.gate", "FleetGate", "summary"),
    ("fleet: totals ahead", "detector.fleet.gate", "FleetGate", "_totals_ahead"),
    ("judge: windows", "detector.judge.judge", "Judge", "on_window"),
    ("judge: deploys", "detector.judge.judge", "Judge", "on_deploy"),
]

_CHILD = r"""
import hashlib, importlib, json, sys, time
from pathlib import Path
stages = json.loads(sys.argv[2])
spent = {label: 0.0 for label, *_ in stages}
clock = time.process_time

def timed(label, fn):
    def wrapper(*args, **kwargs):
        t = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += clock() - t
    return wrapper

for label, module, cls, attr in stages:
    owner = importlib.import_module(module)
    owner = getattr(owner, cls) if cls else owner
    if hasattr(owner, attr):  # a step an older tree does not have is left out (0 s)
        setattr(owner, attr, timed(label, getattr(owner, attr)))

import detector
from detector.config import load_pipeline
from detector.records import encode
from detector.replay import replay

records = []
pipeline = load_pipeline()
t = clock()
result = replay([Path(sys.argv[1])], pipeline, records.append)
total = clock() - t
digest = hashlib.sha256()
for r in records:
    digest.update(encode(r))
print(json.dumps({"tree": str(Path(detector.__file__).parent.parent), "cpu_s": total, "stages": spent,
                  "events": result.events, "anomalies": result.anomalies, "verdicts": result.verdicts,
                  "sha256": digest.hexdigest()[:16]}))
"""


def run_once(tree: Path, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(STAGES)], cwd=tree, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(path: Path, trees: list[Path], rounds: int) -> dict:
    runs: dict[str, list[dict]] = {str(t): [] for t in trees}
    for _ in range(rounds):
        for t in trees:
            runs[str(t)].append(run_once(t, path))
    out = {"file": str(path), "rounds": rounds, "trees": []}
    for t in trees:
        rs = runs[str(t)]
        cpu = [r["cpu_s"] for r in rs]
        best = min(rs, key=lambda r: r["cpu_s"])
        stages = dict(best["stages"])
        stages["rest"] = best["cpu_s"] - sum(stages.values())
        out["trees"].append({"tree": str(t), "cpu_s": cpu, "median_cpu_s": statistics.median(cpu),
                             "events": best["events"], "events_per_cpu_s": best["events"] / best["cpu_s"],
                             "stages_of_best": stages, "anomalies": best["anomalies"], "verdicts": best["verdicts"],
                             "sha256": sorted({r["sha256"] for r in rs})})
    return out


def print_table(r: dict) -> None:
    print(f"{r['file']}: process CPU seconds, {r['rounds']} rounds, trees in alternation")
    for t in r["trees"]:
        cpu = " / ".join(f"{c:.2f}" for c in t["cpu_s"])
        print(f"\n{t['tree']}: {cpu} s (median {t['median_cpu_s']:.2f}); {t['events']:,} events, "
              f"{t['events_per_cpu_s']:,.0f} per CPU second at best; {t['anomalies']} anomalies, "
              f"{t['verdicts']} verdicts, records sha256 {', '.join(t['sha256'])}")
        best = sum(t["stages_of_best"].values())
        for label, s in sorted(t["stages_of_best"].items(), key=lambda kv: -kv[1]):
            print(f"  {label:<22} {s:7.2f} s {s / best:6.1%}")
    if len(r["trees"]) > 1:
        base = r["trees"][0]
        for t in r["trees"][1:]:
            same = "same records" if t["sha256"] == base["sha256"] else "RECORDS DIFFER"
            print(f"\n{t['tree']} vs {base['tree']}: median CPU {base['median_cpu_s'] / t['median_cpu_s']:.2f} x "
                  f"less; {same}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="JSONL events to replay")
    ap.add_argument("--tree", type=Path, action="append", help="source tree to run (repeatable; default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    r = run(args.file.resolve(), trees, args.rounds)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print_table(r)
    return r


if __name__ == "__main__":
    main()
