"""`LogTemplates`: the log step of the core, from log columns to findings.

Usage by the core, per partition:

    templates = LogTemplates(LogSettings(window_s=pipeline.windows.width_s, ...))
    idx = templates.add_batch(batch.logs, interner)      # template index per row
    for w in templates.close_windows(watermark):          # WindowTemplateCounts
        for deploy in open_verifications(w):             # DeployContext
            findings += templates.findings(deploy, w.start_ts)
    snapshot = templates.to_bytes()
    templates = LogTemplates.from_bytes(snapshot, settings)

- `add_batch` masks and mines every message (one `ServiceMiner` per
  service), updates each template's first/last seen time, level counts and
  per-version first sighting, and counts lines per window by (template,
  version, level). Service and version ids of the caller's interner are
  translated to strings once per distinct id per batch; the state keeps its
  own string table, so it does not depend on the caller's interner.
- `close_windows(upto_ts)` closes the windows ending at or before `upto_ts`
  and returns their counts with strings and public template ids;
  `close_all()` closes everything at the end of a replay.
- `findings(deploy, window_start)` evaluates one closed window against a
  deploy (`findings.evaluate`): `log_novelty` and `log_errors` findings,
  each with its scope (version / service / shared) and evidence text.
  Calling it once per closed window and open deploy reports each novel
  template once; calling it again for the same window returns the same
  findings (same ids downstream), so a replay or a restart repeats, never
  invents.
- `template(idx)` / `template_by_id(id)` / `templates(service)`: TemplateInfo.
- `to_bytes` / `from_bytes`: the whole state as orjson (format below). It is
  never unpickled: restoring parses JSON and rebuilds the miners' templates
  from plain lists, validating shapes and ranges, so a snapshot written by
  someone else can at worst be rejected with a ValueError.

Snapshot format (version 2): {"format": 2, "masking": masking rules version,
"miner": {sim_th, word_variants}, "window_s", "strings": [str], "miners":
{service string id: miner state}, "templates": [registry rows], "counts":
window counts, "lines": int}.

Template ids are hashes of masked text, so a snapshot is only valid for the
masking rules that wrote it: a change of the rules bumps
`masking.MASKING_VERSION`, and a snapshot of another version (or of format 1,
written with the drain3 miner) is refused with `SnapshotVersionError` (a
ValueError) that says so. A core restore (`detector.state`) then keeps everything
else and starts the log templates empty, with the reason in
`cold_start_reason`: templates are relearnt within minutes; a deploy judged
in the first `baseline_s` after the upgrade has log history only from the
restart on (no log findings with fewer than `min_baseline_lines` before it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from detector.ingest.columns import LEVEL_FATAL, LEVEL_NAMES, LogColumns
from detector.ingest.interner import Interner
from detector.logs.counts import WindowArrays, WindowCounts
from detector.logs.findings import DeployContext, TemplateFinding, evaluate
from detector.logs.masking import MASKING_VERSION
from detector.logs.miner import ServiceMiner
from detector.logs.pending import PendingLines
from detector.logs.registry import TemplateInfo, TemplateRegistry
from detector.logs.settings import LogSettings

SNAPSHOT_FORMAT = 2
OLD_FORMATS = (1,)  # format 1: masking rules v1 and a drain3 prefix tree


# The level columns above INFO, as a slice: levels are in order of severity, INFO the lowest
_ABOVE_INFO = slice(LEVEL_NAMES.index("info") + 1, None)


# A window of at most this many lines is split by service in plain Python.
_SMALL_LINES = 64


class SnapshotVersionError(ValueError):
    """A well-formed snapshot of other masking rules or an older format: its template ids are not ours."""


@dataclass(frozen=True)
class TemplateCount:
    service: str
    version: str | None
    level: str  # "info", "warn", "error" or "fatal"
    template_id: str
    template_index: int
    count: int


@dataclass(frozen=True)
class WindowTemplateCounts:
    """Lines per (service, version, level, template) in one closed window."""

    start_ts: float
    end_ts: float
    rows: tuple[TemplateCount, ...]


class LogTemplates:
    """Template mining, per-window template counts and log findings for one partition."""

    def __init__(self, settings: LogSettings | None = None) -> None:
        self.settings = settings or LogSettings()
        self._strings = Interner()
        self._registry = TemplateRegistry(self._strings)
        self._miners: dict[int, ServiceMiner] = {}
        self._counts = WindowCounts(self.settings.window_s, self.settings.history_s)
        self._pending = PendingLines(self.settings.window_s)  # deferred lines (defer_batch)
        self.lines = 0
        # Why this state started empty on a restore (a snapshot of other masking rules), else None.
        self.cold_start_reason: str | None = None

    # --- ingestion ---

    def add_batch(self, logs: LogColumns, interner: Interner) -> np.ndarray:
        """Mine and count one batch; returns the template index of every row (int32)."""
        n = len(logs)
        tpl = np.empty(n, np.int32)
        if not n:
            return tpl
        svc, ver, level, ts = self._columns(logs, interner)
        tpl[:] = self._ingest(ts, svc, ver, level, logs.message)
        self.lines += n
        return tpl

    def defer_batch(self, logs: LogColumns, interner: Interner) -> None:
        """Hold one batch until its windows close; `close_windows` mines and counts it then
        (see `detector.logs.pending`: the same template ids however the lines were batched).
        Rows for a window already closed are late: counted in `late_rows`, never mined."""
        if not len(logs):
            return
        svc, ver, level, ts = self._columns(logs, interner)
        msgs = logs.message
        cb = self._counts.closed_before
        if cb is not None:
            ok = np.floor(ts / self.settings.window_s) >= cb
            if not ok.all():
                self._counts.late_rows += int(len(ok) - ok.sum())
                keep = np.flatnonzero(ok)
                svc, ver, level, ts = svc[keep], ver[keep], level[keep], ts[keep]
                msgs = [msgs[i] for i in keep.tolist()]
            if not len(ts):
                return
        self._pending.add(ts, svc, ver, level, msgs)
        self.lines += len(ts)

    def _columns(self, logs: LogColumns, interner: Interner) -> tuple[np.ndarray, ...]:
        """(service, version, level, ts) of the rows with this state's own string ids."""
        svc = self._translate(logs.service, interner, absent="")
        ver = self._translate(logs.version, interner, absent=None)
        level = np.clip(logs.level.astype(np.int64), 0, LEVEL_FATAL)
        return svc, ver, level, np.asarray(logs.ts, dtype=np.float64)

    def _ingest(self, ts: np.ndarray, svc: np.ndarray, ver: np.ndarray, level: np.ndarray,
                msgs: list[str]) -> np.ndarray:
        """Mine, observe and count rows in arrival order; their template indices."""
        tpl = np.empty(len(ts), np.int32)
        if not len(ts):
            return tpl
        if svc.min() == svc.max():
            tpl[:] = self._assign(int(svc[0]), msgs)
        elif len(ts) <= _SMALL_LINES:  # as below: services in increasing id, lines in arrival order
            rows_of: dict[int, list[int]] = {}
            for i, s in enumerate(svc.tolist()):
                rows_of.setdefault(s, []).append(i)
            for s in sorted(rows_of):
                rows = rows_of[s]
                tpl[rows] = self._assign(s, [msgs[i] for i in rows])
        else:
            order = np.argsort(svc, kind="stable")
            s_sorted = svc[order]
            cuts = np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1
            for rows in np.split(order, cuts):
                tpl[rows] = self._assign(int(svc[rows[0]]), [msgs[i] for i in rows.tolist()])
        self._registry.observe(tpl, ts, ver, level)
        self._counts.add(ts, tpl, ver, level)
        return tpl

    def _translate(self, ids: np.ndarray, interner: Interner, absent: str | None) -> np.ndarray:
        uniq, inv = np.unique(ids, return_inverse=True)
        local = []
        for i in uniq.tolist():
            s = interner.lookup(i)
            if s is None:
                s = absent
            local.append(-1 if s is None else self._strings.intern(s))
        return np.asarray(local, dtype=np.int32)[inv]

    def _assign(self, service: int, messages: list[str]) -> list[int]:
        miner = self._miners.get(service)
        if miner is None:
            miner = self._miners[service] = self._new_miner(service)
        out = miner.assign(messages)
        if miner.changed:
            for idx in sorted(miner.changed):
                self._registry.set_text(idx, " ".join(miner.tokens_of(idx)))
            miner.changed.clear()
        return out

    def _new_miner(self, service: int, state: dict | None = None) -> ServiceMiner:
        registry = self._registry

        def allocate(tokens: tuple[str, ...]) -> int:
            return registry.add(service, tokens)

        if state is None:
            return ServiceMiner(self.settings, allocate)
        return ServiceMiner.from_state(state, self.settings, allocate)

    # --- windows and findings ---

    def close_windows(self, upto_ts: float) -> list[WindowTemplateCounts]:
        """Close every window ending at or before `upto_ts`; their counts, oldest first.
        Deferred lines are mined window by window, each window's counts read before the
        next window's lines are mined."""
        out: list[WindowTemplateCounts] = []
        if math.isfinite(upto_ts):
            for k, rows in self._pending.take_before(math.floor(upto_ts / self.settings.window_s)):
                self._ingest(*rows.arrays())
                out.extend(self._window_counts(w) for w in self._counts.close((k + 1) * self.settings.window_s))
        out.extend(self._window_counts(w) for w in self._counts.close(upto_ts))
        return out

    def closed_counts(self, start_ts: float, end_ts: float) -> list[WindowTemplateCounts]:
        """Counts of the retained closed windows starting in [start_ts, end_ts), oldest first."""
        return [self._window_counts(w) for w in self._counts.between(start_ts, end_ts)]

    def close_all(self) -> list[WindowTemplateCounts]:
        """End of input (replay): close every open window."""
        last = max([k for k in (self._pending.last(), max(self._counts.open, default=None)) if k is not None],
                   default=None)
        return [] if last is None else self.close_windows((last + 1) * self.settings.window_s)

    def _window_counts(self, w: WindowArrays) -> WindowTemplateCounts:
        reg, lookup = self._registry, self._strings.lookup
        rows = tuple(
            TemplateCount(service=lookup(reg.service[t]) or "", version=lookup(v), level=LEVEL_NAMES[lv],
                          template_id=reg.tid[t], template_index=t, count=c)
            for t, v, lv, c in zip(w.tpl.tolist(), w.version.tolist(), w.level.tolist(), w.count.tolist())
        )
        return WindowTemplateCounts(start_ts=w.start_ts, end_ts=w.end_ts, rows=rows)

    def findings(self, deploy: DeployContext, window_start: float) -> list[TemplateFinding]:
        """Novelty and error-shift findings for `deploy` in the closed window starting at `window_start`."""
        if not self._counts.is_closed(window_start):
            raise ValueError(f"the log window starting at {window_start} is not closed yet "
                             f"(windows close up to the watermark); call close_windows before findings")
        k = math.floor(window_start / self.settings.window_s + 1e-9)
        window = self._counts.closed.get(k)
        if window is None:  # no log lines in that window, or older than history_s
            return []
        return evaluate(deploy, window, self._counts, self._registry, self.settings)

    # --- templates ---

    def template(self, idx: int) -> TemplateInfo:
        return self._registry.info(int(idx))

    def template_by_id(self, template_id: str) -> TemplateInfo | None:
        idx = self._registry.by_id.get(template_id)
        return None if idx is None else self._registry.info(idx)

    def templates(self, service: str | None = None) -> list[TemplateInfo]:
        reg = self._registry
        if service is None:
            return [reg.info(i) for i in range(len(reg))]
        sid = self._strings.get(service)
        return [reg.info(i) for i in range(len(reg)) if reg.service[i] == sid]

    def templates_above_info(self, before_ts: float, skip_ids: set[str] | frozenset[str] = frozenset()
                             ) -> list[TemplateInfo]:
        """Templates first seen before `before_ts` that logged a line above INFO, but those whose id
        is in `skip_ids`, in index order. The fleet summary asks every closed window for the few
        it has not published yet: the candidates are picked on the registry's arrays, and only
        theirs are described."""
        reg = self._registry
        n = len(reg)
        if not n:
            return []
        hits = np.flatnonzero((reg._first[:n] < before_ts) & reg._levels[:n, _ABOVE_INFO].any(axis=1))
        return [reg.info(i) for i in hits.tolist() if reg.tid[i] not in skip_ids and not reg.overflow[i]]

    def __len__(self) -> int:
        return len(self._registry)

    @property
    def stats(self) -> dict[str, int]:
        miners = self._miners.values()
        return {
            "lines": self.lines,
            "templates": len(self._registry),
            "memo_hits": sum(m.memo_hits for m in miners),
            "memo_entries": sum(m.memo_entries for m in miners),
            "mined_lines": sum(m.mined_lines for m in miners),
            "overflow_lines": sum(m.overflow_lines for m in miners),
            "late_rows": self._counts.late_rows,
            "open_windows": len(self._counts.open),
            "pending_lines": len(self._pending),
            "closed_windows": len(self._counts.closed),
        }

    # --- state ---

    def to_bytes(self) -> bytes:
        state = {
            "format": SNAPSHOT_FORMAT,
            "masking": MASKING_VERSION,
            "miner": self.settings.miner_params(),
            "window_s": self.settings.window_s,
            "strings": self._strings.strings(),
            "miners": {str(svc): m.to_state() for svc, m in self._miners.items()},
            "templates": self._registry.to_state(),
            "counts": self._counts.to_state(),
            "pending": self._pending.to_state(),
            "lines": self.lines,
        }
        return orjson.dumps(state)

    @classmethod
    def from_bytes(cls, data: bytes, settings: LogSettings | None = None) -> "LogTemplates":
        """Restore from `to_bytes` output; ValueError says what is wrong with a bad snapshot."""
        settings = settings or LogSettings()
        try:
            state = orjson.loads(data)
            if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
                got = state.get("format") if isinstance(state, dict) else type(state).__name__
                if got in OLD_FORMATS:
                    raise SnapshotVersionError(
                        f"log template snapshot format {got} was written by an older version with other masking "
                        f"rules and miner (this version writes format {SNAPSHOT_FORMAT}, masking rules "
                        f"v{MASKING_VERSION}); its template ids would not match the ones mined from now on")
                raise ValueError(f"unsupported snapshot format {got!r}, expected {SNAPSHOT_FORMAT}")
            if state.get("masking") != MASKING_VERSION:
                raise SnapshotVersionError(
                    f"snapshot was written with masking rules v{state.get('masking')!r}, this version masks with "
                    f"v{MASKING_VERSION}; its template ids would not match the ones mined from now on")
            return cls._restore(state, settings)
        except SnapshotVersionError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"log template snapshot is not valid ({type(e).__name__}: {e}); "
                             "discard it to start with empty template state") from None

    @classmethod
    def _restore(cls, state: dict, settings: LogSettings) -> "LogTemplates":
        if state["miner"] != settings.miner_params() or float(state["window_s"]) != settings.window_s:
            raise ValueError(f"snapshot was written with miner={state['miner']} window_s={state['window_s']}, "
                             f"settings say miner={settings.miner_params()} window_s={settings.window_s}; "
                             "restore with the snapshot's settings")
        self = cls(settings)
        strings = state["strings"]
        if not all(isinstance(s, str) for s in strings) or len(set(strings)) != len(strings):
            raise ValueError("string table must be a list of distinct strings")
        for s in strings:
            self._strings.intern(s)
        texts: dict[int, tuple[str, ...]] = {}
        owner: dict[int, int] = {}
        for key, mstate in state["miners"].items():
            svc = int(key)
            if not 0 <= svc < len(strings):
                raise ValueError(f"miner for unknown service string id {svc}")
            miner = self._miners[svc] = self._new_miner(svc, mstate)
            for idx in miner.indices():
                if idx in texts:
                    raise ValueError(f"template index {idx} belongs to two clusters")
                texts[idx] = miner.tokens_of(idx)
                owner[idx] = svc
        rows = state["templates"]
        if sorted(texts) != list(range(len(rows))):
            raise ValueError(f"{len(rows)} templates but clusters name indices {sorted(texts)[:10]}...")
        for i, row in enumerate(rows):
            if int(row[0]) != owner[i]:
                raise ValueError(f"template {i} is owned by another service's miner")
        self._registry.load_state(rows, texts)
        self._counts = WindowCounts.from_state(state["counts"], settings.window_s, settings.history_s)
        for w in [*self._counts.closed.values()]:
            if w.tpl.size and int(w.tpl.max()) >= len(rows):
                raise ValueError("window counts name a template index that does not exist")
        for w in self._counts.open.values():
            codes, _ = w.merged()
            if codes.size and int(codes.max() >> 24) >= len(rows):
                raise ValueError("open window counts name a template index that does not exist")
        # absent in snapshots written before lines were deferred (they mined every line on arrival)
        self._pending = PendingLines.from_state(state.get("pending", {}), settings.window_s, len(strings))
        self.lines = int(state["lines"])
        return self
