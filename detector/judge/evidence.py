"""Populations: the traffic of a selection of series over a span of windows.

The judge compares populations (new version vs stable version over the same
windows, new version after a deploy vs the service before it). A population
holds per-endpoint requests, errors, completed transactions and the merged
latency sketch, plus service-wide totals; everything is an exact sum of the
closed windows' aggregates.

A verification keeps one population per window and version side (a slice);
its rules read sums of slices over spans of up to a few dozen windows, every
window. `SpanSums` makes those sums cheap without changing them: each slice
is aligned once on the verification's endpoint rows, with its latency as
packed (row, bucket) codes and running sums of its counts, so a span's
counts are the difference of two running sums and its latency sketches are
merged only when a latency rule reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from detector.aggregate import sketch
from detector.aggregate.windows import WindowFacts


class Traffic:
    """What rules read of a population; shared by eager populations and lazily merged spans."""

    endpoints: np.ndarray  # int32 endpoint ids, one per row
    n: np.ndarray  # int64 requests per endpoint row
    errors: np.ndarray  # int64
    txn: np.ndarray  # int64 completed transactions per endpoint row
    lat: sketch.GroupedSketch  # one latency sketch per endpoint row
    whole: sketch.Sketch  # latency of the whole selection
    total_n: int
    total_errors: int
    total_txn: int

    @property
    def error_rate(self) -> float:
        return self.total_errors / self.total_n if self.total_n else float("nan")

    def row(self, endpoint: int) -> int:
        hit = np.flatnonzero(self.endpoints == endpoint)
        return int(hit[0]) if len(hit) else -1

    def sketch_of(self, row: int) -> sketch.Sketch:
        """Row -1 is the whole selection."""
        return self.whole if row < 0 else sketch.select(self.lat, row)


@dataclass
class Population(Traffic):
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


def _among(values: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """np.isin for the few version ids of a selection, without its setup cost."""
    out = np.zeros(len(values), bool)
    for i in ids:
        out |= values == i
    return out


@dataclass
class WindowSums:
    """Closed windows added up per series, ready to be cut into populations.

    Several populations over the same windows (new and stable version, or one
    per service when blaming) share this step.
    """

    count: np.ndarray  # int64 [n_series] requests
    errors: np.ndarray  # int64 [n_series]
    txn_series: np.ndarray  # series of each (window, series, transaction) count, clamped into the window's series
    txn_inside: np.ndarray  # bool: the series lies inside its window's arrays
    txn_count: np.ndarray  # int64
    lat_series: np.ndarray  # int64 series of every latency entry of every window
    lat_buckets: np.ndarray  # int32
    lat_counts: np.ndarray  # int64
    windows: int
    seconds: float


def window_sums(windows: Sequence[WindowFacts], n_series: int) -> WindowSums:
    """Per-series sums of `windows` over the first `n_series` series."""
    count = np.zeros(n_series, np.int64)
    errors = np.zeros(n_series, np.int64)
    seconds = 0.0
    txn_series, txn_count, txn_limit = [], [], []
    lat_series, lat_buckets, lat_counts = [], [], []
    for w in windows:
        seconds += w.end - w.start
        k = len(w.count)
        count[:k] += w.count
        errors[:k] += w.errors
        if len(w.txn_series):
            txn_series.append(w.txn_series)
            txn_count.append(w.txn_count)
            txn_limit.append(np.full(len(w.txn_series), k, np.int64))
        lat_series.append(sketch.entry_series(w.lat))
        lat_buckets.append(w.lat.buckets)
        lat_counts.append(w.lat.counts)
    if txn_series:
        ts, limit = np.concatenate(txn_series), np.concatenate(txn_limit)
        txn = (np.minimum(ts, limit - 1), ts < limit, np.concatenate(txn_count))
    else:
        txn = (np.empty(0, np.int64), np.empty(0, bool), np.empty(0, np.int64))
    if windows:
        lat = tuple(np.concatenate(a) for a in (lat_series, lat_buckets, lat_counts))
    else:
        lat = (np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64))
    return WindowSums(count, errors, *txn, *lat, len(windows), seconds)


def population(
    windows: Sequence[WindowFacts] | WindowSums,
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
    traffic of endpoints not listed still counts in the totals. `windows` may
    be given as their `window_sums` over these series.
    """
    n_series = len(series_service)
    sums = windows if isinstance(windows, WindowSums) else window_sums(windows, n_series)
    if len(sums.count) != n_series:
        raise ValueError(f"window sums cover {len(sums.count)} series, the series table has {n_series}; "
                         "add the windows up again after new series appeared")
    mask = series_service == service
    if versions is not None:
        mask &= _among(series_version, versions)
    if len(exclude_versions):
        mask &= ~_among(series_version, exclude_versions)
    if endpoints is None:
        endpoints = np.unique(series_endpoint[mask]).astype(np.int32)
    n_rows = len(endpoints)
    group = np.full(n_series, -1, dtype=np.int64)
    if n_rows:
        pos = np.minimum(np.searchsorted(endpoints, series_endpoint), n_rows - 1)
        matched = mask & (endpoints[pos] == series_endpoint)
        group[matched] = pos[matched]
    # Windows are added up per series first, then grouped once: the same
    # integers as grouping window by window and adding the results.
    valid = group >= 0
    n = np.bincount(group[valid], weights=sums.count[valid], minlength=n_rows).astype(np.int64)
    errors = np.bincount(group[valid], weights=sums.errors[valid], minlength=n_rows).astype(np.int64)
    total_n = int(sums.count[mask].sum())
    total_errors = int(sums.errors[mask].sum())
    tin = sums.txn_inside & mask[sums.txn_series]
    total_txn = int(sums.txn_count[tin].sum())
    tg = group[sums.txn_series]
    tv = tin & (tg >= 0)
    txn = np.bincount(tg[tv], weights=sums.txn_count[tv], minlength=n_rows).astype(np.int64)
    rows = group[sums.lat_series]
    on_row = rows >= 0
    lat = sketch.group_codes(sketch.encode(rows[on_row], sums.lat_buckets[on_row]), n_rows,
                             sums.lat_counts[on_row])
    in_mask = mask[sums.lat_series]
    whole = sketch.select(sketch.group_codes(sums.lat_buckets[in_mask], 1, sums.lat_counts[in_mask]), 0)
    return Population(endpoints, n, errors, txn, lat, whole, total_n, total_errors, total_txn,
                      sums.windows, sums.seconds)


def _row_map(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each endpoint in `have`, its row in the sorted table `want` (-1: not listed)."""
    if not len(have) or not len(want):
        return np.full(len(have), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(want, have), len(want) - 1)
    return np.where(want[pos] == have, pos, -1).astype(np.int64)


def on_endpoints(p: Traffic, endpoints: np.ndarray) -> Traffic:
    """`p` with its rows on the endpoint table `endpoints` (sorted): rows `p` lacks
    are zero, rows of endpoints not listed are left out (the totals keep them).

    Two populations are compared row by row only once they share a table: the
    new version may reach endpoints the reference never saw (a new route, or a
    flood of paths folded into `other`), and the reverse.
    """
    endpoints = np.asarray(endpoints, dtype=np.int32)
    if len(p.endpoints) == len(endpoints) and np.array_equal(p.endpoints, endpoints):
        return p
    rows = _row_map(np.asarray(p.endpoints), endpoints)
    ok = rows >= 0
    n_rows = len(endpoints)
    counts = np.zeros((3, n_rows), np.int64)
    counts[:, rows[ok]] = np.stack([p.n, p.errors, p.txn])[:, ok]
    lat = p.lat
    entry_rows = rows[sketch.entry_series(lat)] if len(rows) else np.empty(0, np.int64)
    on = entry_rows >= 0
    grouped = sketch.group_codes(sketch.encode(entry_rows[on], lat.buckets[on]), n_rows, lat.counts[on])
    return Population(endpoints, counts[0], counts[1], counts[2], grouped, p.whole, p.total_n, p.total_errors,
                      p.total_txn, getattr(p, "windows", 0), getattr(p, "seconds", 0.0))


class Span(Traffic):
    """Exact sum of slices over a span, aligned on endpoint rows.

    Counts are summed when the span is made; the latency sketches (`lat`, one
    per endpoint row, and `whole`) when first read, since only latency rules
    read them.
    """

    def __init__(self, endpoints: np.ndarray, counts: np.ndarray, totals: tuple[int, int, int],
                 lat: Callable[[], sketch.GroupedSketch], whole: Callable[[], sketch.Sketch]) -> None:
        self.endpoints = endpoints
        self.n, self.errors, self.txn = counts  # the rows of an int64 [3, n_rows] array
        self.total_n, self.total_errors, self.total_txn = totals
        self._make_lat, self._make_whole = lat, whole
        self._lat: sketch.GroupedSketch | None = None
        self._whole: sketch.Sketch | None = None

    @property
    def lat(self) -> sketch.GroupedSketch:
        if self._lat is None:
            self._lat = self._make_lat()
        return self._lat

    @property
    def whole(self) -> sketch.Sketch:
        if self._whole is None:
            self._whole = self._make_whole()
        return self._whole


@dataclass
class _Aligned:
    """One slice on the verification's endpoint rows (rows it lacks are zero)."""

    source: Population
    counts: np.ndarray  # int64 [3, n_rows]: requests, errors, completed transactions
    lat_codes: np.ndarray  # int64 row * NBUCKETS + bucket, one per latency entry on a row
    lat_counts: np.ndarray  # int64, > 0
    # Running sums over this slice and every earlier one of its kind: a span's
    # counts are the difference of two of them.
    cum_counts: np.ndarray
    cum_totals: tuple[int, int, int]  # requests, errors, completed transactions


def _align(p: Population, endpoints: np.ndarray, before: _Aligned | None) -> _Aligned:
    n_rows = len(endpoints)
    entry_series = sketch.entry_series(p.lat)
    if len(p.endpoints) == n_rows and np.array_equal(p.endpoints, endpoints):
        counts = np.stack([p.n, p.errors, p.txn])
        entry_rows = entry_series
    else:
        # Endpoints seen after the slice was made get zero rows; the rows of
        # endpoints the span does not list are left out (totals keep them).
        if len(p.endpoints) and n_rows:
            pos = np.minimum(np.searchsorted(endpoints, p.endpoints), n_rows - 1)
            rows = np.where(endpoints[pos] == p.endpoints, pos, -1)
        else:
            rows = np.full(len(p.endpoints), -1, dtype=np.int64)
        ok = rows >= 0
        counts = np.zeros((3, n_rows), np.int64)
        counts[:, rows[ok]] = np.stack([p.n, p.errors, p.txn])[:, ok]
        entry_rows = np.full(len(entry_series), -1, np.int64)
        known = entry_series < len(rows)
        entry_rows[known] = rows[entry_series[known]]
    on_row = (entry_rows >= 0) & (entry_rows < n_rows)
    totals = (p.total_n, p.total_errors, p.total_txn)
    if before is None:
        cum_counts, cum_totals = counts, totals
    else:
        cum_counts = before.cum_counts + counts
        cum_totals = tuple(b + t for b, t in zip(before.cum_totals, totals))
    return _Aligned(p, counts, sketch.encode(entry_rows[on_row], p.lat.buckets[on_row]), p.lat.counts[on_row],
                    cum_counts, cum_totals)


class SpanSums:
    """Sums of one verification's slices over spans of windows, for its rules.

    `slices` maps a window start to that window's populations by kind ("new",
    "stable"), in window order; a window's slices are added after every
    earlier window's, and the oldest are dropped first. Slice populations stay
    compact and exact (they are what a snapshot keeps); what this object
    derives from them is rebuilt when missing, so it is never saved. Call
    `begin` once per evaluation: spans are memoised within one evaluation,
    slice alignments and running sums across evaluations for as long as the
    endpoint rows stay the same.
    """

    KINDS = ("new", "stable")

    def __init__(self) -> None:
        self._aligned: dict[tuple[float, str], _Aligned] = {}
        self._order: list[float] = []  # window starts in slice order, as aligned
        self._index: dict[float, int] = {}
        self._endpoints = np.empty(0, np.int32)
        self._slices: dict[float, dict[str, Population]] = {}
        self._memo: dict[tuple, Span] = {}

    def begin(self, slices: dict[float, dict[str, Population]], endpoints: np.ndarray) -> None:
        endpoints = np.asarray(endpoints, dtype=np.int32)
        order = list(slices)
        old = self._aligned if self._continues(slices, order, endpoints) else {}
        # A new dict (never edited in place) so that spans handed out earlier keep theirs.
        aligned: dict[tuple[float, str], _Aligned] = {}
        for kind in self.KINDS:
            before = None
            for start in order:
                a = old.get((start, kind))
                if a is None:
                    a = _align(slices[start][kind], endpoints, before)
                aligned[(start, kind)] = before = a
        self._aligned, self._order, self._endpoints, self._slices = aligned, order, endpoints, slices
        self._index = {s: i for i, s in enumerate(order)}
        self._memo = {}

    def _continues(self, slices: dict[float, dict[str, Population]], order: list[float],
                   endpoints: np.ndarray) -> bool:
        """Whether the running sums kept so far still hold: same endpoint rows, the same
        slice objects, the oldest dropped and new ones only added after the rest."""
        if not np.array_equal(endpoints, self._endpoints) or not order or not self._order:
            return False
        first = self._index.get(order[0])
        if first is None:
            return False
        kept = self._order[first:]
        if order[: len(kept)] != kept:
            return False
        return all(self._aligned[(s, kind)].source is slices[s][kind] for s in kept for kind in self.KINDS)

    def _contiguous(self, starts: Sequence[float]) -> bool:
        first, last = self._index.get(starts[0]), self._index.get(starts[-1])
        return first is not None and last is not None and last - first + 1 == len(starts)

    def total(self, kind: str, starts: Sequence[float]) -> Span:
        """Exact sum of the `kind` slices of consecutive windows `starts`."""
        key = (kind, starts[0], starts[-1]) if len(starts) else (kind,)
        if key not in self._memo:
            self._memo[key] = self._total(kind, starts)
        return self._memo[key]

    def _total(self, kind: str, starts: Sequence[float]) -> Span:
        n_rows = len(self._endpoints)
        if not len(starts):
            return Span(self._endpoints, np.zeros((3, n_rows), np.int64), (0, 0, 0),
                        lambda: sketch.group_codes(np.empty(0, np.int64), n_rows), sketch.empty)
        if not self._contiguous(starts):
            raise ValueError(f"span of window starts {list(starts)} is not a run of consecutive slices "
                             f"(slices: {self._order}); pass starts as taken from the slices, in order")
        aligned = self._aligned
        first, last = aligned[(starts[0], kind)], aligned[(starts[-1], kind)]
        counts = last.cum_counts - first.cum_counts + first.counts
        totals = tuple(b - a + t for a, b, t in zip(first.cum_totals, last.cum_totals, (
            first.source.total_n, first.source.total_errors, first.source.total_txn)))

        def lat() -> sketch.GroupedSketch:
            parts = [aligned[(s, kind)] for s in starts]
            return sketch.group_codes(np.concatenate([a.lat_codes for a in parts]), n_rows,
                                      np.concatenate([a.lat_counts for a in parts]))

        def whole() -> sketch.Sketch:
            wholes = [aligned[(s, kind)].source.whole for s in starts]
            return sketch.merge(*wholes) if len(wholes) > 1 else wholes[0]

        return Span(self._endpoints, counts, totals, lat, whole)
