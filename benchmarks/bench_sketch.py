"""Latency sketch throughput and size.

Measures, on one core:

* values/s of ``bucket_index`` alone, and of ``bucket_index`` + grouped
  accumulation (``group_values``: codes -> CSR sketches of many series), next
  to ``np.sort`` of the same values as a baseline (the ratio says how much
  cheaper than sorting a window the sketch is);
* ``quantiles_grouped`` series/s for p50/p95/p99;
* bytes per series-window of a typical latency distribution (lognormal,
  median ~40 ms, long tail) at 100 and 10,000 requests, in the CSR form the
  core keeps (int32 bucket + int64 count per occupied bucket, int64 indptr
  per series).

Run: ``python benchmarks/bench_sketch.py [--values N] [--series S]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detector.aggregate import sketch as sk


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _typical_latencies(rng: np.random.Generator, n: int) -> np.ndarray:
    # Mostly lognormal around 40 ms, 2 % slow path around 800 ms.
    body = rng.lognormal(np.log(40.0), 0.6, n)
    slow = rng.lognormal(np.log(800.0), 0.5, n)
    return np.where(rng.random(n) < 0.02, slow, body)


def run(n_values: int = 2_000_000, n_series: int = 2_000, repeats: int = 5, seed: int = 7) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    values = _typical_latencies(rng, n_values)
    series = rng.integers(0, n_series, n_values)

    t_sort = _best_of(lambda: np.sort(values), repeats)
    t_bucket = _best_of(lambda: sk.bucket_index(values), repeats)
    t_group = _best_of(lambda: sk.group_values(series, values, n_series), repeats)
    g = sk.group_values(series, values, n_series)
    qs = np.array([0.5, 0.95, 0.99])
    t_q = _best_of(lambda: sk.quantiles_grouped(g, qs), repeats)

    sizes = {}
    for n_req in (100, 10_000):
        # Average over many windows: the occupied-bucket count is random.
        windows = 200
        per_window = sk.group_values(np.repeat(np.arange(windows), n_req),
                                     _typical_latencies(rng, windows * n_req), windows)
        nbytes = per_window.buckets.nbytes + per_window.counts.nbytes + per_window.indptr.nbytes
        sizes[n_req] = nbytes / windows
        sizes[f"buckets_{n_req}"] = len(per_window.buckets) / windows

    return {
        "values": n_values,
        "series": n_series,
        "sort_values_per_s": n_values / t_sort,
        "bucket_index_values_per_s": n_values / t_bucket,
        "bucket_and_group_values_per_s": n_values / t_group,
        "group_speedup_vs_sort": t_sort / t_group,
        "quantiles_series_per_s": n_series / t_q,
        "bytes_per_series_window_100": sizes[100],
        "bytes_per_series_window_10000": sizes[10_000],
        "buckets_per_series_window_100": sizes["buckets_100"],
        "buckets_per_series_window_10000": sizes["buckets_10000"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2_000_000)
    parser.add_argument("--series", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = run(args.values, args.series, args.repeats)
    print(f"latency sketch: {r['values']:,} values over {r['series']:,} series (best of {args.repeats})")
    print(f"  np.sort (baseline)           {r['sort_values_per_s'] / 1e6:8.1f} M values/s")
    print(f"  bucket_index                 {r['bucket_index_values_per_s'] / 1e6:8.1f} M values/s")
    print(f"  bucket_index + group_values  {r['bucket_and_group_values_per_s'] / 1e6:8.1f} M values/s"
          f"  ({r['group_speedup_vs_sort']:.1f}x np.sort)")
    print(f"  quantiles_grouped p50/95/99  {r['quantiles_series_per_s'] / 1e6:8.2f} M series/s")
    for n_req in (100, 10_000):
        print(f"  series-window of {n_req:>6,} requests: {r[f'bytes_per_series_window_{n_req}']:7.0f} bytes "
              f"({r[f'buckets_per_series_window_{n_req}']:.0f} occupied buckets)")


if __name__ == "__main__":
    main()
