"""A core's closed window -> its partition's `WindowSummary` (pure: reads the core's state)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from detector.fleet.summary import MetricLevel, ServiceSummary, TemplateNote, WindowSummary, quantiles_of
from detector.judge.evidence import population, window_sums
from detector.aggregate.windows import WindowFacts

if TYPE_CHECKING:
    from detector.core import Core


def summarize(core: "Core", w: WindowFacts, partition: int, partitions: int, sent: set[str]) -> WindowSummary:
    """What partition `partition` publishes for `w`: one summary per service it saw in the window
    (requests or metric samples or new log templates). `sent`: template ids already published
    (updated here; each template is published once, when first logged above INFO)."""
    lookup = core.interner.lookup
    rs = core.requests
    k = len(w.count)
    req_services = np.unique(rs.service[:k][w.count > 0]).tolist() if k else []
    ms, mn, ml = core.metrics.arrays()
    m_k = min(len(w.metric_n), len(ms))
    m_services = np.unique(ms[:m_k][w.metric_n[:m_k] > 0]).tolist() if m_k else []
    new_templates: dict[str, list[TemplateNote]] = {}
    if core.logs is not None:
        for t in core.logs.templates_above_info(w.end, sent):
            if t.id in sent or t.overflow or t.first_seen_ts >= w.end \
                    or not any(n for lvl, n in t.counts_by_level.items() if lvl != "info"):
                continue
            sent.add(t.id)
            new_templates.setdefault(t.service, []).append(TemplateNote(t.id, t.kind, t.first_seen_ts, t.text))
    names = {lookup(s): s for s in set(req_services) | set(m_services)}
    for svc in new_templates:
        names.setdefault(svc, -1)
    verifying = {o.service: (o.version,) for o in core.judge.verifications.values() if o.open}
    sums = window_sums([w], len(rs))
    out = []
    for name in sorted(names):
        sid = names[name]
        if sid in req_services:
            pop = population(sums, rs.service, rs.endpoint, rs.version, sid, exclude_versions=verifying.get(sid, ()))
            n, err, txn, lat = pop.total_n, pop.total_errors, pop.total_txn, pop.whole
        else:
            n = err = txn = 0
            lat = None
        expected = None
        if sid >= 0 and core.seasonal is not None:
            mean, _var, ready = core.seasonal.expected_volume(sid, [w.start])
            expected = float(mean) if ready and math.isfinite(mean) else None
        metrics = []
        if sid >= 0:
            for m in np.flatnonzero((ms[:m_k] == sid) & (w.metric_n[:m_k] > 0)).tolist():
                labels = lookup(int(ml[m])) if int(ml[m]) >= 0 else ""
                metrics.append(MetricLevel(lookup(int(mn[m])), labels, float(w.metric_sum[m]), int(w.metric_n[m])))
        empty = np.empty(0, np.int32)
        out.append(ServiceSummary(
            service=name, requests=n, errors=err, txn=txn,
            lat_buckets=lat.buckets if lat is not None else empty,
            lat_counts=lat.counts if lat is not None else empty.astype(np.int64),
            quantiles=quantiles_of(lat) if lat is not None else (float("nan"),) * 3,
            expected_requests=expected, metrics=tuple(metrics),
            templates=tuple(sorted(new_templates.get(name, ()), key=lambda t: t.id))))
    return WindowSummary(partition=partition, partitions=partitions, start=w.start, end=w.end,
                         services=tuple(out))
