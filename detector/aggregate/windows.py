"""Event-time tumbling windows: assignment, watermarks, per-window aggregates.

A window [k*width_s, (k+1)*width_s) closes when the watermark (the smallest,
over input sources, of the largest event time seen minus `lateness_s`) passes
its end. Events for an already closed window are counted as late and never
folded in. Within the lateness, arrival order does not change any result:
every aggregate is a sum (counts, sketch bucket counts), min or max.

Per window and request series (service, endpoint, version): requests, errors
(status >= 500), latency sketch bucket counts, completed transactions by name.
Transaction names are capped per service (txnnames.py).
Per metric series (service, name, labels): n, sum, min, max. Log lines by
(service, version, level). Rollups are reductions over the series tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detector.aggregate import sketch
from detector.aggregate.grouping import unique_counts
from detector.config import Limits
from detector.ingest.columns import DecodedBatch, LogColumns, MetricColumns, RequestColumns
from detector.aggregate.series import MetricSeries, RequestSeries
from detector.aggregate.txnnames import TxnNames

_TXN_SHIFT = 21


@dataclass
class WindowFacts:
    """Everything one closed window holds; arrays are indexed by series."""

    start: float
    end: float
    count: np.ndarray  # int64 [n_series] requests
    errors: np.ndarray  # int64 [n_series] status >= 500
    lat: sketch.GroupedSketch  # latency sketch per series
    txn_series: np.ndarray  # int64 [m]
    txn_name: np.ndarray  # int32 [m] interned txn name
    txn_count: np.ndarray  # int64 [m]
    metric_n: np.ndarray  # int64 [n_metric_series]
    metric_sum: np.ndarray
    metric_min: np.ndarray
    metric_max: np.ndarray
    log_service: np.ndarray  # int32 [k]
    log_version: np.ndarray  # int32 [k]
    log_level: np.ndarray  # int8 [k]
    log_count: np.ndarray  # int64 [k]

    def count_for(self, n_series: int) -> np.ndarray:
        return _pad(self.count, n_series)

    def errors_for(self, n_series: int) -> np.ndarray:
        return _pad(self.errors, n_series)


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    out = np.zeros(n, dtype=a.dtype)
    out[: len(a)] = a
    return out


def _grow(a: np.ndarray, n: int, fill: float = 0) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full(max(n, 2 * len(a)), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


def _distinct(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes over a list of code chunks and how often each occurs."""
    if not chunks:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    uniq, counts = unique_counts(np.concatenate(chunks))
    return uniq.astype(np.int64), counts


@dataclass
class _OpenWindow:
    """Accumulates one open window. Dense arrays grow with the series tables."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(64, np.int64))
    errors: np.ndarray = field(default_factory=lambda: np.zeros(64, np.int64))
    lat_codes: list = field(default_factory=list)  # arrays of series*NUM_BUCKETS+bucket
    lat_counts: list = field(default_factory=list)
    lat_rows: int = 0
    txn_codes: list = field(default_factory=list)
    m_n: np.ndarray = field(default_factory=lambda: np.zeros(16, np.int64))
    m_sum: np.ndarray = field(default_factory=lambda: np.zeros(16, np.float64))
    m_min: np.ndarray = field(default_factory=lambda: np.full(16, np.inf))
    m_max: np.ndarray = field(default_factory=lambda: np.full(16, -np.inf))
    log_codes: list = field(default_factory=list)

    def add_requests(self, s: np.ndarray, err: np.ndarray, buckets: np.ndarray, txn: np.ndarray, n_series: int) -> None:
        self.count = _grow(self.count, n_series)
        self.errors = _grow(self.errors, n_series)
        self.count[: n_series] += np.bincount(s, minlength=n_series)[:n_series]
        if err.any():
            self.errors[: n_series] += np.bincount(s[err], minlength=n_series)[:n_series]
        codes = s * sketch.NBUCKETS + buckets
        self.lat_codes.append(codes)
        self.lat_counts.append(None)
        self.lat_rows += len(codes)
        if self.lat_rows > 262_144:
            self._compact()
        has_txn = txn >= 0
        if has_txn.any():
            self.txn_codes.append((s[has_txn] << _TXN_SHIFT) | txn[has_txn].astype(np.int64))

    def _compact(self) -> None:
        codes, counts = self._lat_merged()
        self.lat_codes, self.lat_counts = [codes], [counts]
        self.lat_rows = len(codes)

    def _lat_merged(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (series, bucket) codes with their counts."""
        if not self.lat_codes:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        codes = np.concatenate(self.lat_codes)
        weights = np.concatenate(
            [np.ones(len(c), np.int64) if w is None else w for c, w in zip(self.lat_codes, self.lat_counts)]
        )
        return unique_counts(codes, weights)

    def add_metrics(self, m: np.ndarray, value: np.ndarray, n_mseries: int) -> None:
        self.m_n = _grow(self.m_n, n_mseries)
        self.m_sum = _grow(self.m_sum, n_mseries)
        self.m_min = _grow(self.m_min, n_mseries, np.inf)
        self.m_max = _grow(self.m_max, n_mseries, -np.inf)
        np.add.at(self.m_n, m, 1)
        np.add.at(self.m_sum, m, value)
        np.minimum.at(self.m_min, m, value)
        np.maximum.at(self.m_max, m, value)

    def add_logs(self, codes: np.ndarray) -> None:
        self.log_codes.append(codes)

    def to_state(self) -> dict[str, np.ndarray]:
        """The window as plain arrays for a state snapshot, chunk lists merged; the window is not modified.

        Dense arrays keep their grown length: their tail is not all zeros
        (`m_min` is +inf there), and `close` reads it when later series appear.
        """
        lat_codes, lat_counts = self._lat_merged()
        txn_codes, txn_counts = _distinct(self.txn_codes)
        log_codes, log_counts = _distinct(self.log_codes)
        return {"count": self.count, "errors": self.errors, "lat_codes": lat_codes, "lat_counts": lat_counts,
                "txn_codes": txn_codes, "txn_counts": txn_counts, "m_n": self.m_n, "m_sum": self.m_sum,
                "m_min": self.m_min, "m_max": self.m_max, "log_codes": log_codes, "log_counts": log_counts}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "_OpenWindow":
        """Inverse of `to_state`: a window that closes to the same `WindowFacts`."""
        win = cls(count=arrays["count"], errors=arrays["errors"], m_n=arrays["m_n"], m_sum=arrays["m_sum"],
                  m_min=arrays["m_min"], m_max=arrays["m_max"])
        if len(arrays["lat_codes"]):
            win.lat_codes, win.lat_counts = [arrays["lat_codes"]], [arrays["lat_counts"]]
            win.lat_rows = len(arrays["lat_codes"])
        # transaction and log codes are counted by repetition when the window closes
        if len(arrays["txn_codes"]):
            win.txn_codes = [np.repeat(arrays["txn_codes"], arrays["txn_counts"])]
        if len(arrays["log_codes"]):
            win.log_codes = [np.repeat(arrays["log_codes"], arrays["log_counts"])]
        return win

    def close(self, start: float, end: float, n_series: int, n_mseries: int) -> WindowFacts:
        codes, counts = self._lat_merged()
        lat = sketch.group_codes(codes, n_series, counts)
        if self.txn_codes:
            t_uniq, t_counts = unique_counts(np.concatenate(self.txn_codes))
        else:
            t_uniq, t_counts = np.empty(0, np.int64), np.empty(0, np.int64)
        if self.log_codes:
            l_uniq, l_counts = unique_counts(np.concatenate(self.log_codes))
        else:
            l_uniq, l_counts = np.empty(0, np.int64), np.empty(0, np.int64)
        return WindowFacts(
            start=start,
            end=end,
            count=_pad(self.count, n_series).copy(),
            errors=_pad(self.errors, n_series).copy(),
            lat=lat,
            txn_series=t_uniq >> _TXN_SHIFT,
            txn_name=(t_uniq & ((1 << _TXN_SHIFT) - 1)).astype(np.int32),
            txn_count=t_counts.astype(np.int64),
            metric_n=_pad(self.m_n, n_mseries).copy(),
            metric_sum=_pad(self.m_sum, n_mseries).copy(),
            metric_min=_pad(self.m_min, n_mseries).copy(),
            metric_max=_pad(self.m_max, n_mseries).copy(),
            log_service=(l_uniq >> 24).astype(np.int32),
            log_version=(((l_uniq >> 3) & ((1 << 21) - 1)) - 1).astype(np.int32),
            log_level=(l_uniq & 7).astype(np.int8),
            log_count=l_counts.astype(np.int64),
        )


def empty_window(start: float, end: float, n_series: int, n_mseries: int) -> WindowFacts:
    """A closed window without any event: a partition's part of a window only other partitions
    had events in (`detector.fleet.gate`)."""
    return _OpenWindow().close(start, end, n_series, n_mseries)


class WindowStore:
    """Open windows of one partition, its watermark and its late-event count."""

    def __init__(self, width_s: float, lateness_s: float, requests: RequestSeries, metrics: MetricSeries,
                 txn_names: TxnNames | None = None) -> None:
        self.width_s = float(width_s)
        self.lateness_s = float(lateness_s)
        self.requests = requests
        self.metrics = metrics
        # transaction names counted per service (None: a store of its own with the default cap)
        self.txn_names = txn_names or TxnNames(requests.interner, Limits().max_txn_names_per_service)
        self.open: dict[int, _OpenWindow] = {}
        self.closed_before = None  # window index: every window < this one is closed
        self.max_ts: dict[str, float] = {}
        self.late = 0
        self.events = 0

    # --- watermark ---

    def observe(self, source: str, max_ts: float | None) -> None:
        if max_ts is not None and max_ts > self.max_ts.get(source, -np.inf):
            self.max_ts[source] = max_ts

    @property
    def watermark(self) -> float | None:
        if not self.max_ts:
            return None
        return min(self.max_ts.values()) - self.lateness_s

    # --- ingestion ---

    def _split(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window index per row and the mask of rows that are not late."""
        w = np.floor(ts / self.width_s).astype(np.int64)
        if self.closed_before is None:
            return w, np.ones(len(w), dtype=bool)
        ok = w >= self.closed_before
        self.late += int(len(w) - ok.sum())
        return w, ok

    def _windows(self, w: np.ndarray):
        if len(w) == 0:
            return
        lo, hi = int(w.min()), int(w.max())
        if lo == hi:
            yield lo, slice(None)
            return
        for k in np.unique(w).tolist():
            yield k, w == k

    def _window(self, k: int) -> _OpenWindow:
        win = self.open.get(k)
        if win is None:
            win = self.open[k] = _OpenWindow()
        return win

    def add_requests(self, r: RequestColumns) -> None:
        if not len(r):
            return
        w, ok = self._split(r.ts)
        if not ok.all():
            r, w = r.take(ok), w[ok]
        s = self.requests.map(r.service, r.endpoint, r.version, now=float(r.ts.max()) if len(r.ts) else None)
        n_series = len(self.requests)
        err = r.status >= 500
        buckets = sketch.bucket_index(r.latency_ms).astype(np.int64)
        # capped by the series' service (already `other` past limits.max_services)
        txn = self.txn_names.map(self.requests.service[s], r.txn)
        for k, sel in self._windows(w):
            self._window(k).add_requests(s[sel], err[sel], buckets[sel], txn[sel], n_series)
        self.events += len(w)

    def add_metrics(self, m: MetricColumns) -> None:
        if not len(m):
            return
        w, ok = self._split(m.ts)
        if not ok.all():
            m, w = m.take(ok), w[ok]
        idx = self.metrics.map(m.service, m.name, m.labels)
        n = len(self.metrics)
        for k, sel in self._windows(w):
            self._window(k).add_metrics(idx[sel], m.value[sel], n)
        self.events += len(w)

    def add_logs(self, logs: LogColumns) -> np.ndarray:
        """Folds log counts in; returns the not-late mask so template mining sees the same rows."""
        if not len(logs):
            return np.ones(0, dtype=bool)
        w, ok = self._split(logs.ts)
        wk, svc, ver, lvl = w[ok], logs.service[ok], logs.version[ok], logs.level[ok]
        codes = (svc.astype(np.int64) << 24) | ((ver.astype(np.int64) + 1) << 3) | lvl.astype(np.int64)
        for k, sel in self._windows(wk):
            self._window(k).add_logs(codes[sel])
        self.events += int(ok.sum())
        return ok

    def add(self, batch: DecodedBatch, source: str | None = "default") -> np.ndarray:
        """Fold a batch in. `source` names the input whose progress moves the watermark;
        None for a control stream (deploy events only) that must never hold it back."""
        self.add_requests(batch.requests)
        self.add_metrics(batch.metrics)
        ok = self.add_logs(batch.logs)
        if source is not None:
            self.observe(source, batch.max_ts())
        return ok

    # --- closing ---

    def close_ready(self, watermark: float | None = None) -> list[WindowFacts]:
        """Close, in time order, every open window whose end is <= the watermark."""
        wm = self.watermark if watermark is None else watermark
        if wm is None or not np.isfinite(wm):  # -inf: a source with data still unread holds it back
            return []
        upto = int(np.floor(wm / self.width_s))  # windows < upto end at or before wm
        if self.closed_before is None or upto > self.closed_before:
            self.closed_before = upto if self.closed_before is None else max(self.closed_before, upto)
        ready = sorted(k for k in self.open if k < self.closed_before)
        out = []
        for k in ready:
            win = self.open.pop(k)
            out.append(win.close(k * self.width_s, (k + 1) * self.width_s, len(self.requests), len(self.metrics)))
        return out

    def close_all(self) -> list[WindowFacts]:
        """End of input (replay): close whatever is open."""
        if not self.open:
            return []
        last = max(self.open) + 1
        return self.close_ready(last * self.width_s)
