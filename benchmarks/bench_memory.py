"""Memory per series-window, and memory under a flood of distinct endpoints.

Three measurements, each through a real `Core` with the shipped pipeline:

* demo: the demo scenario from the simulator (fixed seed, temporary
  directory), decoded and processed; bytes of every closed `WindowFacts`.
* fleet: a synthetic fleet of `--services` x `--endpoints` x `--versions`
  request series (default 250 x 4 x 2 = 2,000) with realistic spreads, fed
  window by window as decoded columns: per series a request rate drawn
  log-uniformly from 0.02 to 50 rps, a lognormal latency with a median from
  5 to 300 ms and sigma 0.3 to 1.0 (p99 2-10x the median), an error rate
  from 0.01 % to 2 %. Bytes of every closed `WindowFacts`, and tracemalloc
  and RSS growth of the whole process as windows accumulate (the core keeps
  its last `history.maxlen` closed windows plus the open ones).
* flood: `--flood` requests, each to a different endpoint path, over 20
  services and 600 s, as JSON lines through `decode_batch` and the core. The
  series tables fold endpoints past `limits.max_endpoints_per_service` into
  `other`; the figures show what stays bounded and what grows (RSS, and the
  interner's table sized directly: tracemalloc would slow a million Python
  strings ~7x).

"Bytes per series-window" is the sum of `nbytes` of a closed window's arrays
(dense per-series counts and errors, the latency sketch in CSR form: int64
indptr per series, int32 bucket + int64 count per occupied bucket, and the
small transaction, metric and log tables) divided by the series that had at
least one request in that window. Python object headers (~2 KiB per window,
not per series) are not included. Target: <= 4 KiB per series-window.
Run: `python benchmarks/bench_memory.py [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np  # noqa: E402
import orjson  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SEED, demo_file, machine  # noqa: E402

from detector.ingest.columns import DecodedBatch, RequestColumns  # noqa: E402
from detector.config import Pipeline, load_pipeline  # noqa: E402
from detector.ingest.contract import decode_batch  # noqa: E402
from detector.core import Core  # noqa: E402
from detector.ingest.interner import Interner  # noqa: E402
from detector.replay import CHUNK_LINES  # noqa: E402
from detector.aggregate.windows import WindowFacts  # noqa: E402

TARGET_BYTES = 4 * 1024
START_TS = 1_795_679_400.0  # a window boundary (the demo scenario's start)
MIB = 2**20




def rss_bytes() -> int:
    """Resident set size now (Linux), else the peak so far (ru_maxrss, KiB on Linux)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def facts_nbytes(w: WindowFacts) -> dict[str, int]:
    """Array bytes of one closed window, by part."""
    return {
        "dense": w.count.nbytes + w.errors.nbytes + w.lat.indptr.nbytes,
        "sketch": w.lat.buckets.nbytes + w.lat.counts.nbytes,
        "other": sum(a.nbytes for a in (w.txn_series, w.txn_name, w.txn_count, w.metric_n, w.metric_sum,
                                         w.metric_min, w.metric_max, w.log_service, w.log_version, w.log_level,
                                         w.log_count)),
    }


class WindowMeter:
    """Records every closed window the core hands its judge: bytes, active series, requests per series."""

    def __init__(self, core: Core) -> None:
        self.bytes_per_active: list[float] = []
        self.parts = {"dense": 0, "sketch": 0, "other": 0}
        self.active = 0
        self.windows = 0
        # Per active series-window: requests and bytes it costs (24 dense + 12 per occupied bucket).
        self.series_requests: list[np.ndarray] = []
        self.series_bytes: list[np.ndarray] = []
        on_window = core.judge.on_window

        def metered(w: WindowFacts, *args, **kwargs):
            self._record(w)
            return on_window(w, *args, **kwargs)

        core.judge.on_window = metered

    def _record(self, w: WindowFacts) -> None:
        parts = facts_nbytes(w)
        active = w.count > 0
        n_active = int(active.sum())
        if n_active == 0:
            return
        self.windows += 1
        self.active += n_active
        for k, v in parts.items():
            self.parts[k] += v
        self.bytes_per_active.append(sum(parts.values()) / n_active)
        occupied = np.diff(w.lat.indptr)[: len(w.count)]
        self.series_requests.append(w.count[active])
        self.series_bytes.append(24 + 12 * occupied[active[: len(occupied)]])

    def summary(self) -> dict:
        per = np.asarray(self.bytes_per_active)
        req = np.concatenate(self.series_requests)
        sb = np.concatenate(self.series_bytes)
        by_traffic = {}
        for lo, hi in ((1, 10), (10, 100), (100, 1_000), (1_000, 10**12)):
            sel = (req >= lo) & (req < hi)
            if sel.any():
                label = f"{lo:,}+" if hi > 10**9 else f"{lo:,}-{hi - 1:,}"
                by_traffic[label] = {"series_windows": int(sel.sum()), "mean_bytes": float(sb[sel].mean()),
                                     "max_bytes": int(sb[sel].max())}
        total = sum(self.parts.values())
        return {
            "windows": self.windows,
            "active_series_per_window": self.active / self.windows,
            "bytes_per_active_series_window": total / self.active,
            "bytes_per_active_series_window_worst_window": float(per.max()),
            "share": {k: v / total for k, v in self.parts.items()},
            "by_requests_per_series_window": by_traffic,
            "met": total / self.active <= TARGET_BYTES,
        }


# --- demo ---------------------------------------------------------------------


def measure_demo(pipeline: Pipeline, duration_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        path = demo_file(Path(tmp) / "demo.jsonl", duration_s)
        lines = path.read_bytes().splitlines()
    core = Core(pipeline)
    meter = WindowMeter(core)
    for i in range(0, len(lines), CHUNK_LINES):
        core.process(decode_batch(lines[i:i + CHUNK_LINES], core.interner), source="bench")
    core.finish()
    return {"events": len(lines), "series": len(core.requests), **meter.summary()}


# --- fleet --------------------------------------------------------------------


class Fleet:
    """Request series with fixed per-series rate, latency and error parameters."""

    def __init__(self, interner: Interner, services: int, endpoints: int, versions: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        s, e, v = np.meshgrid(np.arange(services), np.arange(endpoints), np.arange(versions), indexing="ij")
        svc_ids = np.asarray([interner.intern(f"svc-{i:04d}") for i in range(services)], np.int32)
        ep_ids = np.asarray([interner.intern(f"{('GET', 'POST')[j % 2]} /api/r{j}") for j in range(endpoints)],
                            np.int32)
        ver_ids = np.asarray([interner.intern(f"v1.{k}.0") for k in range(versions)], np.int32)
        self.service, self.endpoint, self.version = svc_ids[s.ravel()], ep_ids[e.ravel()], ver_ids[v.ravel()]
        n = len(self.service)
        self.rate_rps = np.exp(rng.uniform(np.log(0.02), np.log(50.0), n))
        self.median_ms = np.exp(rng.uniform(np.log(5.0), np.log(300.0), n))
        self.sigma = rng.uniform(0.3, 1.0, n)
        self.error_rate = np.exp(rng.uniform(np.log(1e-4), np.log(2e-2), n))

    def __len__(self) -> int:
        return len(self.service)

    def window(self, k: int, width_s: float) -> DecodedBatch:
        rng = self.rng
        idx = np.repeat(np.arange(len(self)), rng.poisson(self.rate_rps * width_s))
        n = len(idx)
        cols = RequestColumns(
            pos=np.arange(n, dtype=np.int64),
            ts=START_TS + (k + rng.random(n)) * width_s,
            service=self.service[idx],
            endpoint=self.endpoint[idx],
            version=self.version[idx],
            instance=np.full(n, -1, np.int32),
            status=np.where(rng.random(n) < self.error_rate[idx], 503, 200).astype(np.int16),
            latency_ms=self.median_ms[idx] * np.exp(self.sigma[idx] * rng.standard_normal(n)),
            txn=np.full(n, -1, np.int32),
        )
        return DecodedBatch(requests=cols)


def measure_fleet(pipeline: Pipeline, services: int, endpoints: int, versions: int, windows: int) -> dict:
    width_s = pipeline.windows.width_s
    checkpoints = sorted({c for c in (10, 30, 60, 90, 120, 180, windows) if c <= windows})
    gc.collect()
    tracemalloc.start()
    traced0, rss0 = tracemalloc.get_traced_memory()[0], rss_bytes()
    core = Core(pipeline)
    fleet = Fleet(core.interner, services, endpoints, versions, SEED)
    meter = WindowMeter(core)
    growth = []
    events = 0
    t0 = time.perf_counter()
    for k in range(windows):
        batch = fleet.window(k, width_s)
        events += len(batch.requests)
        core.process(batch, source="bench")
        del batch
        if k + 1 in checkpoints:
            gc.collect()
            held = len(core.history) + len(core.windows.open)
            traced = tracemalloc.get_traced_memory()[0] - traced0
            history_bytes = sum(sum(facts_nbytes(w).values()) for w in core.history)
            growth.append({"windows_fed": k + 1, "windows_held": held, "traced_mib": traced / MIB,
                           "history_array_mib": history_bytes / MIB, "rss_growth_mib": (rss_bytes() - rss0) / MIB,
                           "traced_bytes_per_held_series_window": traced / max(held * len(fleet), 1)})
    seconds = time.perf_counter() - t0
    tracemalloc.stop()
    return {"series": len(fleet), "events": events, "history_maxlen": core.history.maxlen, "seconds": seconds,
            "growth": growth, **meter.summary()}


# --- flood --------------------------------------------------------------------


def flood_chunks(n_requests: int, services: int, duration_s: float, seed: int):
    """JSON lines in time order, chunk by chunk; every request to its own endpoint path."""
    rng = np.random.default_rng(seed)
    dt = duration_s / n_requests
    for start in range(0, n_requests, CHUNK_LINES):
        stop = min(start + CHUNK_LINES, n_requests)
        lat = rng.lognormal(np.log(40.0), 0.6, stop - start).round(2).tolist()
        tag = rng.integers(0, 2**32, stop - start).tolist()
        yield [orjson.dumps({"type": "request", "ts": START_TS + i * dt, "service": f"svc-{i % services:02d}",
                             "endpoint": f"GET /items/{i:08d}/{t:08x}", "status": 200,
                             "latency_ms": lt, "version": "v1"})
               for i, t, lt in zip(range(start, stop), tag, lat)]


def interner_bytes(interner: Interner) -> int:
    """Bytes of the interner's table: the strings, its list and its dict (a private field, read only)."""
    strings = interner.strings()
    return sum(map(sys.getsizeof, strings)) + sys.getsizeof(strings) + sys.getsizeof(interner._ids)


def measure_flood(pipeline: Pipeline, n_requests: int, services: int = 20, duration_s: float = 600.0) -> dict:
    # No tracemalloc here: it slows Python allocations ~7x and the flood is a
    # million Python strings. The interner and series tables are sized directly.
    gc.collect()
    rss0 = rss_bytes()
    core = Core(pipeline)
    meter = WindowMeter(core)
    marks = {int(n_requests * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)}
    steps = []
    seen = 0
    t_core = 0.0
    for chunk in flood_chunks(n_requests, services, duration_s, SEED):
        t0 = time.perf_counter()
        core.process(decode_batch(chunk, core.interner), source="bench")
        t_core += time.perf_counter() - t0
        before, seen = seen, seen + len(chunk)
        if any(before < m <= seen for m in marks):
            gc.collect()
            steps.append({"requests": seen, "interned_strings": len(core.interner),
                          "interner_mib": interner_bytes(core.interner) / MIB,
                          "interner_overflow": core.interner.overflow,
                          "request_series": len(core.requests), "series_overflow": core.requests.overflow,
                          "rss_growth_mib": (rss_bytes() - rss0) / MIB})
    core.finish()
    cap = services * (pipeline.limits.max_endpoints_per_service + 1) * pipeline.limits.max_versions_per_service
    return {"requests": n_requests, "services": services, "decode_and_core_s": t_core, "series_cap": cap,
            "interner_cap": pipeline.limits.max_interned_strings, "steps": steps,
            "interner_full": core.interner.overflow > 0, **meter.summary()}


# --- report -------------------------------------------------------------------


def run(quick: bool, services: int, endpoints: int, versions: int, windows: int, flood: int) -> dict:
    pipeline = load_pipeline()
    return {
        "machine": machine(),
        "target_bytes_per_series_window": TARGET_BYTES,
        # Fleet first: its RSS growth is cleanest in a process that has not yet
        # freed large allocations the allocator would hand back out.
        "fleet": measure_fleet(pipeline, services, endpoints, versions, windows),
        "flood": measure_flood(pipeline, flood),
        "demo": measure_demo(pipeline, 600.0 if quick else 1_200.0),
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_report(r: dict) -> None:
    print(f"memory per series-window (target <= {r['target_bytes_per_series_window']:,} bytes)")
    print(f"machine: {r['machine']}")
    print()
    print(f"  {'workload':<8} {'series':>7} {'windows':>8} {'active/win':>11} {'bytes/series-win':>17} "
          f"{'worst window':>13} {'dense/sketch/other':>19}   target")
    for name in ("demo", "fleet"):
        x = r[name]
        sh = x["share"]
        shares = f"{sh['dense']:.0%}/{sh['sketch']:.0%}/{sh['other']:.0%}"
        worst = x["bytes_per_active_series_window_worst_window"]
        print(f"  {name:<8} {x['series']:>7,} {x['windows']:>8} {x['active_series_per_window']:>11,.0f} "
              f"{x['bytes_per_active_series_window']:>17,.0f} {worst:>13,.0f} {shares:>19}   {_verdict(x['met'])}")
    f = r["fleet"]
    print()
    print("  fleet, bytes per active series-window by its request count (24 dense + 12 per occupied bucket):")
    for label, b in f["by_requests_per_series_window"].items():
        print(f"    {label:>10} requests: {b['series_windows']:>9,} series-windows, mean {b['mean_bytes']:6,.0f} B, "
              f"max {b['max_bytes']:6,} B")
    print()
    print(f"  fleet memory as windows accumulate ({f['events']:,} events in {f['seconds']:.1f} s; the core keeps "
          f"{f['history_maxlen']} closed windows):")
    print(f"    {'fed':>5} {'held':>5} {'traced MiB':>11} {'history arrays MiB':>19} {'RSS growth MiB':>15} "
          f"{'traced B per held series-window':>32}")
    for g in f["growth"]:
        print(f"    {g['windows_fed']:>5} {g['windows_held']:>5} {g['traced_mib']:>11.1f} "
              f"{g['history_array_mib']:>19.1f} {g['rss_growth_mib']:>15.1f} "
              f"{g['traced_bytes_per_held_series_window']:>32,.0f}")
    fl = r["flood"]
    print()
    print(f"  flood: {fl['requests']:,} requests, each to a distinct endpoint, {fl['services']} services; "
          f"decode + core {fl['decode_and_core_s']:.1f} s ({1e6 * fl['decode_and_core_s'] / fl['requests']:.1f} us "
          f"per request)")
    print(f"    caps: {fl['series_cap']:,} request series, {fl['interner_cap']:,} interned strings")
    print(f"    {'requests':>10} {'series':>7} {'folded':>10} {'interned':>10} {'interner MiB':>13} "
          f"{'interner overflow':>18} {'RSS growth MiB':>15}")
    for s in fl["steps"]:
        print(f"    {s['requests']:>10,} {s['request_series']:>7,} {s['series_overflow']:>10,} "
              f"{s['interned_strings']:>10,} {s['interner_mib']:>13.1f} {s['interner_overflow']:>18,} "
              f"{s['rss_growth_mib']:>15.1f}")
    print(f"    closed windows during the flood: {fl['bytes_per_active_series_window']:,.0f} bytes per active "
          f"series-window, {fl['active_series_per_window']:,.0f} active series per window")
    if fl["interner_full"]:
        print("    the interner is full: from here on every new string (a new service, version, transaction) "
              "interns as 'other'")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (60 fleet windows, 200,000-request flood)")
    ap.add_argument("--services", type=int, default=250, help="fleet services")
    ap.add_argument("--endpoints", type=int, default=4, help="fleet endpoints per service")
    ap.add_argument("--versions", type=int, default=2, help="fleet versions per service")
    ap.add_argument("--windows", type=int, help="fleet windows fed (default 120; 60 with --quick)")
    ap.add_argument("--flood", type=int, help="flood requests, each to a new path (default 1,200,000, just past "
                                              "the interner cap; 200,000 with --quick)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = ap.parse_args(argv)
    windows = args.windows or (60 if args.quick else 120)
    flood = args.flood or (200_000 if args.quick else 1_200_000)
    r = run(args.quick, args.services, args.endpoints, args.versions, windows, flood)
    if args.json:
        print(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(r)
    return r


if __name__ == "__main__":
    main()
