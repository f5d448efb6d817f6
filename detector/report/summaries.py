"""Window summaries: what the pictures are drawn from, one small row per closed window.

A `Recorder` listens to a `Core` (`core.window_listeners`) and reduces each
closed window, as the core closes it, to:

- per (service, version) and per service (version "*"): requests, errors
  (status >= 500), completed transactions, latency p50/p95/p99 (exact
  merges of the window's latency sketches, so 1 % relative error);
- per service: the seasonal expectation of volume, error rate and p95
  latency for that window, made before the window is learnt (mostly those
  the seasonal watch judged it against, see `Recorder._seasonal`);
- lines per (service, version, template) of templates first seen recently
  (`new_template_s`), the "new log templates since the deploy".

Rows are kept as columns (numpy) in `Summaries`; a week of 10 s windows for a
few services is a few hundred thousand rows, and a chart is a mask over them.
The recorder never re-reads events: it sees every window once, as the
detector sees it, so live pages and file reports are the same pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detector.aggregate import sketch
from detector.baselines import latency_signal
from detector.aggregate.windows import WindowFacts

ALL = "*"  # the version of a service-total row
QUANTILES = (0.5, 0.95, 0.99)
MAX_DEPLOYS = 1000
_FIELDS = ("start", "service", "version", "requests", "errors", "txns", "p50", "p95", "p99")
_SEASONAL = ("start", "service", "ready", "vol_mean", "vol_std", "err_mean", "err_std", "p95_mean", "p95_std")


@dataclass
class TemplateNote:
    """A template as the pages show it: refreshed from the miner, which may generalise its text."""

    service: str
    text: str
    kind: str
    level: str
    first_seen_ts: float


class Summaries:
    """Columns of window summaries, with string tables for services, versions and templates."""

    def __init__(self, width_s: float, retain_s: float | None = None) -> None:
        self.width_s = float(width_s)
        self.retain_s = retain_s  # None: keep everything (a file report); live pages keep a bounded past
        self.names: list[str] = []
        self._name_id: dict[str, int] = {}
        self._rows: dict[str, list[np.ndarray]] = {f: [] for f in _FIELDS}
        self._seasonal: dict[str, list[np.ndarray]] = {f: [] for f in _SEASONAL}
        self.tpl_rows: list[tuple[float, int, int, str, int]] = []  # start, service, version, template id, lines
        self.templates: dict[str, TemplateNote] = {}
        self._cols: dict[str, np.ndarray] | None = None
        self._scols: dict[str, np.ndarray] | None = None
        self.first_start: float | None = None
        self.last_end: float | None = None
        self._next_trim = float("-inf")

    # --- strings ---

    def name_id(self, s: str | None) -> int:
        if s is None:
            return -1
        i = self._name_id.get(s)
        if i is None:
            i = self._name_id[s] = len(self.names)
            self.names.append(s)
        return i

    def name(self, i: int) -> str | None:
        return None if i < 0 else self.names[i]

    def find(self, s: str | None) -> int:
        return -1 if s is None else self._name_id.get(s, -2)

    # --- adding ---

    def add_rows(self, cols: dict[str, np.ndarray]) -> None:
        for f in _FIELDS:
            self._rows[f].append(cols[f])
        self._cols = None

    def add_seasonal(self, cols: dict[str, np.ndarray]) -> None:
        for f in _SEASONAL:
            self._seasonal[f].append(cols[f])
        self._scols = None

    def add_template_lines(self, start: float, service: int, version: int, template_id: str, lines: int) -> None:
        self.tpl_rows.append((start, service, version, template_id, lines))

    def window_closed(self, start: float, end: float) -> None:
        if self.first_start is None or start < self.first_start:
            self.first_start = start
        if self.last_end is None or end > self.last_end:
            self.last_end = end
        if self.retain_s is not None and end >= self._next_trim:
            self._trim(end - self.retain_s)
            self._next_trim = end + max(self.retain_s / 10, self.width_s)

    def _trim(self, before: float) -> None:
        cols, scols = self.columns(), self.seasonal_columns()
        keep, skeep = cols["start"] >= before, scols["start"] >= before
        self._rows = {f: [cols[f][keep]] for f in _FIELDS}
        self._seasonal = {f: [scols[f][skeep]] for f in _SEASONAL}
        self.tpl_rows = [t for t in self.tpl_rows if t[0] >= before]
        self._cols = self._scols = None
        self.first_start = max(self.first_start or before, before)

    # --- reading ---

    def columns(self) -> dict[str, np.ndarray]:
        """Every row, sorted by window start (partitions close their windows independently)."""
        if self._cols is None:
            self._cols = _sorted({f: (np.concatenate(v) if v else np.empty(0)) for f, v in self._rows.items()})
            self._rows = {f: [self._cols[f]] for f in _FIELDS}
        return self._cols

    def seasonal_columns(self) -> dict[str, np.ndarray]:
        if self._scols is None:
            self._scols = _sorted({f: (np.concatenate(v) if v else np.empty(0)) for f, v in self._seasonal.items()})
            self._seasonal = {f: [self._scols[f]] for f in _SEASONAL}
        return self._scols

    def series(self, service: str, version: str | None, t0: float, t1: float) -> dict[str, np.ndarray]:
        """Rows of one (service, version) (version `ALL`: the service total) with start in [t0, t1)."""
        sid, vid = self.find(service), self.find(version)
        if sid < 0 or vid == -2:
            return {f: np.empty(0) for f in _FIELDS}
        c = _between(self.columns(), t0, t1)
        m = (c["service"] == sid) & (c["version"] == vid)
        return {f: c[f][m] for f in _FIELDS}

    def expectation(self, service: str, t0: float, t1: float) -> dict[str, np.ndarray]:
        c = _between(self.seasonal_columns(), t0, t1)
        m = (c["service"] == self.find(service)) & (c["ready"] > 0)
        return {f: c[f][m] for f in _SEASONAL}

    def versions(self, service: str, t0: float, t1: float) -> dict[str, int]:
        """Requests per known version of `service` in [t0, t1), most first."""
        c = _between(self.columns(), t0, t1)
        m = (c["service"] == self.find(service)) & (c["version"] >= 0)
        out: dict[str, int] = {}
        for v, n in zip(c["version"][m].astype(int).tolist(), c["requests"][m].tolist()):
            name = self.names[v]
            if name != ALL:
                out[name] = out.get(name, 0) + int(n)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def template_lines(self, service: str, t0: float, t1: float, new_since: float) -> list[dict]:
        """Templates of `service` first seen at or after `new_since`, with their lines in [t0, t1)."""
        sid = self.find(service)
        acc: dict[str, dict] = {}
        for start, s, v, tid, n in self.tpl_rows:
            if s != sid or not t0 <= start < t1:
                continue
            note = self.templates.get(tid)
            if note is None or note.first_seen_ts < new_since:
                continue
            row = acc.setdefault(tid, {"template_id": tid, "text": note.text, "kind": note.kind,
                                       "level": note.level, "first_seen_ts": note.first_seen_ts,
                                       "lines": 0, "by_version": {}})
            row["lines"] += n
            ver = self.name(v) or "unknown"
            row["by_version"][ver] = row["by_version"].get(ver, 0) + n
        return sorted(acc.values(), key=lambda r: (-r["lines"], r["template_id"]))


def _sorted(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    start = cols["start"]
    if len(start) < 2 or bool(np.all(start[1:] >= start[:-1])):
        return cols
    order = np.argsort(start, kind="stable")
    return {f: v[order] for f, v in cols.items()}


def _between(cols: dict[str, np.ndarray], t0: float, t1: float) -> dict[str, np.ndarray]:
    """The rows with start in [t0, t1) of columns sorted by start: two binary searches, no full scan."""
    lo, hi = np.searchsorted(cols["start"], [t0, t1], side="left")
    return {f: v[lo:hi] for f, v in cols.items()}


def _slot(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each wanted key in the sorted `keys`, -1 where absent."""
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where((wanted >= 0) & (keys[pos] == wanted), pos, -1)


@dataclass
class Recorder:
    """Reduces one core's closed windows into `summaries` (attach with `Recorder.attach`)."""

    core: object
    summaries: Summaries
    new_template_s: float
    _svc_names: dict[int, int] = field(default_factory=dict)
    _ver_names: dict[int, int] = field(default_factory=dict)  # group version key -> name id
    _tpl_first: dict[int, float] = field(default_factory=dict)
    _tpl_key: dict[int, str] = field(default_factory=dict)  # template index -> its id when first recorded
    deploys: dict[str, object] = field(default_factory=dict)  # deploy id -> DeployEvent seen verifying

    @classmethod
    def attach(cls, core, summaries: Summaries) -> "Recorder":
        ver = core.pipeline.verification
        rec = cls(core, summaries, new_template_s=ver.period_s + ver.baseline_s)
        core.window_listeners.append(rec.observe)
        return rec

    def _local(self, interned: int) -> int:
        i = self._svc_names.get(interned)
        if i is None:
            i = self._svc_names[interned] = self.summaries.name_id(self.core.interner.lookup(interned))
        return i

    def observe(self, w: WindowFacts) -> None:
        core, s = self.core, self.summaries
        for v in core.judge.verifications.values():
            if v.deploy.deploy_id not in self.deploys:
                self.deploys[v.deploy.deploy_id] = v.deploy
                if len(self.deploys) > MAX_DEPLOYS:  # a sidecar runs for months: forget the oldest
                    del self.deploys[next(iter(self.deploys))]
        k = len(w.count)
        if k:
            self._requests(w, k)
        if core.logs is not None:
            self._templates(w)
        s.window_closed(w.start, w.end)

    def _requests(self, w: WindowFacts, k: int) -> None:
        rs, s = self.core.requests, self.summaries
        svc, ver = rs.service[:k].astype(np.int64), rs.version[:k].astype(np.int64)
        active = w.count > 0
        if not active.any():
            return
        # groups: (service, version) for known versions, and (service, ALL)
        key_ver = np.where(ver >= 0, (svc << 22) | (ver + 1), -1)
        key_all = svc << 22
        keys = np.unique(np.concatenate([key_ver[active & (ver >= 0)], key_all[active]]))
        n_g = len(keys)
        g_ver, g_all = _slot(keys, key_ver), _slot(keys, key_all)
        txn_per_series = np.zeros(k)
        if len(w.txn_series):
            ok = w.txn_series < k
            txn_per_series = np.bincount(w.txn_series[ok], weights=w.txn_count[ok], minlength=k)
        # each series counts in its (service, version) group and in its (service, ALL) group:
        # one grouped sum per column over both memberships, and one merge of the latency
        # sketches (exact: integer counts) with every series' entries in both of its groups
        g2 = np.concatenate([g_ver, g_all])
        ok = g2 >= 0
        g2 = g2[ok]
        cols = {name: np.bincount(g2, weights=np.concatenate([x, x])[ok], minlength=n_g)
                for name, x in (("requests", w.count), ("errors", w.errors), ("txns", txn_per_series))}
        lat = w.lat
        n_lat = lat.n_series
        both = sketch.GroupedSketch(np.concatenate([lat.indptr, lat.indptr[1:] + lat.indptr[-1]]),
                                    np.concatenate([lat.buckets, lat.buckets]),
                                    np.concatenate([lat.counts, lat.counts]))  # every series twice
        merged = sketch.merge_grouped(both, np.concatenate([g_ver[:n_lat], g_all[:n_lat]]), n_g)
        q = sketch.quantiles_grouped(merged, QUANTILES)
        is_all = (keys & ((1 << 22) - 1)) == 0
        s.name_id(ALL)  # names get their ids in this order: ALL, then services, then versions
        svc_ids = np.array([self._local(x) for x in (keys >> 22).tolist()], np.int64)
        ver_ids = np.array([self._version(x) for x in (keys & ((1 << 22) - 1)).tolist()], np.int64)
        s.add_rows({"start": np.full(n_g, w.start), "service": svc_ids, "version": ver_ids, **cols,
                    "p50": q[:, 0], "p95": q[:, 1], "p99": q[:, 2]})
        self._seasonal(w, keys[is_all] >> 22, svc_ids[is_all], cols["requests"][is_all])

    def _version(self, key: int) -> int:
        """Name id of a group's version part (0: the service total, else interned version id + 1)."""
        i = self._ver_names.get(key)
        if i is None:
            name = ALL if key == 0 else self.core.interner.lookup(key - 1)
            i = self._ver_names[key] = self.summaries.name_id(name)
        return i

    def _seasonal(self, w: WindowFacts, services: np.ndarray, svc_ids: np.ndarray, n: np.ndarray) -> None:
        """Each service's expectations for this window, made before the window was learnt: those
        the seasonal watch judged the window against (`SeasonalWatch.expected`), where they are
        the page's (every volume; error rates and p95 latencies it judged at the window's own
        weight). The rest, asked of the bank here, are of series the watch did not learn in
        this window (an error rate of a service held by a deploy under verification or inside a
        departure, judged by the watch at the typical weight; a p95 of a service without
        latency), so asking after the learning gives what asking before it gave."""
        seasonal = self.core.seasonal
        e = seasonal.expected
        if e is None or e.window is not w or not np.array_equal(e.services, services):
            raise RuntimeError("the seasonal watch has not judged this window: a Recorder must be called "
                               "after SeasonalWatch.observe of the same window (Core.window_listeners)")
        known = e.known
        if not known.any():
            return
        sel = slice(None) if known.all() else known  # the services the bank knew before this window
        svc_ids, n, idx = svc_ids[sel], n[sel], e.index[sel]
        at = np.full(len(idx), w.start)
        vol, err = e.volume, e.error_rate
        err_ready, err_mean, err_std = err.ready[sel], err.mean[sel], err.std[sel]
        redo = ~e.learnt[sel]
        if redo.any():
            again = seasonal.bank["error_rate"].expect(idx[redo], at[redo], weights=np.maximum(n[redo], 1))
            err_ready, err_mean, err_std = err_ready.copy(), err_mean.copy(), err_std.copy()
            err_ready[redo], err_mean[redo], err_std[redo] = again.ready, again.mean, again.std
        if e.has_latency.all():
            p95_ready, p95_mean, p95_std = e.latency.ready[sel], e.latency.mean[sel], e.latency.std[sel]
        else:  # the watch's latency rows are those of the services with latency, in order
            m = len(idx)
            p95_ready, p95_mean, p95_std = np.zeros(m, bool), np.full(m, np.nan), np.full(m, np.inf)
            has = e.has_latency[sel]
            if has.any():
                pos = np.cumsum(e.has_latency)[e.has_latency & known] - 1
                p95_ready[has], p95_mean[has], p95_std[has] = \
                    e.latency.ready[pos], e.latency.mean[pos], e.latency.std[pos]
            if not has.all():
                again = seasonal.bank[latency_signal(seasonal.quantile)].expect(idx[~has], at[~has])
                p95_ready[~has], p95_mean[~has], p95_std[~has] = again.ready, again.mean, again.std
        self.summaries.add_seasonal({
            "start": at, "service": svc_ids, "ready": vol.ready[sel].astype(np.int8),
            "vol_mean": vol.mean[sel], "vol_std": vol.std[sel], "err_mean": np.where(err_ready, err_mean, np.nan),
            "err_std": err_std, "p95_mean": np.where(p95_ready, p95_mean, np.nan), "p95_std": p95_std})

    def _templates(self, w: WindowFacts) -> None:
        logs, s = self.core.logs, self.summaries
        for wc in logs.closed_counts(w.start, w.end):
            for row in wc.rows:
                idx = row.template_index
                first = self._tpl_first.get(idx)
                if first is None:
                    first = self._tpl_first[idx] = logs.template(idx).first_seen_ts
                if first < w.start - self.new_template_s:
                    continue
                # A template's id follows its text, which Drain may generalise later:
                # rows are keyed by the id it had when first recorded.
                key = self._tpl_key.get(idx)
                if key is None:
                    key = self._tpl_key[idx] = row.template_id
                    info = logs.template(idx)
                    s.templates[key] = TemplateNote(info.service, info.text, info.kind, row.level,
                                                    info.first_seen_ts)
                elif row.level in ("error", "fatal"):
                    s.templates[key].level = row.level
                s.add_template_lines(w.start, s.name_id(row.service), s.name_id(row.version), key, row.count)

    def refresh_templates(self) -> None:
        """Take each template's current text (Drain generalises texts as it sees more lines)."""
        logs = self.core.logs
        if logs is None:
            return
        for idx, key in self._tpl_key.items():
            info = logs.template(idx)
            note = self.summaries.templates[key]
            note.text, note.kind = info.text, info.kind
