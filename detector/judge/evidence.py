"""Populations: the traffic of a selection of series over a span of windows.

The judge compares populations (new version vs stable version over the same
windows, new version after a deploy vs the service before it). A population
holds per-endpoint requests, errors, completed transactions and the merged
latency sketch, plus service-wide totals; everything is an exact sum of the
closed windows' aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detector import sketch
from detector.windows import WindowFacts


@dataclass
class Population:
    endpoints: np.ndarray  # int32 endpoint ids, one per row
    n: np.ndarray  # int64 requests per endpoint row
    errors: np.ndarray  # int64
    txn: np.ndarray  # int64 completed transactions per endpoint row
    lat: sketch.GroupedSketch  # one sketch per endpoint row
    whole: sketch.Sketch  # latency of the whole selection
    total_n: int
    total_errors: int
    total_txn: int
    windows: int
    seconds: float

    @property
    def error_rate(self) -> float:
        return self.total_errors / self.total_n if self.total_n else float("nan")

    def row(self, endpoint: int) -> int:
        hit = np.flatnonzero(self.endpoints == endpoint)
        return int(hit[0]) if len(hit) else -1

    def sketch_of(self, row: int) -> sketch.Sketch:
        """Row -1 is the whole selection."""
        return self.whole if row < 0 else sketch.select(self.lat, row)


def _pad_groups(g: sketch.GroupedSketch, n: int) -> sketch.GroupedSketch:
    if g.n_series >= n:
        return g
    tail = np.full(n - g.n_series, g.indptr[-1], dtype=np.int64)
    return sketch.GroupedSketch(np.concatenate([g.indptr, tail]), g.buckets, g.counts)


def population(
    windows: Sequence[WindowFacts],
    series_service: np.ndarray,
    series_endpoint: np.ndarray,
    series_version: np.ndarray,
    service: int,
    versions: Sequence[int] | None = None,
    exclude_versions: Sequence[int] = (),
    endpoints: np.ndarray | None = None,
) -> Population:
    """Sum `windows` over the series of `service` whose version is in `versions`
    (any when None) and not in `exclude_versions`, broken down by endpoint.

    `endpoints` (sorted) fixes the row order so that two populations line up;
    traffic of endpoints not listed still counts in the totals.
    """
    n_series = len(series_service)
    mask = series_service == service
    if versions is not None:
        mask &= np.isin(series_version, np.asarray(list(versions), dtype=np.int32))
    if len(exclude_versions):
        mask &= ~np.isin(series_version, np.asarray(list(exclude_versions), dtype=np.int32))
    if endpoints is None:
        endpoints = np.unique(series_endpoint[mask]).astype(np.int32)
    n_rows = len(endpoints)
    group = np.full(n_series, -1, dtype=np.int64)
    if n_rows:
        pos = np.minimum(np.searchsorted(endpoints, series_endpoint), n_rows - 1)
        matched = mask & (endpoints[pos] == series_endpoint)
        group[matched] = pos[matched]
    n = np.zeros(n_rows, np.int64)
    errors = np.zeros(n_rows, np.int64)
    txn = np.zeros(n_rows, np.int64)
    total_n = total_errors = total_txn = 0
    ep_sketches, whole_sketches = [], []
    seconds = 0.0
    for w in windows:
        seconds += w.end - w.start
        k = len(w.count)
        g, m = group[:k], mask[:k]
        valid = g >= 0
        if valid.any():
            n += np.bincount(g[valid], weights=w.count[valid], minlength=n_rows).astype(np.int64)
            errors += np.bincount(g[valid], weights=w.errors[valid], minlength=n_rows).astype(np.int64)
        total_n += int(w.count[m].sum())
        total_errors += int(w.errors[m].sum())
        if len(w.txn_series):
            ts_ = np.minimum(w.txn_series, k - 1)
            tin = (w.txn_series < k) & m[ts_]
            total_txn += int(w.txn_count[tin].sum())
            tg = g[ts_]
            tv = tin & (tg >= 0)
            if tv.any():
                txn += np.bincount(tg[tv], weights=w.txn_count[tv], minlength=n_rows).astype(np.int64)
        ep_sketches.append(sketch.merge_grouped(w.lat, g, max(n_rows, 1)))
        whole_sketches.append(sketch.merge_grouped(w.lat, np.where(m, 0, -1), 1))
    lat = _pad_groups(sketch.add_grouped(*ep_sketches), n_rows)
    if lat.n_series > n_rows:
        lat = sketch.GroupedSketch(lat.indptr[: n_rows + 1], lat.buckets[: lat.indptr[n_rows]],
                                   lat.counts[: lat.indptr[n_rows]])
    whole = sketch.select(_pad_groups(sketch.add_grouped(*whole_sketches), 1), 0)
    return Population(endpoints, n, errors, txn, lat, whole, total_n, total_errors, total_txn,
                      len(windows), seconds)


def empty_population(endpoints: np.ndarray) -> Population:
    n_rows = len(endpoints)
    z = np.zeros(n_rows, np.int64)
    return Population(endpoints, z, z.copy(), z.copy(), _pad_groups(sketch.add_grouped(), n_rows),
                      sketch.select(_pad_groups(sketch.add_grouped(), 1), 0), 0, 0, 0, 0, 0.0)


def combine(pops: Sequence[Population], endpoints: np.ndarray | None = None) -> Population:
    """Exact sum of populations (e.g. one per window), aligned on `endpoints`
    (default: the union of theirs)."""
    if endpoints is None:
        endpoints = np.unique(np.concatenate([p.endpoints for p in pops])) if pops else np.empty(0, np.int32)
    endpoints = np.asarray(endpoints, dtype=np.int32)
    if not pops:
        return empty_population(endpoints)
    n_rows = len(endpoints)
    totals = (sum(p.total_n for p in pops), sum(p.total_errors for p in pops), sum(p.total_txn for p in pops),
              sum(p.windows for p in pops), sum(p.seconds for p in pops))
    whole = sketch.merge(*[p.whole for p in pops]) if len(pops) > 1 else pops[0].whole
    if all(len(p.endpoints) == n_rows and np.array_equal(p.endpoints, endpoints) for p in pops):
        if len(pops) == 1:
            p = pops[0]
            return Population(endpoints, p.n, p.errors, p.txn, p.lat, whole, *totals)
        return Population(endpoints, np.sum([p.n for p in pops], axis=0), np.sum([p.errors for p in pops], axis=0),
                          np.sum([p.txn for p in pops], axis=0),
                          _pad_groups(sketch.add_grouped(*[p.lat for p in pops]), n_rows), whole, *totals)
    n = np.zeros(n_rows, np.int64)
    errors = np.zeros(n_rows, np.int64)
    txn = np.zeros(n_rows, np.int64)
    lats = []
    for p in pops:
        if len(p.endpoints) and n_rows:
            pos = np.minimum(np.searchsorted(endpoints, p.endpoints), n_rows - 1)
            rows = np.where(endpoints[pos] == p.endpoints, pos, -1)
        else:
            rows = np.full(len(p.endpoints), -1, dtype=np.int64)
        ok = rows >= 0
        np.add.at(n, rows[ok], p.n[ok])
        np.add.at(errors, rows[ok], p.errors[ok])
        np.add.at(txn, rows[ok], p.txn[ok])
        if np.array_equal(p.endpoints, endpoints):
            lats.append(p.lat)
        else:
            lats.append(sketch.merge_grouped(p.lat, rows, max(n_rows, 1)))
    lat = _pad_groups(sketch.add_grouped(*lats), n_rows)
    return Population(endpoints, n, errors, txn, lat, whole, *totals)


def _scale_sketch(s: sketch.Sketch, f: float) -> sketch.Sketch:
    c = np.rint(s.counts * f).astype(np.int64)
    keep = c > 0
    return sketch.Sketch(s.buckets[keep], c[keep])


def scaled(p: Population, f: float) -> Population:
    """The population with every count multiplied by `f` (rounded): a reweighting, not a merge."""
    if f == 1.0:
        return p
    lat = p.lat
    c = np.rint(lat.counts * f).astype(np.int64)
    entry = sketch.entry_series(lat)
    keep = c > 0
    lat = sketch.group_codes(sketch.encode(entry[keep], lat.buckets[keep]), lat.n_series, c[keep])
    r = lambda a: np.rint(a * f).astype(np.int64)  # noqa: E731
    return Population(p.endpoints, r(p.n), r(p.errors), r(p.txn), lat, _scale_sketch(p.whole, f),
                      int(round(p.total_n * f)), int(round(p.total_errors * f)), int(round(p.total_txn * f)),
                      p.windows, p.seconds)


def time_matched(reference: Sequence[Population], new: Sequence[Population],
                 endpoints: np.ndarray) -> Population:
    """The reference reweighted window by window to the new population's time profile.

    Comparing sums over a span is biased when the two populations are spread
    differently over it (a rolling deploy moves traffic from the stable to the
    new version while a shared slowdown begins: Simpson's paradox). Direct
    standardisation fixes it: each window of the reference counts in
    proportion to the new version's share of traffic in that window, keeping
    the reference's total size. Windows where either side has no traffic are
    left out.
    """
    both = [(r, n) for r, n in zip(reference, new) if r.total_n > 0 and n.total_n > 0]
    if not both:
        return combine([], endpoints)
    ref_total = sum(r.total_n for r, _ in both)
    new_total = sum(n.total_n for _, n in both)
    parts = [scaled(r, (n.total_n / new_total) / (r.total_n / ref_total)) for r, n in both]
    return combine(parts, endpoints)
