"""Service-level totals of closed windows: requests, errors, transactions, a latency quantile.

`rollup_one` is one window's; `rollup_many` answers several windows in one
pass (a replay of quiet history or a backlog closes dozens per batch, and
each window's handful of array operations on a few dozen series costs mostly
numpy's per-call overhead). Every step is a grouped sum of integers (request,
error and transaction counts are int64, summed in float64 far below 2^53;
latency sketches merge by adding integer counts) or a per-group rank
lookup, so a window's totals do not depend on the other windows in the
pass: `rollup_many` gives each window bit for bit what `rollup_one` gives
(tests/baselines/test_rollup.py). A series keeps its service for life
(only its version may be renamed, see `aggregate.series`), so the rollup of
a closed window is the same whenever it is computed.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from detector.aggregate import sketch
from detector.aggregate.windows import WindowFacts


class Rollup(NamedTuple):
    services: np.ndarray  # int64 interned service ids with requests in the window, sorted
    requests: np.ndarray  # float64 per service
    errors: np.ndarray
    txn: np.ndarray
    latency_q: np.ndarray  # the quantile's value (ms), NaN where no latency was recorded


def rollup_one(w: WindowFacts, series_service: np.ndarray, quantile: float) -> Rollup:
    """Window `w`'s totals per service (`series_service`: the service of every series)."""
    k = len(w.count)
    svc_of = series_service[:k].astype(np.int64)
    services = np.unique(svc_of[w.count > 0]) if k else np.empty(0, np.int64)
    if not len(services):
        empty = np.empty(0)
        return Rollup(services, empty, empty, empty, empty)
    slot = np.searchsorted(services, svc_of)
    slot = np.where((slot < len(services)) & (services[np.minimum(slot, len(services) - 1)] == svc_of), slot, -1)
    ok = slot >= 0
    n = np.bincount(slot[ok], weights=w.count[ok], minlength=len(services))
    err = np.bincount(slot[ok], weights=w.errors[ok], minlength=len(services))
    txn = np.zeros(len(services))
    if len(w.txn_series):
        ts_slot = slot[np.minimum(w.txn_series, k - 1)]
        tv = (w.txn_series < k) & (ts_slot >= 0)
        txn = np.bincount(ts_slot[tv], weights=w.txn_count[tv], minlength=len(services))
    lat = sketch.merge_grouped(w.lat, np.where(ok, slot, -1)[: w.lat.n_series], len(services))
    return Rollup(services, n, err, txn, sketch.quantiles_grouped(lat, [quantile])[:, 0])


def rollup_many(windows: Sequence[WindowFacts], series_service: np.ndarray, quantile: float) -> list[Rollup]:
    """`[rollup_one(w, series_service, quantile) for w in windows]` in one pass: each
    (window, service) is one group of the same grouped sums and rank lookups."""
    ks = [len(w.count) for w in windows]
    if not windows or min(ks) == 0 or any(w.lat.n_series > k for w, k in zip(windows, ks)):
        return [rollup_one(w, series_service, quantile) for w in windows]
    m = len(windows)
    base = np.concatenate(([0], np.cumsum(ks)))  # each window's first row in the stacked series
    svc = np.concatenate([series_service[:k] for k in ks]).astype(np.int64)
    count = np.concatenate([w.count for w in windows])
    lo = int(svc.min())
    span = int(svc.max()) - lo + 1
    key = np.repeat(np.arange(m, dtype=np.int64), ks) * span + (svc - lo)  # (window, service), ordered
    groups = np.unique(key[count > 0])
    if not len(groups):  # no requests in any of the windows (a quiet stream between two requests)
        return [rollup_one(w, series_service, quantile) for w in windows]
    pos = np.minimum(np.searchsorted(groups, key), len(groups) - 1)
    group = np.where(groups[pos] == key, pos, -1)
    ok = group >= 0
    n_groups = len(groups)
    n = np.bincount(group[ok], weights=count[ok], minlength=n_groups)
    err = np.bincount(group[ok], weights=np.concatenate([w.errors for w in windows])[ok], minlength=n_groups)
    t_rows = np.concatenate([b + np.minimum(w.txn_series, k - 1) for w, k, b in zip(windows, ks, base[:-1].tolist())])
    t_in = np.concatenate([w.txn_series < k for w, k in zip(windows, ks)])
    t_group = group[t_rows] if len(t_rows) else np.empty(0, np.int64)
    tv = t_in & (t_group >= 0)
    txn = np.bincount(t_group[tv], weights=np.concatenate([w.txn_count for w in windows])[tv], minlength=n_groups)
    rows = np.concatenate([b + np.arange(w.lat.n_series) for w, b in zip(windows, base[:-1].tolist())])
    entry_group = np.repeat(group[rows], np.concatenate([np.diff(w.lat.indptr) for w in windows]))
    keep = entry_group >= 0
    buckets = np.concatenate([w.lat.buckets for w in windows])[keep]
    lat = sketch.group_codes(sketch.encode(entry_group[keep], buckets), n_groups,
                             np.concatenate([w.lat.counts for w in windows])[keep])
    q = sketch.quantiles_grouped(lat, [quantile])[:, 0]
    cut = np.searchsorted(groups // span, np.arange(m + 1)).tolist()
    out = []
    for j in range(m):
        a, z = cut[j], cut[j + 1]
        out.append(Rollup(groups[a:z] - j * span + lo, n[a:z], err[a:z], txn[a:z], q[a:z]))
    return out
