"""A core's closed window -> its partition's `WindowSummary` (pure: reads the core's state).

Every service's totals come from one grouped pass over the window's series
(the same integers and latency sketch as `judge.evidence.population` per
service, without its per-endpoint breakdown, which no reader of a summary
needs), and every service's metric levels from one pass over the metric
series with samples. Latency quantiles and the expected requests are read
only on the wire (other partitions, dashboards): a core that is the whole
fleet publishes nothing, so it does not compute them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from detector.aggregate import sketch
from detector.fleet.summary import MetricLevel, ServiceSummary, TemplateNote, WindowSummary, quantiles_of
from detector.aggregate.windows import WindowFacts

if TYPE_CHECKING:
    from detector.core import Core


def summarize(core: "Core", w: WindowFacts, partition: int, partitions: int, sent: set[str],
              wire: bool = True, ahead: dict | None = None) -> WindowSummary:
    """What partition `partition` publishes for `w`: one summary per service it saw in the window
    (requests, metric samples, log lines or new log templates: a window with events has one). `sent`: template ids already published
    (updated here; each template is published once, when first logged above INFO). Without
    `wire` (the summary stays in this core's own view) the quantiles are NaN and the expected
    requests None: only the wire carries them. `ahead`: window id -> (window, versions left
    out, services, totals) from `service_totals_many`, used when the versions left out are
    still those (the same totals, computed with other windows)."""
    lookup = core.interner.lookup
    rs = core.requests
    k = len(w.count)
    verifying = {o.service: (o.version,) for o in core.judge.verifications.values() if o.open}
    held = ahead.get(id(w)) if ahead is not None else None
    if held is not None and held[0] is w and held[1] == verifying:
        req_services, totals = held[2], held[3]
    else:
        req_services = np.unique(rs.service[:k][w.count > 0]).tolist() if k else []
        totals = _service_totals(w, rs.service, rs.version, req_services, verifying)
    ms, mn, ml = core.metrics.arrays()
    m_k = min(len(w.metric_n), len(ms))
    metric_rows: dict[int, list[int]] = {}  # service -> its metric series with samples, in order
    if m_k:
        live = np.flatnonzero(w.metric_n[:m_k] > 0)
        for sid, m in zip(ms[live].tolist(), live.tolist()):
            metric_rows.setdefault(sid, []).append(m)
    new_templates: dict[str, list[TemplateNote]] = {}
    if core.logs is not None:
        for t in core.logs.templates_above_info(w.end, sent):
            if t.id in sent or t.overflow or t.first_seen_ts >= w.end \
                    or not any(n for lvl, n in t.counts_by_level.items() if lvl != "info"):
                continue
            sent.add(t.id)
            new_templates.setdefault(t.service, []).append(TemplateNote(t.id, t.kind, t.first_seen_ts, t.text))
    names = {lookup(s): s for s in set(req_services) | set(metric_rows)}
    logged = set()  # services seen only in log lines: no volume expectation asked for them
    for sid in np.unique(w.log_service[w.log_count > 0]).tolist():
        if lookup(sid) not in names:
            names[lookup(sid)] = sid
            logged.add(sid)
    for svc in new_templates:
        names.setdefault(svc, -1)
    nan3 = (float("nan"),) * 3
    out = []
    for name in sorted(names):
        sid = names[name]
        if sid in totals:
            n, err, txn, lat = totals[sid]
        else:
            n = err = txn = 0
            lat = None
        expected = None
        if wire and sid >= 0 and sid not in logged and core.seasonal is not None:
            mean, _var, ready = core.seasonal.expected_volume(sid, [w.start])
            expected = float(mean) if ready and math.isfinite(mean) else None
        metrics = []
        if sid >= 0:
            for m in metric_rows.get(sid, ()):
                labels = lookup(int(ml[m])) if int(ml[m]) >= 0 else ""
                metrics.append(MetricLevel(lookup(int(mn[m])), labels, float(w.metric_sum[m]), int(w.metric_n[m])))
        empty = np.empty(0, np.int32)
        out.append(ServiceSummary(
            service=name, requests=n, errors=err, txn=txn,
            lat_buckets=lat.buckets if lat is not None else empty,
            lat_counts=lat.counts if lat is not None else empty.astype(np.int64),
            quantiles=quantiles_of(lat) if wire and lat is not None else nan3,
            expected_requests=expected, metrics=tuple(metrics),
            templates=tuple(sorted(new_templates.get(name, ()), key=lambda t: t.id))))
    return WindowSummary(partition=partition, partitions=partitions, start=w.start, end=w.end,
                         services=tuple(out))


def _service_totals(w: WindowFacts, series_service: np.ndarray, series_version: np.ndarray,
                    services: list[int], verifying: dict[int, tuple[int, ...]],
                    ) -> dict[int, tuple[int, int, int, sketch.Sketch]]:
    """Requests, errors, completed transactions and latency of each of `services` (sorted ids)
    in window `w`, over the series of its established versions (those in `verifying[service]`
    left out), in one grouped pass: per service what `population(window_sums([w]), ...,
    exclude_versions=...)` totals, exactly."""
    if not services:
        return {}
    ids = np.asarray(services, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids, series_service), len(ids) - 1)
    row = np.where(ids[pos] == series_service, pos, -1)
    for sid, versions in verifying.items():
        for v in versions:
            row[(series_service == sid) & (series_version == v)] = -1
    n_rows, k = len(ids), len(w.count)
    rk = row[:k]
    on = rk >= 0
    n = np.bincount(rk[on], weights=w.count[on], minlength=n_rows).astype(np.int64)
    err = np.bincount(rk[on], weights=w.errors[on], minlength=n_rows).astype(np.int64)
    t_row = np.where(w.txn_series < k, row[np.minimum(w.txn_series, k - 1)], -1)  # as window_sums clamps
    t_on = t_row >= 0
    txn = np.bincount(t_row[t_on], weights=w.txn_count[t_on], minlength=n_rows).astype(np.int64)
    l_row = row[sketch.entry_series(w.lat)]
    l_on = l_row >= 0
    lat = sketch.group_codes(sketch.encode(l_row[l_on], w.lat.buckets[l_on]), n_rows, w.lat.counts[l_on])
    return {int(sid): (int(n[i]), int(err[i]), int(txn[i]), sketch.select(lat, i)) for i, sid in enumerate(services)}


def service_totals_many(windows: list[WindowFacts], series_service: np.ndarray, series_version: np.ndarray,
                        verifying: dict[int, tuple[int, ...]]) -> list[tuple[list[int], dict]]:
    """Per window, `summarize`'s services with requests and their `_service_totals`, for several
    windows in one grouped pass: each (window, service) is one group of the same integer sums
    (counts are int64, summed in float64 far below 2^53) and latency counts, so each window's
    totals are exactly its own. For windows closed together (a quiet replay or a backlog):
    the caller checks that the versions left out (`verifying`) are still those."""
    ks = [len(w.count) for w in windows]

    def one_by_one() -> list[tuple[list[int], dict]]:
        out = []
        for w, k in zip(windows, ks):
            services = np.unique(series_service[:k][w.count > 0]).tolist() if k else []
            out.append((services, _service_totals(w, series_service, series_version, services, verifying)))
        return out

    if not windows or min(ks) == 0 or any(w.lat.n_series > k for w, k in zip(windows, ks)):
        return one_by_one()
    m = len(windows)
    base = np.concatenate(([0], np.cumsum(ks))).tolist()
    svc = np.concatenate([series_service[:k] for k in ks]).astype(np.int64)
    count = np.concatenate([w.count for w in windows])
    lo = int(svc.min())
    span = int(svc.max()) - lo + 1
    key = np.repeat(np.arange(m, dtype=np.int64), ks) * span + (svc - lo)
    groups = np.unique(key[count > 0])
    if not len(groups):  # no requests in any of the windows
        return one_by_one()
    pos = np.minimum(np.searchsorted(groups, key), len(groups) - 1)
    group = np.where(groups[pos] == key, pos, -1)
    if verifying:
        ver = np.concatenate([series_version[:k] for k in ks])
        for sid, versions in verifying.items():
            for v in versions:
                group[(svc == sid) & (ver == v)] = -1
    on = group >= 0
    n_groups = len(groups)
    n = np.bincount(group[on], weights=count[on], minlength=n_groups).astype(np.int64)
    err = np.bincount(group[on], weights=np.concatenate([w.errors for w in windows])[on],
                      minlength=n_groups).astype(np.int64)
    t_rows = np.concatenate([b + np.minimum(w.txn_series, k - 1) for w, k, b in zip(windows, ks, base)])
    t_in = np.concatenate([w.txn_series < k for w, k in zip(windows, ks)])
    t_group = np.where(t_in, group[t_rows], -1) if len(t_rows) else np.empty(0, np.int64)
    t_on = t_group >= 0
    txn = np.bincount(t_group[t_on], weights=np.concatenate([w.txn_count for w in windows])[t_on],
                      minlength=n_groups).astype(np.int64)
    rows = np.concatenate([b + np.arange(w.lat.n_series) for w, b in zip(windows, base)])
    l_group = np.repeat(group[rows], np.concatenate([np.diff(w.lat.indptr) for w in windows]))
    l_on = l_group >= 0
    lat = sketch.group_codes(sketch.encode(l_group[l_on], np.concatenate([w.lat.buckets for w in windows])[l_on]),
                             n_groups, np.concatenate([w.lat.counts for w in windows])[l_on])
    cut = np.searchsorted(groups // span, np.arange(m + 1)).tolist()
    out = []
    for j in range(m):
        services = (groups[cut[j]:cut[j + 1]] - j * span + lo).tolist()
        out.append((services, {sid: (int(n[g]), int(err[g]), int(txn[g]), sketch.select(lat, g))
                               for g, sid in enumerate(services, cut[j])}))
    return out
