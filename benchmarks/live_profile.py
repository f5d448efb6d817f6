"""Where the live sidecar's time goes: a sampling profile of `detector run` on the embedded broker, by stage.

Runs what `bench_live.py` runs for the sidecar (a scenario produced into
4-partition topics, then `Sidecar` in-process until every message is read)
under py-spy, a sampling profiler that reads the process from outside: unlike
cProfile it adds no cost per Python call, so stages made of many small calls
are not inflated. The scenario is produced by a separate process, so only
the sidecar's own work (and the broker start) is sampled. Each sample goes to
one stage, by the innermost frame of the detector or aiokafka:

* decode (`detector/ingest/`), windows (`aggregate/`), baselines, metric
  watch (`anomaly/`), log templates (`logs/`), judge, fleet, stats, core,
  snapshots (`state`), sinks;
* the sidecar's loop (`runtime/`: fetch handling, dead letters, metrics,
  checkpoint framing);
* aiokafka: fetching, protocol decoding of record batches, producing;
* setup: imports, the broker start, waiting for the producing process;
* idle: the sidecar waiting in `select` (fetch responses, the consumer
  group's join, timers), and idle threads (an executor's workers waiting for
  work, threads without Python frames): py-spy samples every thread;
* other: asyncio's loop and the rest.

Samples are taken while the process runs or waits for a core alike, so on a
shared machine a stage's share is of the time the sidecar wanted the CPU or
waited for the broker; its own CPU time is printed beside the wall time.

Not part of `make bench` (needs py-spy: `pip install py-spy`; not a dependency).
Run: `python benchmarks/live_profile.py [--scenario NAME] [--rate HZ] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STAGES = [  # (path fragment of the innermost matching frame, stage); first match wins
    ("detector/ingest/", "decode"),
    ("detector/aggregate/", "windows (fold, close)"),
    ("detector/baselines/", "seasonal baselines"),
    ("detector/anomaly/", "metric watch"),
    ("detector/logs/", "log templates"),
    ("detector/judge/", "judge"),
    ("detector/fleet/", "fleet view"),
    ("detector/stats/", "statistical tests"),
    ("detector/state", "snapshots for checkpoints (a worker thread)"),
    ("detector/sinks/", "sinks"),
    ("detector/runtime/", "sidecar loop (runtime/)"),
    ("detector/", "core, other"),
    ("aiokafka/", "aiokafka (fetch, record batches, produce)"),
]

IDLE = "idle: waiting in select (fetch responses, group join, timers) or idle threads"
SETUP = ("<frozen importlib", "subprocess.py", "runtime/embedded.py")

PRODUCE = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from detector.simulate.main import resolve_scenario
from detector.simulate.output import produce_kafka
from detector.simulate.scenario import load_scenario
from detector.simulate.traffic import Simulator
sim = Simulator(load_scenario(resolve_scenario(sys.argv[2])))
counts = asyncio.run(produce_kafka(sim.chunks(), sys.argv[3], sim.service_names, create_partitions=int(sys.argv[4])))
print(counts.total)
"""


def stage_of(stack: str) -> str:
    """The stage of one sample: the innermost frame from the detector or aiokafka decides."""
    frames = stack.split(";")
    if any(marker in frame for frame in frames for marker in SETUP):
        return "setup: imports, broker start, producing the scenario"
    if any("Core.snapshot (" in frame for frame in frames):
        return "snapshots for checkpoints (a worker thread)"
    leaf = frames[-1]
    if "(selectors.py:" in leaf or "_worker (concurrent/futures/thread.py:" in leaf or leaf.strip() in ("", "("):
        return IDLE
    for frame in reversed(frames):
        for fragment, stage in STAGES:
            if fragment in frame:
                return stage
    return "other (event loop, the rest)"


def summarize(raw: Path) -> dict[str, int]:
    """Samples per stage from py-spy's raw output (one `stack count` line per distinct stack)."""
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[stage_of(stack)] += int(n)
    return dict(counts.most_common())


async def child(scenario: str) -> dict:
    from bench_live import PARTITIONS, sidecar_rate

    from detector.config import Topics, load_pipeline
    from detector.runtime.embedded import EmbeddedBroker
    from detector.runtime.logsetup import configure

    configure("error")
    base = load_pipeline()
    with EmbeddedBroker() as broker:
        out = subprocess.run([sys.executable, "-c", PRODUCE, str(ROOT), scenario, broker.bootstrap, str(PARTITIONS)],
                             check=True, capture_output=True, text=True)
        total = int(out.stdout.split()[-1])
        pipeline = dataclasses.replace(
            base, topics=Topics(),
            kafka=dataclasses.replace(base.kafka, partitions=PARTITIONS, session_timeout_ms=2000,
                                      heartbeat_interval_ms=500, checkpoint_interval_s=5.0))
        cpu0, t0 = time.process_time(), time.perf_counter()
        rate, lag, _stats = await sidecar_rate(broker.bootstrap, pipeline, total)
        return {"events": total, "events_per_s": rate, "lag_after": lag,
                "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="config_fault")
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, help="also keep py-spy's raw samples in this file")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        args.child.write_bytes(orjson.dumps(asyncio.run(child(args.scenario))))
        return {}
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(pyspy):
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="live-profile-") as tmp:
        raw, res = Path(tmp) / "raw.txt", Path(tmp) / "res.json"
        # --nonblocking: the process is never paused to be read (a paused sidecar read 4 x slower);
        # --idle: samples taken while it waits in select are kept, to say how much of the run is waiting
        subprocess.run([pyspy, "record", "--nonblocking", "--idle", "-r", str(args.rate), "-f", "raw", "-o", str(raw),
                        "--",
                        sys.executable, __file__, "--scenario", args.scenario, "--child", str(res)],
                       check=True, capture_output=True)
        run = orjson.loads(res.read_bytes())
        stages = summarize(raw)
        if args.keep is not None:
            shutil.copyfile(raw, args.keep)
    total = sum(stages.values())
    r = {"scenario": args.scenario, **run, "samples": total, "stages": stages}
    if args.json:
        print(orjson.dumps(r).decode())
        return r
    print(f"live profile, {args.scenario}: {run['events']:,} events, sidecar {run['events_per_s']:,.0f} ev/s under "
          f"py-spy ({args.rate} Hz), {run['cpu_s']:.1f} s CPU in {run['wall_s']:.1f} s, lag after {run['lag_after']}")
    for stage, n in stages.items():
        print(f"  {stage:<44} {n:>6} samples {100 * n / total:5.1f} %")
    return r


if __name__ == "__main__":
    main()
