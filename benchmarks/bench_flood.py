"""Cardinality flood next to calm traffic of the same size: time and peak memory of a replay.

The input is the demo scenario (several services, deploys under verification)
and the same events flooded from minute 10 on: every request gets a never-seen
endpoint path and every log line is random text (`detector.simulate.flood`).
Each replay runs in a fresh process so that its peak resident memory
(VmHWM: ru_maxrss would carry the parent's over exec) is its own; the baseline process only imports the detector and
reads the file. Targets: flood <= 3 x calm in memory and <= 5 x in time.
Run: `python benchmarks/bench_flood.py [--quick]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import demo_file, machine  # noqa: E402

from detector.simulate.flood import flood  # noqa: E402

CHILD = r"""
import sys, time
from detector.config import load_pipeline
from detector.replay import replay
path, mode = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if mode == "replay":
    n = [0]
    res = replay([path], load_pipeline(), lambda r: n.__setitem__(0, n[0] + 1))
    events = res.events
else:
    events = sum(1 for _ in open(path, "rb"))
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]  # kB, this process only
print(time.perf_counter() - t0, hwm, events)
"""


def measure(path: Path, mode: str, repeats: int) -> tuple[float, float, int]:
    best_t, peak_kb, events = float("inf"), 0.0, 0
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], check=True, capture_output=True,
                             text=True).stdout.split()
        best_t = min(best_t, float(out[0]))
        peak_kb, events = float(out[1]), int(out[2])
    return best_t, peak_kb / 1024, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a shorter stream, one repeat")
    args = ap.parse_args()
    duration, repeats = (900.0, 1) if args.quick else (2400.0, 3)
    with tempfile.TemporaryDirectory() as tmp:
        calm = demo_file(Path(tmp) / "calm.jsonl", duration)
        lines = calm.read_bytes().splitlines()
        start = orjson.loads(lines[0])["ts"] + 600
        flooded = Path(tmp) / "flood.jsonl"
        flooded.write_bytes(b"\n".join(flood(lines, start)) + b"\n")
        base_t, base_mb, _ = measure(calm, "read", 1)
        calm_t, calm_mb, n = measure(calm, "replay", repeats)
        flood_t, flood_mb, _ = measure(flooded, "replay", repeats)
    print(f"# {machine()}")
    print(f"# {n:,} events, demo scenario {duration:g} s of event time; flood from minute 10, every service")
    print(f"{'run':<28}{'seconds':>10}{'events/s':>12}{'peak MB':>10}")
    print(f"{'process + read (baseline)':<28}{base_t:>10.2f}{'':>12}{base_mb:>10.0f}")
    print(f"{'replay, calm':<28}{calm_t:>10.2f}{n / calm_t:>12,.0f}{calm_mb:>10.0f}")
    print(f"{'replay, flood':<28}{flood_t:>10.2f}{n / flood_t:>12,.0f}{flood_mb:>10.0f}")
    mem = (flood_mb - base_mb) / max(calm_mb - base_mb, 1e-9)
    print(f"flood / calm: time {flood_t / calm_t:.2f} x (target <= 5), memory above the baseline process "
          f"{mem:.2f} x (target <= 3), total peak {flood_mb / calm_mb:.2f} x")


if __name__ == "__main__":
    main()
