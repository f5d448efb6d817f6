"""Process CPU of the status page's window rows (`report.summaries.Recorder`), for one or more
source trees in alternation.

The rows are what `detector report` and the live status page draw from: each
partition's core hands every closed window to a `Recorder`, which reduces it to
rows (requests, errors, transactions and latency p50/p95/p99 per service and
version, the seasonal expectations per service, new templates' lines). This
runs the report's single pass (`report.build.summarise`: the replay's core with
a recorder attached) over a file and measures, in process CPU seconds:

* recorder: `Recorder.observe`, all of the recorder's per-window work;
* seasonal watch: `SeasonalWatch.observe` (a tree may hand the recorder what it
  computes there, so its cost is shown next to the recorder's);
* pass: the whole `summarise` call.

Every run prints a SHA-256 of every row and column the recorder kept (and the
template notes): trees that should give the same rows must print the same digest.
Each run is its own process (`python -c`, the tree first on the path); trees
run in turn, round after round, so load from elsewhere hits them alike.

Run: `python benchmarks/bench_rows.py [--only demo|quiet] [--tree DIR ...] [--rounds N] [--json]`
(default: this tree, three rounds, demo 1,200 s of event time and 8 h of quiet history).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import demo_file, machine  # noqa: E402
from quiet import quiet_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import hashlib, json, sys, time
from pathlib import Path
clock = time.process_time
spent = {"recorder": 0.0, "seasonal watch": 0.0}

def timed(label, fn):
    def wrapper(*args, **kwargs):
        t = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += clock() - t
    return wrapper

import detector
from detector.baselines.watch import SeasonalWatch
from detector.config import load_pipeline
from detector.report import summaries as S
from detector.report.build import summarise

S.Recorder.observe = timed("recorder", S.Recorder.observe)
SeasonalWatch.observe = timed("seasonal watch", SeasonalWatch.observe)
pipeline = load_pipeline()
t = clock()
h = summarise(Path(sys.argv[1]), pipeline)
total = clock() - t
s = h.summaries
digest = hashlib.sha256()
for cols in (s.columns(), s.seasonal_columns()):
    for name in sorted(cols):
        digest.update(name.encode())
        digest.update(str(cols[name].dtype).encode())
        digest.update(cols[name].tobytes())
digest.update(json.dumps([s.names, s.tpl_rows, s.first_start, s.last_end]).encode())
digest.update(json.dumps(sorted((k, vars(v)) for k, v in s.templates.items())).encode())
print(json.dumps({"tree": str(Path(detector.__file__).parent.parent), "pass_s": total, **spent,
                  "rows": int(len(s.columns()["start"])), "seasonal_rows": int(len(s.seasonal_columns()["start"])),
                  "sha256": digest.hexdigest()[:16]}))
"""

_MEASURES = ("recorder", "seasonal watch", "pass_s")


def run_once(tree: Path, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(workloads: dict[str, Path], trees: list[Path], rounds: int) -> dict:
    out: dict = {"machine": machine(), "rounds": rounds, "workloads": []}
    for name, path in workloads.items():
        runs: dict[str, list[dict]] = {str(t): [] for t in trees}
        for _ in range(rounds):
            for t in trees:
                runs[str(t)].append(run_once(t, path))
        w = {"workload": name, "trees": []}
        for t in trees:
            rs = runs[str(t)]
            w["trees"].append({"tree": str(t), **{m: [r[m] for r in rs] for m in _MEASURES},
                               **{f"median {m}": statistics.median(r[m] for r in rs) for m in _MEASURES},
                               "rows": rs[0]["rows"], "seasonal_rows": rs[0]["seasonal_rows"],
                               "sha256": sorted({r["sha256"] for r in rs})})
        out["workloads"].append(w)
    return out


def print_table(r: dict) -> None:
    print(f"window rows: process CPU seconds, {r['rounds']} rounds, trees in alternation ({r['machine']})")
    for w in r["workloads"]:
        print(f"  {w['workload']}:")
        for t in w["trees"]:
            runs = "  ".join(f"{m} " + "/".join(f"{x:.3f}" for x in t[m]) for m in _MEASURES)
            print(f"    {t['tree']}: median recorder {t['median recorder']:.3f} s, seasonal watch "
                  f"{t['median seasonal watch']:.3f} s, pass {t['median pass_s']:.2f} s; {t['rows']:,} rows, "
                  f"{t['seasonal_rows']:,} seasonal rows, rows sha256 {','.join(t['sha256'])}")
            print(f"      runs: {runs}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", type=Path, help="source tree to measure (repeatable; default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("demo", "quiet"))
    ap.add_argument("--duration-s", type=float, default=1200.0, help="seconds of demo event time")
    ap.add_argument("--quiet-hours", type=float, default=8.0, help="hours of quiet history")
    ap.add_argument("--demo-file", type=Path, help="an existing demo file (else one is simulated)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as tmp:
        workloads: dict[str, Path] = {}
        if args.only in (None, "demo"):
            workloads["demo"] = args.demo_file or demo_file(Path(tmp) / "demo.jsonl", args.duration_s)
        if args.only in (None, "quiet"):
            workloads["quiet"] = quiet_file(args.quiet_hours)
        r = run(workloads, trees, args.rounds)
    print(json.dumps(r, indent=1) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        print_table(r)
    return r


if __name__ == "__main__":
    main()
