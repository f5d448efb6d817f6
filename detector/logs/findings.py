"""Log findings for one deploy and one closed window: novelty and error shifts.

`evaluate(deploy, window, ...)` looks at one closed window of template counts
in the light of a deploy (service, deploy id, deploy time, new version, stable
version) and returns `TemplateFinding`s:

- `log_novelty`: a template of the service that no other version (unknown
  version included) logged before the deploy, and the new version itself not
  before `novelty_grace_s` ahead of it (its pods may start logging before the
  deploy event is recorded), emitted by the new version: at WARN or above at least
  `novelty_min_count` times since the deploy, or at any level at least
  `novelty_info_min_count` times making up `novelty_info_min_share` of the
  version's lines. It is reported once, in the window where it first
  qualifies (so within one window of its first occurrence when it repeats
  there). The overflow template is never novel: lines past the template cap
  are high-cardinality noise by construction. A template is not novel either
  when a template of the same service that differs from it only by a request
  path or endpoint (its *path kin*: the same path-free key, see
  `registry.path_free_key`) was logged before the deploy on the same terms:
  "request <NUM> to PUT /v1/cart failed ..." is the service's known failure
  line for another endpoint, not a new error pattern of the release (issue
  12: during a shared slowdown such a line of the new version was a benign
  deploy's ticket). The key is computed when a template's text is set or
  generalised by the miner, so the check is a dict lookup per candidate.
- `log_errors`: a template whose count at `errors_min_level` or above from
  the new version in this window is improbable given its pre-deploy rate
  (zero for a template new since the deploy: after its novelty finding, its
  persistence is reported here in later windows). The test is the negative
  binomial posterior predictive of a Poisson count with a Gamma(c + 1/2)
  rate learnt from the baseline (c lines out of N logged by the service in
  the `baseline_s` before the deploy; exposure = the version's n lines in
  the window): P(X >= observed) with X ~ NB(c + 1/2, N / (N + n)). Reported
  in every window where it is significant, like the request-rate tests.

Each finding carries a `scope`:
- `version`: only the new version shows it; the deploy's evidence;
- `service`: every active version of the service shows it (for errors: the
  stable version's rate rose too), no other service: not the deploy's;
- `shared`: every version and at least one other service (same template
  text) show it at the same time: infrastructure evidence.
For novelty, "shows it" counts the template's path kin: the stable version
failing on one endpoint and the new one on another since the deploy is the
service's (or, with another service, shared) evidence. Error shifts compare
exact templates.
With a single active version "every version" holds trivially, so only other
services can make such a finding shared.

Nothing is reported without `min_baseline_lines` of pre-deploy history for
the service: without a past, everything looks new.

`root_cause_hint(findings)` condenses one deploy's findings into the
category they suggest (config / code / data_or_infra / unknown) and the
evidence lines for the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betainc

from detector.ingest.columns import LEVEL_ERROR, LEVEL_NAMES, LEVEL_WARN
from detector.logs.counts import WindowArrays, WindowCounts
from detector.logs.registry import TemplateRegistry
from detector.logs.settings import LogSettings

SIGNALS = ("log_novelty", "log_errors")
SCOPES = ("version", "service", "shared")
_MAX_SCORE = 300.0


@dataclass(frozen=True)
class DeployContext:
    """The deploy a window is judged against."""

    service: str
    deploy_id: str
    deploy_ts: float
    new_version: str
    stable_version: str | None = None


@dataclass(frozen=True)
class TemplateFinding:
    """One piece of log evidence about a deploy, ready to become an anomaly record."""

    signal: str  # "log_novelty" or "log_errors"
    service: str
    deploy_id: str
    version: str  # the new version
    scope: str  # see SCOPES; only "version" findings are the deploy's
    severity: str  # "critical", "warning" or "info"
    window_start: float
    window_end: float
    observed: float  # novelty: lines since the deploy; errors: lines in the window (at errors_min_level+)
    expected: float  # the same count predicted from the pre-deploy baseline
    score: float  # -log10 of the count test's p-value
    p_value: float
    template_id: str
    template: str
    kind: str  # see kinds.KINDS
    level: str  # highest level the new version logged it at
    first_seen_ts: float
    first_seen_after_deploy_s: float  # negative for a template known before the deploy
    window_count: int  # lines of the new version in this window
    count_since_deploy: int  # lines of the new version since the deploy
    versions: tuple[str, ...] = ()  # versions of the service showing it since the deploy
    services: tuple[str, ...] = ()  # services showing it (same text), this one first
    extra: dict = field(default_factory=dict)

    @property
    def attributed(self) -> bool:
        """True when the evidence points at the deploy rather than at shared infrastructure."""
        return self.scope == "version"

    def evidence(self) -> str:
        """One line for a verdict's root-cause evidence."""
        if self.signal == "log_novelty":
            what = (f'new log template ({self.kind}, {self.level}) from {self.version}: "{self.template}" '
                    f"x{self.count_since_deploy}, first seen {self.first_seen_after_deploy_s:.0f} s after the deploy")
        else:
            what = (f'log template ({self.kind}, {self.level}) "{self.template}": {self.observed:.0f} lines '
                    f"from {self.version} in the window vs {self.expected:.1f} expected")
            if self.first_seen_after_deploy_s >= 0:
                what += ", new since the deploy"
        if self.scope == "shared":
            what += f"; also in {', '.join(self.services[1:])} and every version: shared, not the deploy's"
        elif self.scope == "service":
            what += "; every version of the service shows it: not the deploy's"
        return what

    def detail(self) -> dict:
        """The anomaly record's `detail` object."""
        return {
            "template_id": self.template_id,
            "template": self.template,
            "kind": self.kind,
            "level": self.level,
            "scope": self.scope,
            "first_seen_ts": self.first_seen_ts,
            "first_seen_after_deploy_s": self.first_seen_after_deploy_s,
            "window_count": self.window_count,
            "count_since_deploy": self.count_since_deploy,
            "versions": list(self.versions),
            "services": list(self.services),
            "p_value": self.p_value,
            "evidence": self.evidence(),
            **self.extra,
        }


def nb_tail(observed: np.ndarray | float, base_count: np.ndarray | float, base_lines: float,
            lines: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(P(X >= observed), E[X]) for X ~ NB(base_count + 1/2, base_lines / (base_lines + lines)).

    The predictive count of lines in `lines` new log lines for a template seen
    `base_count` times in `base_lines` baseline lines (Poisson rate with a
    Jeffreys Gamma posterior).
    """
    obs = np.asarray(observed, dtype=np.float64)
    r = np.asarray(base_count, dtype=np.float64) + 0.5
    n = np.asarray(lines, dtype=np.float64)
    q = n / (base_lines + n)  # 1 - p
    # P(X >= k) = I_{1-p}(k, r) for k >= 1 (regularised incomplete beta).
    p = np.where(obs <= 0, 1.0, betainc(np.maximum(obs, 1.0), r, q))
    return p, r * n / base_lines


def _score(p: float) -> float:
    return _MAX_SCORE if p <= 0 else min(_MAX_SCORE, -math.log10(p))


# _Rows.of_kept: window ids -> (windows, rows); read only, a few deploys' worth
_KEPT: dict[tuple, tuple] = {}
_MAX_KEPT = 16


@dataclass
class _Rows:
    """Concatenated rows of several windows of one service (position = window number)."""

    pos: np.ndarray
    tpl: np.ndarray
    version: np.ndarray
    level: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, windows: list[WindowArrays]) -> "_Rows":
        if not windows:
            e = np.empty(0, np.int32)
            return cls(e, e, e, np.empty(0, np.int8), np.empty(0, np.int64))
        return cls(np.repeat(np.arange(len(windows)), [len(w.tpl) for w in windows]),
                   np.concatenate([w.tpl for w in windows]), np.concatenate([w.version for w in windows]),
                   np.concatenate([w.level for w in windows]), np.concatenate([w.count for w in windows]))

    @classmethod
    def of_kept(cls, windows: list[WindowArrays]) -> "_Rows":
        """`of(windows)`, kept for the same window objects: a deploy's windows before it are
        read again at every window of its verification. Closed windows never change (frozen,
        replaced only by new objects), so the same objects give the same rows; the entry
        holds them, so their ids cannot be reused while it lives."""
        key = tuple(map(id, windows))
        hit = _KEPT.get(key)
        if hit is None:
            if len(_KEPT) >= _MAX_KEPT:
                _KEPT.pop(next(iter(_KEPT)))
            hit = _KEPT[key] = (tuple(windows), cls.of(windows))
        return hit[1]

    def where(self, mask: np.ndarray) -> "_Rows":
        return _Rows(self.pos[mask], self.tpl[mask], self.version[mask], self.level[mask], self.count[mask])

    def of_service(self, service_arr: np.ndarray, service: int) -> "_Rows":
        return self.where(service_arr[self.tpl] == service)


def evaluate(deploy: DeployContext, window: WindowArrays, counts: WindowCounts, registry: TemplateRegistry,
             settings: LogSettings) -> list[TemplateFinding]:
    """Findings for `deploy` in the closed `window` (see the module docstring)."""
    t = float(deploy.deploy_ts)
    if window.end_ts <= t:
        return []
    strings = registry.strings
    svc, new = strings.get(deploy.service), strings.get(deploy.new_version)
    if svc < 0 or new < 0:
        return []
    stable = strings.get(deploy.stable_version) if deploy.stable_version else -1
    service_arr = registry.service_arr
    all_base = _Rows.of_kept([w for w in counts.between(t - settings.baseline_s, t) if w.end_ts <= t])
    base = all_base.of_service(service_arr, svc)
    base_lines = int(base.count.sum())
    if base_lines < settings.min_baseline_lines:
        return []
    since_windows = counts.between(math.floor(t / counts.window_s) * counts.window_s, window.end_ts)
    if not since_windows or since_windows[-1] is not window:
        return []
    all_since = _Rows.of(since_windows)
    ctx = _Context(deploy, window, settings, registry, all_since, all_base, base_lines, len(since_windows) - 1,
                   svc, new, stable)
    return ctx.novelty() + ctx.errors()


class _Context:
    """One evaluation: the deploy, the window and the rows it reads."""

    def __init__(self, deploy: DeployContext, window: WindowArrays, settings: LogSettings,
                 registry: TemplateRegistry, all_since: _Rows, all_base: _Rows, base_lines: int, last: int,
                 svc: int, new: int, stable: int) -> None:
        self.deploy, self.window, self.s, self.reg = deploy, window, settings, registry
        self.all_since, self.all_base, self.base_lines, self.last = all_since, all_base, base_lines, last
        self.svc, self.new, self.stable = svc, new, stable
        self.since = all_since.of_service(registry.service_arr, svc)
        self.base = all_base.of_service(registry.service_arr, svc)
        self.new_since = self.since.where(self.since.version == new)
        self.active_versions = set(np.unique(self.since.version[self.since.version >= 0]).tolist())
        self.novel_now: set[int] = set()

    def _is_new(self, idx: int) -> bool:
        """Neither it nor a template of the service differing from it only by a request path or
        endpoint (its path kin) was logged before the deploy by another version, nor by the new
        one before the grace period."""
        t, reg, new = self.deploy.deploy_ts, self.reg, self.new
        since = t - self.s.novelty_grace_s
        for j in reg.path_kin(idx):
            if reg.first_seen_by_others(j, new) < t or reg.versions[j].get(new, np.inf) < since:
                return False
        return True

    # --- log_novelty ---

    def novelty(self) -> list[TemplateFinding]:
        s, reg, rows = self.s, self.reg, self.new_since
        in_window = rows.tpl[rows.pos == self.last]
        cand = np.unique(in_window)
        if not len(cand):
            return []
        cand = cand[np.array([self._is_new(i) and not reg.overflow[i] for i in cand.tolist()], dtype=bool)]
        if not len(cand):
            return []
        n_win = self.last + 1
        slot = np.full(len(reg), -1, np.int64)
        slot[cand] = np.arange(len(cand))
        lines = np.bincount(rows.pos, weights=rows.count, minlength=n_win)
        c = slot[rows.tpl]
        m = c >= 0
        flat = rows.pos[m] * len(cand) + c[m]
        size = n_win * len(cand)
        all_lv = np.bincount(flat, weights=rows.count[m], minlength=size).reshape(n_win, len(cand))
        warn = rows.level[m] >= LEVEL_WARN
        warn_lv = np.bincount(flat[warn], weights=rows.count[m][warn], minlength=size).reshape(n_win, len(cand))
        err = rows.level[m] >= LEVEL_ERROR
        err_lv = np.bincount(flat[err], weights=rows.count[m][err], minlength=size).reshape(n_win, len(cand))
        cum_all, cum_warn, cum_lines = all_lv.cumsum(0), warn_lv.cumsum(0), lines.cumsum()[:, None]
        qualifies = (cum_warn >= s.novelty_min_count) | (
            (cum_all >= s.novelty_info_min_count) & (cum_all >= s.novelty_info_min_share * cum_lines))
        now = qualifies[-1] & ~qualifies[:-1].any(axis=0)
        picked = np.flatnonzero(now)
        if not len(picked):
            return []
        max_level = np.zeros(len(cand), np.int64)
        np.maximum.at(max_level, c[m], rows.level[m].astype(np.int64))
        # The most severe and most frequent first, then by id for a stable order.
        order = sorted(picked.tolist(), key=lambda j: (-max_level[j], -cum_all[-1, j], reg.tid[cand[j]]))
        out = []
        for j in order[: s.novelty_max_findings]:
            idx = int(cand[j])
            observed = float(cum_all[-1, j])
            p, expected = nb_tail(observed, 0.0, self.base_lines, float(cum_lines[-1, 0]))
            scope, versions, services = self._novelty_scope(idx)
            level = int(max_level[j])
            if scope != "version":
                severity = "info"
            elif level >= LEVEL_ERROR:
                severity = "critical" if err_lv[:, j].sum() >= s.novelty_critical_count else "warning"
            elif level >= LEVEL_WARN:
                severity = "warning" if cum_warn[-1, j] >= s.novelty_critical_count else "info"
            else:
                severity = "info"
            self.novel_now.add(idx)
            out.append(self._finding("log_novelty", idx, scope, severity, observed, float(expected), float(p),
                                     level, int(all_lv[-1, j]), int(cum_all[-1, j]), versions, services))
        return out

    def _novelty_scope(self, idx: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        since = self.since
        kin = self.reg.path_kin(idx)
        emitting = set(np.unique(since.version[np.isin(since.tpl, kin) & (since.version >= 0)]).tolist())
        others = self._other_services(idx, rise_only=False, by_path_key=True)
        in_all = self.active_versions <= emitting
        if others and in_all:
            scope = "shared"
        elif in_all and len(self.active_versions) >= 2:
            scope = "service"
        else:
            scope = "version"
        return scope, self._names(emitting), (self.deploy.service, *others)

    # --- log_errors ---

    def errors(self) -> list[TemplateFinding]:
        s, reg = self.s, self.reg
        rows = self.new_since.where(self.new_since.pos == self.last)
        new_lines = float(rows.count.sum())
        bad = rows.where(rows.level >= s.errors_min_level)
        if not len(bad.tpl):
            return []
        tpl, observed = _sum_by(bad.tpl, bad.count)
        # A template reported as novel in this window is not reported twice;
        # in later windows its persistence is a rise from a zero baseline.
        fresh = np.array([i in self.novel_now for i in tpl.tolist()], dtype=bool)
        keep = ~fresh & (observed >= s.errors_min_count)
        tpl, observed = tpl[keep], observed[keep]
        if not len(tpl):
            return []
        base_bad = self.base.where(self.base.level >= s.errors_min_level)
        base_count = np.array([base_bad.count[base_bad.tpl == i].sum() for i in tpl.tolist()], dtype=np.float64)
        p, expected = nb_tail(observed, base_count, self.base_lines, new_lines)
        hit = (p < s.errors_p_value) & (observed >= s.errors_min_ratio * expected)
        out = []
        since_bad = self.new_since.where(self.new_since.level >= s.errors_min_level)
        # Ordered by template id, not index: indices depend on how lines were batched, ids do not.
        for j in sorted(np.flatnonzero(hit).tolist(), key=lambda j: reg.tid[int(tpl[j])]):
            idx = int(tpl[j])
            scope, versions, services = self._errors_scope(idx, float(base_count[j]))
            if scope != "version":
                severity = "info"
            else:
                severity = "critical" if observed[j] >= s.errors_critical_ratio * expected[j] else "warning"
            level = int(bad.level[bad.tpl == idx].max())
            total = int(since_bad.count[since_bad.tpl == idx].sum())
            out.append(self._finding("log_errors", idx, scope, severity, float(observed[j]), float(expected[j]),
                                     float(p[j]), level, int(observed[j]), total, versions, services,
                                     {"baseline_count": int(base_count[j]), "baseline_lines": self.base_lines}))
        return out

    def _errors_scope(self, idx: int, base_count: float) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        s = self.s
        win = self.since.where((self.since.pos == self.last) & (self.since.level >= s.errors_min_level))
        emitting = set(np.unique(win.version[(win.tpl == idx) & (win.version >= 0)]).tolist())
        stable_rose = False
        if self.stable >= 0 and self.stable in self.active_versions:
            sel = self.since.where((self.since.pos == self.last) & (self.since.version == self.stable))
            obs = float(sel.count[(sel.tpl == idx) & (sel.level >= s.errors_min_level)].sum())
            p, expected = nb_tail(obs, base_count, self.base_lines, float(sel.count.sum()))
            stable_rose = bool(p < s.shared_p_value and obs >= s.errors_min_ratio * expected)
        others = self._other_services(idx, rise_only=True)
        single = self.stable < 0 or self.stable not in self.active_versions
        if others and (stable_rose or single):
            scope = "shared"
        elif stable_rose:
            scope = "service"
        else:
            scope = "version"
        return scope, self._names(emitting), (self.deploy.service, *others)

    # --- shared helpers ---

    def _other_services(self, idx: int, rise_only: bool, by_path_key: bool = False) -> tuple[str, ...]:
        """Other services whose template with the same text (or path-free key) shows up (or rises)
        since the deploy."""
        reg, s = self.reg, self.s
        group = reg.by_key.get(reg.path_key[idx], ()) if by_path_key else reg.by_text.get(reg.text[idx], ())
        peers = [j for j in group if reg.service[j] != self.svc]
        if not peers:
            return ()
        names = set()
        for j in peers:
            service = reg.service[j]
            mine = self.all_since.where(self.all_since.tpl == j)
            if not rise_only:
                if mine.count.sum() > 0:
                    names.add(reg.strings.lookup(service))
                continue
            obs = float(mine.count[(mine.pos == self.last) & (mine.level >= s.errors_min_level)].sum())
            if obs < s.errors_min_count:
                continue
            base = self.all_base.of_service(reg.service_arr, service)
            base_lines = float(base.count.sum())
            if base_lines <= 0:  # a rise from nothing
                names.add(reg.strings.lookup(service))
                continue
            now = self.all_since.where(self.all_since.pos == self.last).of_service(reg.service_arr, service)
            c = float(base.count[(base.tpl == j) & (base.level >= s.errors_min_level)].sum())
            p, expected = nb_tail(obs, c, base_lines, float(now.count.sum()))
            if p < s.shared_p_value and obs >= s.errors_min_ratio * expected:
                names.add(reg.strings.lookup(service))
        return tuple(sorted(n for n in names if n))

    def _names(self, ids: set[int]) -> tuple[str, ...]:
        lookup = self.reg.strings.lookup
        return tuple(sorted(lookup(i) or "" for i in ids))

    def _finding(self, signal, idx, scope, severity, observed, expected, p, level, window_count, since_count,
                 versions, services, extra=None) -> TemplateFinding:
        reg, d = self.reg, self.deploy
        first = float(reg.first_seen[idx])
        return TemplateFinding(
            signal=signal, service=d.service, deploy_id=d.deploy_id, version=d.new_version, scope=scope,
            severity=severity, window_start=self.window.start_ts, window_end=self.window.end_ts,
            observed=observed, expected=expected, score=_score(p), p_value=p, template_id=reg.tid[idx],
            template=reg.text[idx], kind=reg.kind[idx], level=LEVEL_NAMES[level], first_seen_ts=first,
            first_seen_after_deploy_s=first - d.deploy_ts, window_count=window_count,
            count_since_deploy=since_count, versions=versions, services=services, extra=extra or {},
        )


# Which root cause a kind of evidence suggests when the deploy's own version
# shows it. A connection failure only the new version has may be a wrong
# endpoint in its configuration or a new dependency that is down: unknown.
_ATTRIBUTED_CATEGORY = {"config": "config", "exception": "code", "data": "code", "connection": "unknown",
                        "other": "unknown"}
_KIND_PRIORITY = ("config", "exception", "data", "connection", "other")
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def root_cause_hint(findings: list[TemplateFinding], max_evidence: int = 3) -> tuple[str, tuple[str, ...]]:
    """(root-cause category, evidence lines) suggested by one deploy's log findings.

    The deploy's own evidence (scope `version`, WARN or above) decides, the
    most telling kind first: a configuration complaint explains the
    exceptions it causes, so `config` wins over `exception`. Without any,
    shared or service-wide evidence points at data or infrastructure.
    Returns ("unknown", ()) when the logs say nothing.
    """
    own = [f for f in findings if f.attributed and f.level != "info"]
    if own:
        kind = min((f.kind for f in own), key=_KIND_PRIORITY.index)
        chosen = [f for f in own if f.kind == kind]
        category = _ATTRIBUTED_CATEGORY[kind]
    else:
        chosen = [f for f in findings if not f.attributed and f.level != "info"]
        if not chosen:
            return "unknown", ()
        category = "data_or_infra"
    # One line per template: its novelty finding if there is one (it says when
    # the template appeared), else its most severe, most recent finding.
    best: dict[str, TemplateFinding] = {}
    for f in sorted(chosen, key=lambda f: (f.signal != "log_novelty", _SEVERITY_RANK[f.severity], -f.window_start)):
        best.setdefault(f.template_id, f)
    top = sorted(best.values(), key=lambda f: (_SEVERITY_RANK[f.severity], -f.count_since_deploy, f.template_id))
    return category, tuple(f.evidence() for f in top[:max_evidence])


def _sum_by(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, weights=weights, minlength=len(uniq))
