"""`detector report` on a day and a week of the demo's traffic: the one pass, then the pages.

The input is the demo scenario (five deploys in its first 40 minutes, then
quiet traffic of the same services) stretched to `--days` of event time and
thinned with `--rate-scale` (default 0.05, like baseline_day: a week is about
7 M events). Figures, each on the same file in the same run:

* replay: `detector replay` of the file (the alerts the report reads);
* summarise: the report's single pass over the events (decode, the core,
  window summaries taken as windows close);
* pages: index.html and every deploy page drawn from the summaries; the
  figure the choice of hand-written SVG over matplotlib is about;
* rebuild: `run_report` with `--summaries` kept from a first build: the
  summaries read back, every page drawn again, no pass over the events.

Run: `python benchmarks/bench_report.py [--quick] [--days 1 7] [--rate-scale 0.05]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import demo_file, machine  # noqa: E402

from detector.config import load_pipeline  # noqa: E402
from detector.replay import run_replay  # noqa: E402
from detector.report import store  # noqa: E402
from detector.report.build import read_alerts, run_report, summarise, write_report  # noqa: E402


def run(days: float, rate_scale: float) -> dict:
    pipeline = load_pipeline()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        events = demo_file(Path(tmp) / "events.jsonl", days * 86400, rate_scale)
        alerts = Path(tmp) / "alerts.jsonl"
        t0 = time.perf_counter()
        result = run_replay([str(events)], str(alerts), pipeline, quiet=True)
        t1 = time.perf_counter()
        history = summarise(events, pipeline)
        t2 = time.perf_counter()
        pages = write_report(history, read_alerts(alerts), pipeline, Path(tmp) / "site")
        t3 = time.perf_counter()
        saved = Path(tmp) / "summaries.npz"
        store.save(saved, history, store.input_stamp(events))
        t4 = time.perf_counter()
        rebuilt = run_report(str(events), str(alerts), str(Path(tmp) / "again"), pipeline, str(saved))
        t5 = time.perf_counter()
        assert rebuilt.reused
        saved_mb = saved.stat().st_size / 1e6
        rows = len(history.summaries.columns()["start"])
        size = sum(p.stat().st_size for p in (Path(tmp) / "site").rglob("*.html"))
    return {"days": days, "events": result.events, "replay_s": t1 - t0, "summarise_s": t2 - t1,
            "pages": pages, "pages_s": t3 - t2, "rebuild_s": t5 - t4,
            "saved_mb": saved_mb, "summary_rows": rows, "html_bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, nargs="+", default=[1, 7])
    ap.add_argument("--rate-scale", type=float, default=0.05)
    ap.add_argument("--quick", action="store_true", help="one day only")
    args = ap.parse_args()
    days = [1.0] if args.quick else args.days
    print(f"# report build ({machine()}); demo scenario at rate scale {args.rate_scale:g}")
    print("| history | events | replay | summarise (one pass) | pages drawn | rebuild from --summaries "
          "| summary rows | HTML |")
    print("|---|---|---|---|---|---|---|---|")
    for d in days:
        r = run(d, args.rate_scale)
        print(f"| {r['days']:g} days | {r['events']:,} | {r['replay_s']:.1f} s | {r['summarise_s']:.1f} s "
              f"({r['events'] / r['summarise_s']:,.0f} ev/s) | {r['pages']} in {r['pages_s']:.2f} s | "
              f"{r['rebuild_s']:.1f} s ({r['saved_mb']:.0f} MB file) | "
              f"{r['summary_rows']:,} | {r['html_bytes'] / 1e6:.1f} MB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
