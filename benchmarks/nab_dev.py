"""NAB in seconds, for design work on the metric detector: every file's series stepped together
straight through `MetricDetector` (no events, no replay), scored with NAB's rules.

Gives the same records, hence the same scores, as `benchmarks/nab.py` at the shipped
threshold (one NAB row per 10 s window, so a window's value is the row's value), in
about a tenth of the time. Design choices are measured on the development half:

    python benchmarks/nab_dev.py                                   # shipped [metrics], dev half
    python benchmarks/nab_dev.py --set quiet_windows=48 --set level_half_life_samples=96
    python benchmarks/nab_dev.py --split holdout                   # for reporting, not for choosing
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import machine  # noqa: E402  (sets one BLAS thread, puts the repository on sys.path)
import nab  # noqa: E402
import nab_scoring as ns  # noqa: E402

from detector.anomaly.detector import MetricDetector  # noqa: E402
from detector.config import ConfigError, load_pipeline, parse_pipeline  # noqa: E402


def records(names: list[str], series: dict, metrics) -> dict[str, np.ndarray]:
    """1 where the detector opens an episode (emits its record), per row of each file."""
    det = MetricDetector(metrics)
    lengths = np.array([len(series[r][0]) for r in names])
    t = np.zeros((len(names), lengths.max()))
    y = np.zeros_like(t)
    for i, r in enumerate(names):
        t[i, :lengths[i]], y[i, :lengths[i]] = series[r]
    onset = np.zeros_like(t)
    for k in range(lengths.max()):
        idx = np.flatnonzero(lengths > k)
        onset[idx, k] = det.step(idx, t[idx, k], y[idx, k]).onset
    return {r: onset[i, :lengths[i]] for i, r in enumerate(names)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=nab.SPLITS, default="dev")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [metrics] setting over the shipped ones, TOML value (e.g. quiet_windows=48); "
                         "repeatable")
    args = ap.parse_args(argv)
    pipeline = load_pipeline()
    if args.set:
        shipped = {f.name: getattr(pipeline.metrics, f.name) for f in dataclasses.fields(pipeline.metrics)}
        try:
            given = tomllib.loads("\n".join(args.set))
            metrics = parse_pipeline("[metrics]\n" + "\n".join(args.set), "--set").metrics
        except tomllib.TOMLDecodeError as e:
            raise SystemExit(f"--set: not TOML key=value: {e}") from None
        except ConfigError as e:
            raise SystemExit(str(e)) from None
        metrics = dataclasses.replace(metrics, **{k: v for k, v in shipped.items() if k not in given})
        pipeline = dataclasses.replace(pipeline, metrics=metrics)
    windows = ns.load_windows(nab.DATA / "labels" / "combined_windows.json")
    profiles = ns.load_profiles(nab.DATA / "config" / "profiles.json")
    names = [r for r in sorted(windows) if args.split == "all" or nab.split_of(r) == args.split]
    series, files = {}, {}
    for rel in names:
        ts, values = nab.read_series(nab.DATA / "data" / rel)
        times = ns.parse_times(ts)
        series[rel] = (nab.to_seconds(times), values)
        files[rel] = ns.file_rows(rel, times, windows[rel])
    t0 = time.perf_counter()
    dec = records(names, series, pipeline.metrics)
    seconds = time.perf_counter() - t0
    row = nab.table(files, {"detector": (dec, "fixed")}, profiles, sum(len(windows[r]) for r in names))[0]
    print(f"NAB {args.split} half ({len(names)} files), [metrics] {' '.join(args.set) or 'shipped'}; {machine()}")
    print(f"standard {row['standard']:.2f}  low FP {row['reward_low_FP_rate']:.2f}  "
          f"low FN {row['reward_low_FN_rate']:.2f}  windows {row['windows_detected']}/{row['windows']}  "
          f"FP rows {row['fp_rows']}  ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
