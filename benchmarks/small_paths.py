"""CPU of a replay with the plain-Python paths for small inputs on and off, in one process.

A quiet partition closes windows of a few dozen events; there numpy's per-call
overhead costs more than the arithmetic, and three steps have a plain-Python
path below a size (each held to its array path by tests, exactly):

- the split of a window's log lines by service (`logs.templates._SMALL_LINES`),
- the log registry's fold of a window's lines (`logs.registry._SMALL_BATCH`),
- distinct codes and counts at window close and in the log template counts
  (`aggregate.grouping.SMALL_CODES`).

Setting the three sizes to 0 gives the array paths, in the same process and
source tree, so the two settings differ in nothing else. Each round replays
the file with both settings (the order alternating from round to round), as
process CPU seconds (`time.process_time`), with the CPU of the stages that
hold those paths, and the SHA-256 of the records, which must be the same.

Run: `python benchmarks/small_paths.py FILE [--rounds N] [--json]`
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import detector.aggregate.grouping as grouping  # noqa: E402
import detector.logs.registry as registry  # noqa: E402
import detector.logs.templates as templates  # noqa: E402
from detector.aggregate.windows import WindowStore  # noqa: E402
from detector.baselines.watch import SeasonalWatch  # noqa: E402
from detector.config import load_pipeline  # noqa: E402
from detector.logs.templates import LogTemplates  # noqa: E402
from detector.records import encode  # noqa: E402
from detector.replay import replay  # noqa: E402

SIZES = {"on": (templates._SMALL_LINES, registry._SMALL_BATCH, grouping.SMALL_CODES), "off": (0, 0, 0)}
STAGES = [("seasonal watch", SeasonalWatch, "observe"), ("log templates: close", LogTemplates, "close_windows"),
          ("windows: close", WindowStore, "close_ready")]
spent: dict[str, float] = {label: 0.0 for label, *_ in STAGES}


def _timed(label, fn):
    def wrapper(*args, **kwargs):
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - t
    return wrapper


for _label, _owner, _attr in STAGES:
    setattr(_owner, _attr, _timed(_label, getattr(_owner, _attr)))


def run_once(path: Path, setting: str) -> dict:
    templates._SMALL_LINES, registry._SMALL_BATCH, grouping.SMALL_CODES = SIZES[setting]
    for label in spent:
        spent[label] = 0.0
    records = []
    gc.collect()
    t = time.process_time()
    result = replay([path], load_pipeline(), records.append)
    cpu = time.process_time() - t
    digest = hashlib.sha256()
    for r in records:
        digest.update(encode(r))
    return {"cpu_s": cpu, "stages": dict(spent), "events": result.events, "sha256": digest.hexdigest()[:16]}


def run(path: Path, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for i in range(rounds):
        for setting in (("off", "on") if i % 2 == 0 else ("on", "off")):
            runs[setting].append(run_once(path, setting))
    templates._SMALL_LINES, registry._SMALL_BATCH, grouping.SMALL_CODES = SIZES["on"]
    out = {"file": str(path), "rounds": rounds, "settings": {}}
    for setting, rs in runs.items():
        out["settings"][setting] = {
            "cpu_s": [r["cpu_s"] for r in rs], "median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "median_stages": {label: statistics.median(r["stages"][label] for r in rs) for label in spent},
            "sha256": sorted({r["sha256"] for r in rs})}
    out["same_records"] = out["settings"]["off"]["sha256"] == out["settings"]["on"]["sha256"] \
        and len(out["settings"]["on"]["sha256"]) == 1
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="JSONL events to replay")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.file.resolve(), args.rounds)
    if args.json:
        print(json.dumps(r, indent=2))
        return r
    print(f"{r['file']}: process CPU seconds, {r['rounds']} rounds, small paths off / on alternating")
    off, on = r["settings"]["off"], r["settings"]["on"]
    for name, s in (("off (array paths)", off), ("on (as shipped)", on)):
        print(f"  {name:<18} {' / '.join(f'{c:.2f}' for c in s['cpu_s'])} s, median {s['median_cpu_s']:.2f}")
    for label in spent:
        a, b = off["median_stages"][label], on["median_stages"][label]
        print(f"  {label:<22} median {a:6.2f} s -> {b:6.2f} s")
    print(f"  median CPU {off['median_cpu_s'] / on['median_cpu_s']:.2f} x less with the small paths; "
          f"{'same records' if r['same_records'] else 'RECORDS DIFFER'} ({', '.join(on['sha256'])})")
    return r


if __name__ == "__main__":
    main()
