"""NAB in seconds, for design work on the metric detector: every file's series stepped together
straight through `MetricDetector` (no events, no replay), scored with NAB's rules.

Gives the same records, hence the same scores, as `benchmarks/nab.py` at the shipped
threshold (one NAB row per 10 s window, so a window's value is the row's value), in
about a tenth of the time. Design choices are measured on the development half:

    python benchmarks/nab_dev.py                                   # shipped [metrics], dev half
    python benchmarks/nab_dev.py --set quiet_windows=48 --set level_half_life_samples=96
    python benchmarks/nab_dev.py --breakdown                       # each window found or missed, and why
    python benchmarks/nab_dev.py --set spread_test=true            # an optional test on
    python benchmarks/nab_dev.py --split holdout                   # for reporting, not for choosing
    python benchmarks/nab_dev.py --split all --context-alone       # the contextual novelty alone, NAB's sweep
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

from detector.anomaly.context import ContextNovelty  # noqa: E402
from detector.anomaly.detector import MetricDetector  # noqa: E402
from detector.config import ConfigError, load_pipeline, parse_pipeline  # noqa: E402


PARTS = ("onset", "score", "point", "sustained", "context", "spread")


def stepped(names: list[str], series: dict, metrics) -> dict[str, dict[str, np.ndarray]]:
    """Per file, per row: `onset` (1 where the detector opens an episode: emits its record), the `score` and
    its parts (`point`, `sustained`, `context`, `spread`; see `detector.anomaly.detector.Scored`)."""
    det = MetricDetector(metrics)
    lengths = np.array([len(series[r][0]) for r in names])
    t = np.zeros((len(names), lengths.max()))
    y = np.zeros_like(t)
    for i, r in enumerate(names):
        t[i, :lengths[i]], y[i, :lengths[i]] = series[r]
    out = {part: np.zeros_like(t) for part in PARTS}
    for k in range(lengths.max()):
        idx = np.flatnonzero(lengths > k)
        s = det.step(idx, t[idx, k], y[idx, k])
        for part in PARTS:
            out[part][idx, k] = getattr(s, part)
    return {r: {part: out[part][i, :lengths[i]] for part in PARTS} for i, r in enumerate(names)}


def context_alone(names: list[str], series: dict, levels: int, file_range: bool) -> dict[str, np.ndarray]:
    """The contextual novelty (`detector.anomaly.context.ContextNovelty`) of every row, alone: no baseline, no
    calibration, no episodes. With `file_range`, levels split each file's whole range, known in advance (as CAD
    OSE's NAB runs do); else the range of the values seen so far (as the detector does)."""
    ctx = ContextNovelty(levels)
    lengths = np.array([len(series[r][1]) for r in names])
    y = np.zeros((len(names), lengths.max()))
    for i, r in enumerate(names):
        y[i, :lengths[i]] = series[r][1]
    ctx.cols.ensure(len(names))
    if file_range:
        ctx.cols["lo"][:len(names)] = [series[r][1].min() for r in names]
        # the maximum just inside the top level
        ctx.cols["hi"][:len(names)] = [np.nextafter(series[r][1].max(), np.inf) for r in names]
    out = np.zeros_like(y)
    for k in range(lengths.max()):
        idx = np.flatnonzero(lengths > k)
        out[idx, k] = ctx.step(idx, y[idx, k])
    return {r: out[i, :lengths[i]] for i, r in enumerate(names)}


def records(names: list[str], series: dict, metrics) -> dict[str, np.ndarray]:
    """1 where the detector opens an episode (emits its record), per row of each file."""
    return {r: a["onset"] for r, a in stepped(names, series, metrics).items()}


def breakdown(names: list[str], files: dict, rows: dict, profile, n_windows: int) -> list[str]:
    """Where the score comes from: every labelled window (found or missed, the score's peak in it and which
    test's part that was), the files' false-positive rows, and the totals in NAB's raw units."""
    out = ["window                                                          found  weight  peak   point  sustained"
           "  context  spread"]
    found_sum, missed, fp_rows, fp_cost, fp_by_file = 0.0, 0, 0, 0.0, []
    for rel in names:
        f, a = files[rel], rows[rel]
        o = ns.outcomes(f, a["onset"], 0.5, profile)
        for k, first, weight in o.windows:
            inside = f.window == k
            peak = int(np.flatnonzero(inside)[np.argmax(a["score"][inside])])
            label = f"{rel} #{k}"
            out.append(f"{label:<63} {'yes' if first is not None else 'MISS':>5}  {weight:6.2f}  "
                       f"{a['score'][peak]:5.1f}  {a['point'][inside].max():5.1f}  {a['sustained'][inside].max():9.1f}"
                       f"  {a['context'][inside].max():7.1f}  {a['spread'][inside].max():6.1f}")
            found_sum += weight
            missed += first is None
        fp_rows += len(o.fp_rows)
        fp_cost += o.fp_cost
        if len(o.fp_rows):
            peaks = a["score"][o.fp_rows]
            from_point = int(np.sum(a["point"][o.fp_rows] >= a["score"][o.fp_rows]))
            fp_by_file.append((o.fp_cost, f"{rel:<63} {len(o.fp_rows):3d} rows  cost {o.fp_cost:6.2f}  scores "
                                          f"{np.min(peaks):.1f}-{np.max(peaks):.1f}  point test {from_point}"))
    out.append("false positives by file (cost in NAB raw units, fp_weight applied):")
    out.extend(line for _cost, line in sorted(fp_by_file))
    raw = found_sum * profile.tp_weight - missed * profile.fn_weight + fp_cost
    null = -profile.fn_weight * n_windows
    perfect = profile.tp_weight * n_windows
    need = 0.7 * (perfect - null) + null
    out.append(f"raw {raw:.2f} = found windows' weights {found_sum:.2f} x {profile.tp_weight:g} - {missed} missed x "
               f"{profile.fn_weight:g} + false positives {fp_cost:.2f} ({fp_rows} rows); normalised "
               f"{ns.normalise(raw, null, perfect):.2f}; 70 needs raw {need:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=nab.SPLITS, default="dev")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [metrics] setting over the shipped ones, TOML value (e.g. quiet_windows=48); "
                         "repeatable")
    ap.add_argument("--breakdown", action="store_true",
                    help="print every labelled window (found or missed, its peak score and which test) and the "
                         "false-positive rows by file, standard profile")
    ap.add_argument("--context-alone", action="store_true",
                    help="score the contextual novelty alone (context_levels of the pipeline, else 8) with NAB's "
                         "threshold sweep, which tunes on the labels (a fidelity check, not a decision)")
    ap.add_argument("--file-range", action="store_true",
                    help="with --context-alone: levels split each file's whole range, known in advance (CAD OSE)")
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
    n_windows = sum(len(windows[r]) for r in names)
    if args.context_alone:
        levels = pipeline.metrics.context_levels or 8
        t0 = time.perf_counter()
        novelty = context_alone(names, series, levels, args.file_range)
        seconds = time.perf_counter() - t0
        row = nab.table(files, {"context": (novelty, "sweep")}, profiles, n_windows)[0]
        print(f"NAB {args.split} ({len(names)} files), contextual novelty alone, {levels} levels, range "
              f"{'of each whole file (known in advance)' if args.file_range else 'seen so far'}, NAB's sweep; "
              f"{machine()}")
        print(f"standard {row['standard']:.2f} (threshold {row['standard_threshold']:.4f})  "
              f"low FP {row['reward_low_FP_rate']:.2f}  low FN {row['reward_low_FN_rate']:.2f}  "
              f"windows {row['windows_detected']}/{row['windows']}  FP rows {row['fp_rows']}  ({seconds:.0f} s)")
        return 0
    t0 = time.perf_counter()
    stepped_rows = stepped(names, series, pipeline.metrics)
    dec = {r: a["onset"] for r, a in stepped_rows.items()}
    seconds = time.perf_counter() - t0
    row = nab.table(files, {"detector": (dec, "fixed")}, profiles, sum(len(windows[r]) for r in names))[0]
    print(f"NAB {args.split} half ({len(names)} files), [metrics] {' '.join(args.set) or 'shipped'}; {machine()}")
    print(f"standard {row['standard']:.2f}  low FP {row['reward_low_FP_rate']:.2f}  "
          f"low FN {row['reward_low_FN_rate']:.2f}  windows {row['windows_detected']}/{row['windows']}  "
          f"FP rows {row['fp_rows']}  ({seconds:.0f} s)")
    if args.breakdown:
        std = profiles[[p.name for p in profiles].index("standard")]
        print("\n".join(breakdown(names, files, stepped_rows, std, sum(len(windows[r]) for r in names))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
