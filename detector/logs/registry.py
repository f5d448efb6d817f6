"""Template registry: what is known about every template of a partition.

A template has a dense index (its position here, stable for the life of the
state, persisted) and a public id derived from what it says:

    id = first 12 hex digits of blake2b(service + "\\x00" + template text)

so the same service logging the same shape gets the same id on every
instance, after every restart and in every replay. The miner may later generalise
a template (a token becomes `<*>`); its text, id and kind then follow, its
index does not. Per template the registry keeps the first and last time it
was seen, its line counts by level and the first time each version emitted it.
`by_text` groups templates with the same text across services: the same
shape in several services is how shared (infrastructure) evidence is found.

Each template also has a *path-free key* (`path_key`, grouped in `by_key`):
its text with the request path and endpoint taken out, so that
"request <NUM> to PUT /v1/cart failed ..." and "request <NUM> to GET <*>
failed ..." share a key. A token is path-like when it starts with `/` (after
an optional `key=` and an opening quote or bracket: `path=/v1/x`,
`"/v1/x`); an HTTP method (`GET`, `method=POST`, `"PUT`) directly before a
path-like token or a `<*>` is the endpoint's method. Both become `<*>` in the
key, so a path the miner has already generalised and a literal one compare
equal, and the token count stays. The key is computed when the text is set
(at creation and whenever the miner generalises the template), so a lookup
costs one dict access. Novelty (`findings`) uses it; ids, texts and counts do
not depend on it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from detector.ingest.columns import LEVEL_NAMES
from detector.ingest.interner import Interner
from detector.logs.kinds import classify
from detector.logs.miner import OVERFLOW_TEXT


_PATH = re.compile(r"^(?:[\w.-]+=)?[\"'(\[]?/").match
_METHOD = re.compile(r"^(?:[\w.-]+=)?[\"'(\[]?(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|CONNECT|TRACE)$").match
_PARAM = "<*>"


def path_free_key(text: str) -> str:
    """`text` with path-like tokens, and the HTTP method before one, replaced by `<*>` (module docstring)."""
    tokens = text.split()
    if not any(_PATH(t) or _METHOD(t) for t in tokens):
        return text
    out = [_PARAM if _PATH(t) else t for t in tokens]
    for i in range(len(out) - 1):
        if out[i + 1] == _PARAM and _METHOD(out[i]):
            out[i] = _PARAM
    return " ".join(out)


def template_id(service: str, text: str) -> str:
    """Public id of a template: a hash of the service and the masked template text."""
    return hashlib.blake2b(f"{service}\x00{text}".encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class TemplateInfo:
    """One template as the judge and the operators see it."""

    index: int
    id: str
    service: str
    text: str
    kind: str  # see kinds.KINDS
    overflow: bool  # the service's catch-all for lines past the template cap
    first_seen_ts: float
    last_seen_ts: float
    counts_by_level: dict[str, int]  # level name -> lines
    versions: dict[str, float]  # version -> first time it emitted this template (unknown version omitted)


# A batch of at most this many rows is folded in by `_observe_small`.
_SMALL_BATCH = 64


def _grow(a: np.ndarray, n: int, fill) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full((max(n, 2 * len(a), 64),) + a.shape[1:], fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class TemplateRegistry:
    """Dense per-template metadata; strings (services, versions) live in `strings`."""

    def __init__(self, strings: Interner) -> None:
        self.strings = strings
        self.service: list[int] = []
        self.text: list[str] = []
        self.tid: list[str] = []
        self.kind: list[str] = []
        self.overflow: list[bool] = []
        self.versions: list[dict[int, float]] = []
        self.by_text: dict[str, list[int]] = {}
        self.path_key: list[str] = []
        self.by_key: dict[str, list[int]] = {}  # path-free key -> templates (every service), see path_free_key
        self.by_id: dict[str, int] = {}
        self._first = np.empty(0, np.float64)
        self._last = np.empty(0, np.float64)
        self._levels = np.zeros((0, len(LEVEL_NAMES)), np.int64)
        self._service_arr = np.empty(0, np.int32)

    def __len__(self) -> int:
        return len(self.service)

    def add(self, service: int, tokens: tuple[str, ...]) -> int:
        idx = len(self.service)
        text = " ".join(tokens)
        self.service.append(service)
        self.text.append("")
        self.path_key.append("")
        self.tid.append("")
        self.kind.append("")
        self.overflow.append(tokens == (OVERFLOW_TEXT,))
        self.versions.append({})
        n = idx + 1
        self._first = _grow(self._first, n, np.inf)
        self._last = _grow(self._last, n, -np.inf)
        self._levels = _grow(self._levels, n, 0)
        self.set_text(idx, text)
        return idx

    def set_text(self, idx: int, text: str) -> None:
        old = self.text[idx]
        if old == text:
            return
        if old:
            self.by_text[old].remove(idx)
            if not self.by_text[old]:
                del self.by_text[old]
            if self.by_id.get(self.tid[idx]) == idx:
                del self.by_id[self.tid[idx]]
            old_key = self.path_key[idx]
            self.by_key[old_key].remove(idx)
            if not self.by_key[old_key]:
                del self.by_key[old_key]
        service = self.strings.lookup(self.service[idx]) or ""
        self.text[idx] = text
        self.tid[idx] = template_id(service, text)
        self.kind[idx] = "other" if self.overflow[idx] else classify(text)
        self.by_text.setdefault(text, []).append(idx)
        key = self.path_key[idx] = path_free_key(text)
        self.by_key.setdefault(key, []).append(idx)
        # Two templates of one service can converge on the same text (the miner
        # folds the templates of earlier words into a generalised one); the id
        # then names the older one.
        self.by_id.setdefault(self.tid[idx], idx)

    @property
    def service_arr(self) -> np.ndarray:
        """Template index -> service string id, as an array for vectorised masks."""
        if len(self._service_arr) != len(self.service):
            self._service_arr = np.asarray(self.service, dtype=np.int32)
        return self._service_arr

    @property
    def first_seen(self) -> np.ndarray:
        return self._first[: len(self.service)]

    def observe(self, tpl: np.ndarray, ts: np.ndarray, version: np.ndarray, level: np.ndarray) -> None:
        """Fold one batch's rows (template index, ts, version string id, level code) in."""
        if not len(tpl):
            return
        if len(tpl) <= _SMALL_BATCH:
            self._observe_small(tpl, ts, version, level)
            return
        order = np.lexsort((ts, tpl))
        t_sorted, ts_sorted = tpl[order], ts[order]
        starts = np.flatnonzero(np.concatenate(([True], t_sorted[1:] != t_sorted[:-1])))
        ends = np.append(starts[1:], len(t_sorted)) - 1
        uniq = t_sorted[starts]
        self._first[uniq] = np.minimum(self._first[uniq], ts_sorted[starts])
        self._last[uniq] = np.maximum(self._last[uniq], ts_sorted[ends])

        codes, counts = np.unique(tpl.astype(np.int64) * len(LEVEL_NAMES) + level, return_counts=True)
        self._levels[codes // len(LEVEL_NAMES), codes % len(LEVEL_NAMES)] += counts

        # Unknown version (-1) is kept under key -1: it counts as "another
        # version" when deciding whether a template is new for a deploy.
        key = tpl.astype(np.int64) << 32 | (version.astype(np.int64) + 1)
        order = np.lexsort((ts, key))
        k_sorted = key[order]
        starts = np.flatnonzero(np.concatenate(([True], k_sorted[1:] != k_sorted[:-1])))
        for k, first in zip(k_sorted[starts].tolist(), ts[order][starts].tolist()):
            seen = self.versions[k >> 32]
            v = (k & 0xFFFFFFFF) - 1
            if first < seen.get(v, np.inf):
                seen[v] = first

    def _observe_small(self, tpl: np.ndarray, ts: np.ndarray, version: np.ndarray, level: np.ndarray) -> None:
        """`observe` of a few rows in plain Python (a quiet window holds a handful of lines, and a
        dozen numpy calls on arrays of five cost more than the work). Same state: the first and
        last time per template are the minimum and maximum of its rows' times, level counts are
        sums, and each template's versions are visited in the array path's order (by version id:
        its lexsort by template, then version) so the dicts keep the same insertion order."""
        n_levels = len(LEVEL_NAMES)
        span: dict[int, list[float]] = {}
        levels: dict[int, int] = {}
        firsts: dict[tuple[int, int], float] = {}
        for t, s, v, lv in zip(tpl.tolist(), ts.tolist(), version.tolist(), level.tolist()):
            lo_hi = span.get(t)
            if lo_hi is None:
                span[t] = [s, s]
            else:
                if s < lo_hi[0]:
                    lo_hi[0] = s
                if s > lo_hi[1]:
                    lo_hi[1] = s
            code = t * n_levels + lv
            levels[code] = levels.get(code, 0) + 1
            key = (t, v)
            f = firsts.get(key)
            if f is None or s < f:
                firsts[key] = s
        first, last = self._first, self._last
        for t, (lo, hi) in span.items():
            if lo < first[t]:
                first[t] = lo
            if hi > last[t]:
                last[t] = hi
        for code, c in levels.items():
            self._levels[code // n_levels, code % n_levels] += c
        for (t, v), f in sorted(firsts.items()):
            seen = self.versions[t]
            if f < seen.get(v, np.inf):
                seen[v] = f

    def first_seen_by_others(self, idx: int, version: int) -> float:
        """When any version other than `version` (unknown included) first logged template `idx`."""
        return min((ts for v, ts in self.versions[idx].items() if v != version), default=np.inf)

    def path_kin(self, idx: int) -> list[int]:
        """Templates of `idx`'s service with its path-free key, `idx` included, in index order.
        (A template of no tokens keeps the empty text it was created with, in no group: itself.)"""
        group = self.by_key.get(self.path_key[idx])
        if not group:
            return [idx]
        service = self.service[idx]
        return sorted(j for j in group if self.service[j] == service)

    def info(self, idx: int) -> TemplateInfo:
        if not 0 <= idx < len(self.service):
            raise IndexError(f"no template with index {idx} (there are {len(self.service)})")
        lookup = self.strings.lookup
        return TemplateInfo(
            index=idx,
            id=self.tid[idx],
            service=lookup(self.service[idx]) or "",
            text=self.text[idx],
            kind=self.kind[idx],
            overflow=self.overflow[idx],
            first_seen_ts=float(self._first[idx]),
            last_seen_ts=float(self._last[idx]),
            counts_by_level={name: int(c) for name, c in zip(LEVEL_NAMES, self._levels[idx])},
            versions={lookup(v) or "": ts for v, ts in sorted(self.versions[idx].items(), key=lambda kv: kv[1])
                      if v >= 0},
        )

    # --- state ---

    def to_state(self) -> list:
        """Per template: [service, first_seen, last_seen, level counts, [[version, first_seen], ...]].

        Services and versions are ids in `strings` (persisted alongside). Texts
        are not stored here: they are the miners' cluster templates.
        """
        out = []
        for i in range(len(self.service)):
            first, last = float(self._first[i]), float(self._last[i])
            out.append([self.service[i], first if np.isfinite(first) else None,
                        last if np.isfinite(last) else None, self._levels[i].tolist(),
                        [[v, ts] for v, ts in self.versions[i].items()]])
        return out

    def load_state(self, state: list, texts: dict[int, tuple[str, ...]]) -> None:
        """Rebuild from `to_state` output and the template tokens the miners hold (index -> tokens)."""
        n_strings = len(self.strings)
        for i, (service, first, last, levels, versions) in enumerate(state):
            if i not in texts:
                raise ValueError(f"template {i} has no cluster in any miner")
            if not 0 <= int(service) < n_strings or any(not -1 <= int(v) < n_strings for v, _ in versions):
                raise ValueError(f"template {i} names a service or version id outside the string table")
            if len(levels) != len(LEVEL_NAMES):
                raise ValueError(f"template {i} has {len(levels)} level counts, expected {len(LEVEL_NAMES)}")
            idx = self.add(int(service), texts[i])
            self._first[idx] = np.inf if first is None else float(first)
            self._last[idx] = -np.inf if last is None else float(last)
            self._levels[idx] = np.asarray(levels, dtype=np.int64)
            self.versions[idx] = {int(v): float(ts) for v, ts in versions}
