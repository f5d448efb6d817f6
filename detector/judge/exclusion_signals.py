"""What a verdict without a finding could exclude for latency and completed transactions.

`exclusion` states the smallest error-rate rise the new version's requests
would have shown; this does the same for the two other request signals, with
the same evidence (`sequential.before_log10`: the new version's expected
event count, no luck either way, against the events and requests before the
deploy) and the same bars.

- **Latency.** A latency rule's events are requests slower than T, the
  before sample's rule quantile (`accumulate.before_counts`). Had the new
  version's requests been the requests before the deploy x times slower,
  the share of them above T is the share of the before requests above T/x:
  read from the before latency sketch, each bucket shifted by log(x)/log(gamma)
  buckets (a bucket straddling T counted pro rata in log scale). The p95
  ratio of such a version is x. The figure is the smallest x whose expected
  slow count reaches the bar, never below the smallest `min_effect` of the
  latency rules watching the endpoint's share of the traffic.
- **Transactions.** The events are requests that completed no transaction;
  a relative drop d of completions per request raises their rate from 1-c
  to 1-c(1-d). Only endpoints that completed transactions before the deploy
  count (as in the rules); a service completing none gets no statement.

Per endpoint the bar is an endpoint rule's (the budget over e-BH's worst
case, one finding among all endpoints), as for the error rate.
Service-wide the change is the same on every endpoint (x slower, or d fewer
completions, everywhere): it would have been seen when a service-wide rule
of the signal passes the service-wide evidence at or above its `min_effect`,
or when e-BH over all endpoints rejects one whose endpoint rules act at that
size. The default rules watch latency per endpoint only, so the service-wide
latency figure is what the endpoint rules would have caught on some endpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from detector.aggregate import sketch
from detector.config import Rule
from detector.judge.evidence import Population
from detector.judge.exclusion import _percent, served_before
from detector.stats import sequential

STEPS = 50  # bisection steps: far below the rounding of the figures stated


@dataclass(frozen=True)
class Figure:
    """One endpoint: the smallest change its new-version requests would have shown (None: none)."""

    endpoint: str
    requests: int
    share: float  # of the new version's requests
    value: float | None


@dataclass(frozen=True)
class SignalExclusion:
    signal: str  # "latency" or "transactions"
    value: float | None  # the same change on every endpoint (None: none would have been seen)
    endpoints: tuple[Figure, ...]  # every endpoint it applies to, least covered first
    quantile: float = 0.0  # latency: the rules' quantile
    covered: float = 1.0  # the share of the new version's requests on the endpoints it applies to

    def named(self) -> Figure | None:
        """The endpoint a verdict names: the least covered, when there are two or more and it
        could not exclude what the service-wide figure does."""
        if len(self.endpoints) < 2 or self.value is None:
            return None
        e = self.endpoints[0]
        return e if e.value is None or e.value > self.value + 1e-9 else None

    def text(self, value: float | None) -> str:
        if self.signal == "latency":
            return f"{_up(value, 100):.2f}x"
        return f"{_up(100 * value, 1):.0f}%"

    def reason(self) -> str:
        if self.value is None:
            if self.signal == "latency":
                return "no latency regression would have been seen at all"
            return "no drop in completed transactions would have been seen at all"
        if self.signal == "latency":
            what = f"a p{self.quantile * 100:g} latency rise of {self.text(self.value)} or more on every endpoint"
        elif self.text(self.value) == "100%":
            what = "only the loss of every completed transaction"
        else:
            what = f"a drop of {self.text(self.value)} or more in completed transactions per request"
        what += " would have been seen"
        if self.signal == "transactions" and self.covered < 0.995:
            what += f" (on the endpoints completing them, {_percent(self.covered)} of the new version's requests)"
        e = self.named()
        if e is not None:
            only = "none at all" if e.value is None else f"only one of {self.text(e.value)} or more"
            if self.signal == "transactions" and e.value is not None and self.text(e.value) == "100%":
                only = "only the loss of every completed transaction"
            what += f"; on endpoint {e.endpoint} ({_percent(e.share)} of the new version's requests) {only}"
        return what

    def of(self, endpoint: str) -> tuple[bool, float | None]:
        """(applies, rounded figure) for one endpoint."""
        for e in self.endpoints:
            if e.endpoint == endpoint:
                return True, None if e.value is None else round(e.value, 3 if self.signal == "latency" else 4)
        return False, None


def _up(x: float, scale: float) -> float:
    """`x` rounded up at 1/scale: an "or more" figure is never stated below what was computed."""
    return math.ceil(x * scale - 1e-6) / scale


@dataclass
class _Rows:
    """The endpoints a signal applies to, with what the curve of expected events needs."""

    names: list[str]
    n: np.ndarray  # the new version's requests
    r: np.ndarray  # events and requests before the deploy
    m: np.ndarray
    top: np.ndarray  # the largest change parameter that can matter
    events: Callable[[np.ndarray], np.ndarray]  # change parameter per row -> expected events per row
    service_r: float  # the service's events and requests before the deploy (every endpoint it had)
    service_m: float
    total: float  # the new version's requests, on every endpoint


def _floors(rules: Sequence[Rule], signal: str, quantile: float | None, shares: np.ndarray) -> tuple[
        np.ndarray, float | None]:
    """Per row the smallest `min_effect` of the endpoint rules watching its share (nan: none), and
    the smallest of the service-wide rules (None: none)."""
    mine = [r for r in rules if r.signal == signal and not r.dry_run and (quantile is None or r.quantile == quantile)]
    per = np.full(len(shares), np.nan)
    for i, s in enumerate(shares.tolist()):
        effects = [r.min_effect for r in mine
                   if r.scope == "endpoint" and r.min_traffic_share <= s <= r.max_traffic_share]
        if effects:
            per[i] = min(effects)
    service = [r.min_effect for r in mine if r.scope == "service"]
    return per, (min(service) if service else None)


def _bisect(seen: Callable[[np.ndarray], np.ndarray], top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row the smallest t in [0, top] with seen(t) (monotone), and whether any is."""
    ok_top = seen(top)
    lo, hi = np.zeros_like(top), top.copy()
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        ok = seen(mid)
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return hi, ok_top


def _exclusion(signal: str, rows: _Rows, to_value: Callable[[np.ndarray], np.ndarray],
               from_value: Callable[[float], float], floors: np.ndarray, service_floor: float | None, alpha: float,
               k_endpoints: int, quantile: float) -> SignalExclusion:
    """Per endpoint at the worst-case e-BH bar, and service-wide for the same change everywhere."""
    need = math.log10(max(1, k_endpoints) / alpha)
    watched = ~np.isnan(floors)
    floor = np.where(watched, floors, np.inf)

    def evidence(t: np.ndarray) -> np.ndarray:
        return sequential.before_log10(rows.events(t), rows.n, rows.r, rows.m)

    t_ep, any_ep = _bisect(lambda t: evidence(t) >= need, rows.top)
    values = np.maximum(to_value(t_ep), floor)
    # Beyond `top` every request counts as an event: a floor above it is seen if `top` is.
    seen = any_ep & watched & (rows.m > 0)
    figures = [Figure(rows.names[i], int(rows.n[i]), float(rows.n[i] / max(1.0, rows.total)),
                      float(values[i]) if seen[i] else None) for i in range(len(rows.names))]
    figures.sort(key=lambda e: (e.value is not None, -(e.value or 0.0), e.requests, e.endpoint))

    pad = max(0, k_endpoints - len(rows.names))
    service_need = math.log10(1 / alpha)

    def everywhere(t: np.ndarray) -> np.ndarray:
        out = np.zeros(len(t), bool)
        for j, tj in enumerate(t.tolist()):
            tt = np.full(len(rows.names), tj)
            value = float(to_value(np.array([tj]))[0])
            k = rows.events(tt)
            if service_floor is not None and value >= service_floor - 1e-12:
                e = sequential.before_log10(k.sum(), rows.n[rows.m > 0].sum(), rows.service_r, rows.service_m)
                if float(e) >= service_need:
                    out[j] = True
                    continue
            e = np.concatenate([np.where(rows.m > 0, sequential.before_log10(k, rows.n, rows.r, rows.m), 0.0),
                                np.zeros(pad)])
            rejected = sequential.e_bh(e, alpha)[: len(rows.names)]
            out[j] = bool((rejected & (value >= floor - 1e-12)).any())
        return out

    # Far enough for every row's events to saturate and every floor to be reached.
    floors_all = [f for f in [service_floor, *floor[watched].tolist()] if f is not None]
    top = np.array([max([float(rows.top.max()) if len(rows.top) else 0.0]
                        + [from_value(f) for f in floors_all])])
    t_all, any_all = _bisect(everywhere, top)
    value = float(to_value(t_all)[0]) if bool(any_all[0]) else None
    if value is not None:
        # A floor reached by bisection from above: state the floor itself.
        for f in floors_all:
            if abs(value - f) <= 1e-9 * max(1.0, f):
                value = f
    return SignalExclusion(signal, value, tuple(figures), quantile)


def _endpoint_rows(requests: Mapping[int, int], pre: Population) -> tuple[list[int], np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """The endpoints the new version served: ids, its requests, their rows in `pre` (-1: none), shares."""
    eps = sorted(ep for ep, n in requests.items() if n > 0)
    n = np.array([requests[ep] for ep in eps], dtype=np.float64)
    at = np.array([pre.row(ep) for ep in eps], dtype=np.int64)
    total = n.sum()
    share = np.array([pre.n[a] / pre.total_n if a >= 0 and pre.total_n else (n[i] / total if total else 0.0)
                      for i, a in enumerate(at.tolist())])
    return eps, n, at, share


def latency(requests: Mapping[int, int], pre: Population | None, alpha_rule: float, rules: Sequence[Rule],
            lookup: Callable[[int], str]) -> SignalExclusion | None:
    """The smallest p-quantile ratio the new version's requests would have shown (None: no latency
    rule; a figure of None when nothing was served). With rules of several quantiles, the quantile
    seeing the smallest."""
    quantiles = sorted({r.quantile for r in rules if r.signal == "latency" and not r.dry_run})
    if not quantiles:
        return None
    if pre is None or not pre.total_n or not sum(requests.values()):
        return SignalExclusion("latency", None, (), quantiles[0])
    eps, n, at, share = _endpoint_rows(requests, pre)
    k_endpoints = len(served_before(pre) | set(eps))
    entry_row = sketch.entry_series(pre.lat)
    buckets, counts = pre.lat.buckets.astype(np.float64), pre.lat.counts.astype(np.float64)
    m_all = sketch.counts_grouped(pre.lat).astype(np.float64)
    best: SignalExclusion | None = None
    for q in quantiles:
        thr_all = sketch.quantile_buckets_grouped(pre.lat, q)[:, 0] if len(pre.endpoints) else np.zeros(0, np.int64)
        # Before requests above the threshold, per row of `pre`, had they been `shift` buckets slower.
        def above(shift_rows: np.ndarray, thr: np.ndarray = thr_all) -> np.ndarray:
            t = thr[entry_row].astype(np.float64)
            frac = np.clip(buckets - t + shift_rows[entry_row], 0.0, 1.0)
            frac = np.where((buckets > sketch.ZERO_BUCKET) & (t >= 0), frac, 0.0)
            return np.bincount(entry_row, weights=counts * frac, minlength=len(pre.endpoints))

        valid_all = (m_all > 0) & (thr_all >= 0)
        r_all = np.where(valid_all, above(np.zeros(len(pre.endpoints))), 0.0)
        ok = at >= 0
        rows_at = np.where(ok, at, 0)
        m = np.where(ok & valid_all[rows_at], m_all[rows_at], 0.0) if len(pre.endpoints) else np.zeros(len(eps))
        r = np.where(m > 0, r_all[rows_at], 0.0) if len(pre.endpoints) else np.zeros(len(eps))
        lowest = np.full(len(pre.endpoints), np.inf)
        nonzero = buckets > sketch.ZERO_BUCKET
        np.minimum.at(lowest, entry_row[nonzero], buckets[nonzero])
        top_all = np.where(np.isfinite(lowest), thr_all - lowest + 1.0, 0.0)
        top = np.where(m > 0, np.maximum(top_all[rows_at], 0.0), 0.0) if len(pre.endpoints) else np.zeros(len(eps))

        def events(shift: np.ndarray, _ok=ok, _rows=rows_at, _m=m, _n=n) -> np.ndarray:
            if not len(pre.endpoints):
                return np.zeros(len(_n))
            per_row = np.zeros(len(pre.endpoints))
            per_row[_rows[_ok]] = shift[_ok]
            a = above(per_row)[_rows]
            return np.where(_m > 0, _n * a / np.where(_m > 0, _m, 1.0), 0.0)

        rows = _Rows([lookup(ep) for ep in eps], n, r, m, top, events,
                     float(r_all.sum()), float(np.where(valid_all, m_all, 0.0).sum()), float(n.sum()))
        floors, service_floor = _floors(rules, "latency", q, share)
        ex = _exclusion("latency", rows, lambda s: sketch.GAMMA ** s,
                        lambda x: math.log(max(x, 1.0)) / math.log(sketch.GAMMA), floors, service_floor,
                        alpha_rule, k_endpoints, q)
        if best is None or (ex.value is not None and (best.value is None or ex.value < best.value)):
            best = ex
    return best


def transactions(requests: Mapping[int, int], pre: Population | None, alpha_rule: float, rules: Sequence[Rule],
                 lookup: Callable[[int], str]) -> SignalExclusion | None:
    """The smallest relative drop of completed transactions per request the new version's requests
    would have shown, on the endpoints that completed transactions before the deploy (None: no
    transactions rule, or the service completed none)."""
    if not any(r.signal == "transactions" and not r.dry_run for r in rules) or pre is None:
        return None
    completes_all = pre.txn > 0
    if not completes_all.any():
        return None
    eps, n, at, share = _endpoint_rows(requests, pre)
    total = float(n.sum())
    keep = np.array([a >= 0 and bool(completes_all[a]) for a in at.tolist()], bool)
    eps = [ep for ep, k in zip(eps, keep.tolist()) if k]
    n, at, share = n[keep], at[keep], share[keep]
    m = pre.n[at].astype(np.float64)
    done = np.minimum(pre.txn[at], pre.n[at]).astype(np.float64)
    r = m - done
    c = np.where(m > 0, done / np.where(m > 0, m, 1.0), 0.0)
    done_all = np.minimum(pre.txn, pre.n)[completes_all]
    service_m = float(pre.n[completes_all].sum())

    def events(d: np.ndarray) -> np.ndarray:
        return n * (1.0 - c * (1.0 - np.minimum(d, 1.0)))

    rows = _Rows([lookup(ep) for ep in eps], n, r, m, np.ones(len(eps)), events,
                 service_m - float(done_all.sum()), service_m, total)
    floors, service_floor = _floors(rules, "transactions", None, share)
    k_endpoints = len(set(pre.endpoints.tolist()) | set(ep for ep, k in requests.items() if k > 0))
    ex = _exclusion("transactions", rows, lambda d: d, lambda d: d, floors, service_floor, alpha_rule,
                    k_endpoints, 0.0)
    return replace(ex, covered=float(n.sum()) / total if total else 0.0)


def statements(powers: Sequence[SignalExclusion | None], named: Sequence[str],
               figures: Callable[[str], dict]) -> tuple[dict, list[str], list[dict]]:
    """What a verdict adds for these signals: the service-wide figures for `detail.detectable`
    (`latency_ratio`, `latency_quantile`, `transactions_drop`; null: none would have been seen),
    one reason each, and the endpoints it names (`named` first, then the endpoint each signal's
    reason names), each as `figures(name)` with the signals' figures added (`latency_ratio`;
    `transactions_drop` only where the endpoint completed transactions before)."""
    detail: dict = {}
    reasons = []
    names = list(named)
    for p in powers:
        if p is None:
            continue
        if p.signal == "latency":
            detail["latency_ratio"] = None if p.value is None else round(p.value, 3)
            detail["latency_quantile"] = p.quantile
        else:
            detail["transactions_drop"] = None if p.value is None else round(p.value, 4)
        reasons.append(p.reason())
        e = p.named()
        if e is not None and e.endpoint not in names:
            names.append(e.endpoint)
    endpoints = []
    for name in names:
        d = figures(name)
        for p in powers:
            if p is None:
                continue
            applies, value = p.of(name)
            if applies:
                d["latency_ratio" if p.signal == "latency" else "transactions_drop"] = value
        endpoints.append(d)
    return detail, reasons, endpoints
