"""Evidence per rule signal, accumulated window by window from the verification start.

Each closed window adds one stratum per endpoint and signal to the deploy's
evidence (see `sequential`): compared with the stable version when the
stable version served traffic in that window (same-window 2x2 table),
otherwise with the service before the deploy.
Nothing is rescaled and no request minimum applies: a window with one
request adds what one request can say.

The state kept is plain data (saved with the verification): per signal key
and endpoint id, the accumulated log likelihood ratio of every alternative
of the mixture grid, and the events and requests of the windows compared
with the service before the deploy.

Effects (how much worse) are estimated over a rule's span with
Mantel-Haenszel weights window by window, n*m/(n+m): a window where the
reference has one request weighs about one request.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from detector.aggregate import sketch
from detector.stats import sequential
from detector.judge.evidence import Traffic, on_endpoints



def signal_key(signal: str, quantile: float) -> str:
    return f"latency:{quantile:g}" if signal == "latency" else signal


def _events(signal: str, p: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """(events, requests) per row: errors, or requests that completed no transaction."""
    if signal == "error_rate":
        return p.errors.astype(np.float64), p.n.astype(np.float64)
    if signal == "completions":
        return np.minimum(p.txn, p.n).astype(np.float64), p.n.astype(np.float64)
    return (p.n - np.minimum(p.txn, p.n)).astype(np.float64), p.n.astype(np.float64)


def _slow(g: sketch.GroupedSketch, thr: np.ndarray) -> np.ndarray:
    """Per row, how many requests lie in buckets above `thr` (-1 thresholds: none counted)."""
    rows = sketch.entry_series(g)
    above = g.buckets > thr[rows]
    return np.bincount(rows[above], weights=g.counts[above], minlength=g.n_series).astype(np.float64)


def clip_before(k: np.ndarray, n: np.ndarray, r: np.ndarray, m: np.ndarray, cap_log10: float,
                steps: int = 30) -> np.ndarray:
    """One window's before-compared events, lowered per row until that window alone
    against the service before the deploy (r events in m requests) says at most
    10^cap_log10. Fewer events never raise the evidence, so the accumulated test
    stays valid; a window where everything went wrong at once (a slowdown shared
    with the stable version, a restart) then counts about as much as one window
    against the stable version does, and a span's evidence has to come from its
    windows together."""
    k = np.asarray(k, dtype=np.float64)
    if not math.isfinite(cap_log10) or not len(k):
        return k
    over = sequential.before_log10(k, n, r, m) > cap_log10
    if not over.any():
        return k
    lo, hi = np.zeros(int(over.sum())), k[over]
    nn, rr, mm = (np.asarray(a, dtype=np.float64)[over] for a in (n, r, m))
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = sequential.before_log10(mid, nn, rr, mm) <= cap_log10
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    out = k.copy()
    out[over] = lo
    return out


def window_llr(signal: str, new: Traffic, stable: Traffic, pre: Traffic, same_window: bool,
               quantile: float = 0.95, test_quantiles: Sequence[float] = (0.5, 0.75, 0.9, 0.95, 0.99),
               cap_log10: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """One window's strata, rows of `new`: the same-window log likelihood ratios [rows, G]
    (zero where the row was not compared with the stable version) and, for rows
    compared with the service before the deploy instead, the new version's events
    and requests [rows, 2] (what `before_counts` counts, at the same threshold;
    events clipped so the window alone says at most 10^cap_log10, `clip_before`)."""
    stable = on_endpoints(stable, new.endpoints)
    pre = on_endpoints(pre, new.endpoints)
    rows = len(new.endpoints)
    same = np.zeros(rows, bool)
    if same_window:
        same = (stable.n > 0) & (new.n > 0)
    llr = np.zeros((rows, sequential.G))
    if signal == "latency":
        pooled = sketch.add_grouped(new.lat, stable.lat)
        n_pool = sketch.counts_grouped(pooled).astype(np.float64)
        # The test quantile of a same-window table is a function of the pooled sample
        # only (so the table's margins stay exchangeable under the null): the rule's
        # quantile, lowered (to the next of `test_quantiles`, at least the median)
        # where the pooled sample is too small to have a tail.
        q_row = np.minimum(quantile, np.maximum(0.5, 1 - 3 / np.maximum(n_pool, 1)))
        qs = np.array(sorted({0.5, quantile, *[q for q in test_quantiles if q >= 0.5]}))
        buckets = sketch.quantile_buckets_grouped(pooled, qs) if rows else np.zeros((0, len(qs)), int)
        pick = np.clip(np.searchsorted(qs, q_row + 1e-12, side="right") - 1, 0, len(qs) - 1)
        thr_same = buckets[np.arange(rows), pick] if rows else np.zeros(0, np.int64)
        x_same = _slow(new.lat, thr_same)
        t_same = _slow(pooled, thr_same)
        thr_pre = sketch.quantile_buckets_grouped(pre.lat, quantile)[:, 0] if rows else np.zeros(0, np.int64)
        pre_n = sketch.counts_grouped(pre.lat).astype(np.float64)
        pre_slow = _slow(pre.lat, thr_pre)
        x_pre = _slow(new.lat, thr_pre)
        new_n = sketch.counts_grouped(new.lat).astype(np.float64)
        stable_n = sketch.counts_grouped(stable.lat).astype(np.float64)
        if same.any():
            llr[same] = sequential.hypergeometric_llr(x_same[same], new_n[same], stable_n[same], t_same[same])
        before = ~same & (pre_n > 0) & (new_n > 0) & (thr_pre >= 0)
        x_pre = clip_before(np.where(before, x_pre, 0.0), new_n, pre_slow, pre_n, cap_log10)
        return llr, np.stack([np.where(before, x_pre, 0.0), np.where(before, new_n, 0.0)], axis=1)
    k, n = _events(signal, new)
    r, m = _events(signal, stable)
    pk, pn = _events(signal, pre)
    before = ~same & (pn > 0) & (n > 0)
    if signal == "transactions":
        # Only endpoints that complete transactions can lose them.
        before &= pre.txn > 0
        same &= (stable.txn > 0) | (pre.txn > 0)
    if same.any():
        llr[same] = sequential.hypergeometric_llr(k[same], n[same], m[same], k[same] + r[same])
    kb = clip_before(np.where(before, k, 0.0), n, pk, pn, cap_log10)
    return llr, np.stack([np.where(before, kb, 0.0), np.where(before, n, 0.0)], axis=1)


def before_counts(signal: str, pre: Traffic, quantile: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `pre`: its events and requests, as `window_llr` counts the new version's."""
    if signal == "latency":
        thr = sketch.quantile_buckets_grouped(pre.lat, quantile)[:, 0] if len(pre.endpoints) else np.zeros(0, int)
        return _slow(pre.lat, thr), sketch.counts_grouped(pre.lat).astype(np.float64)
    events, n = _events(signal, pre)
    if signal == "transactions":
        # As in `window_llr`: only endpoints that completed transactions before can lose them.
        completes = pre.txn > 0
        events, n = np.where(completes, events, 0.0), np.where(completes, n, 0.0)
    return events, n


SERVICE = -1  # the accumulator of the service-wide same-window evidence


def add_window(evidence: dict, key: str, endpoints: np.ndarray, llr: np.ndarray, before: np.ndarray,
               cap_log10: float = math.inf) -> None:
    """Fold one window's strata into the deploy's accumulated evidence (plain data:
    per endpoint, G log likelihood ratios then the before-compared events and
    requests; under `SERVICE`, the service-wide same-window ratios).

    A window's likelihood ratio counts at most 10^cap_log10 (per endpoint, and
    for the service over all its endpoints): min(LR, c) keeps the product a
    supermartingale, and a blip of a few windows (a pod restarting) can then
    not carry a rule on its own, however many requests it failed.
    """
    acc = evidence.setdefault(key, {})
    cap = cap_log10 * math.log(10.0)
    service = np.minimum(llr.sum(axis=0), cap) if len(llr) else np.zeros(sequential.G)
    both = np.concatenate([np.minimum(llr, cap), before], axis=1)
    items = [(int(endpoints[i]), both[i]) for i in np.flatnonzero(np.any(both != 0, axis=1)).tolist()]
    if np.any(service != 0):
        items.append((SERVICE, np.concatenate([service, [0.0, 0.0]])))
    for ep, values in items:
        row = acc.get(ep)
        if row is None:
            acc[ep] = [float(x) for x in values]
        else:
            acc[ep] = [a + float(b) for a, b in zip(row, values)]


def log10_evidence(evidence: dict, key: str, endpoints: np.ndarray, pre_events: np.ndarray,
                   pre_n: np.ndarray) -> tuple[np.ndarray, float]:
    """Accumulated evidence (log10 of an e-value) per endpoint row and service-wide.

    Same-window strata multiply as likelihood ratios mixed over the grid (the
    service-wide one is the common odds ratio over every endpoint's windows);
    the windows compared with the service before the deploy add their counts,
    tested once against the before counts (`pre_events`, `pre_n` per row).
    """
    acc = evidence.get(key, {})
    rows = np.zeros((len(endpoints), sequential.G + 2))
    for i, ep in enumerate(np.asarray(endpoints).tolist()):
        row = acc.get(int(ep))
        if row is not None:
            rows[i] = row
    llr, k, n = rows[:, :sequential.G], rows[:, sequential.G], rows[:, sequential.G + 1]
    per = sequential.log10_evidence(llr) + sequential.before_log10(k, n, pre_events, pre_n)
    service_llr = np.asarray(acc.get(SERVICE, np.zeros(sequential.G + 2)))[:sequential.G]
    service = float(sequential.log10_evidence(service_llr)) + float(
        sequential.before_log10(k.sum(), n.sum(), pre_events.sum(), pre_n.sum()))
    return per, service


def mantel_haenszel(k: np.ndarray, n: np.ndarray, r: np.ndarray, m: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Per row over windows (axis 0): observed rate, MH risk difference, MH rate ratio.

    k, n: the new version's events and requests per window and row; r, m: the
    reference's. Windows where either side is empty carry no weight.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        tot = n + m
        ok = (n > 0) & (m > 0)
        w = np.where(ok, n * m / np.where(ok, tot, 1), 0.0)
        num = np.where(ok, (k * m - r * n) / np.where(ok, tot, 1), 0.0)
        rr_num = np.where(ok, k * m / np.where(ok, tot, 1), 0.0)
        rr_den = np.where(ok, r * n / np.where(ok, tot, 1), 0.0)
        observed = k.sum(axis=0) / n.sum(axis=0)
        diff = num.sum(axis=0) / w.sum(axis=0)
        ratio = rr_num.sum(axis=0) / rr_den.sum(axis=0)
    return observed, diff, ratio


def span_tables(signal: str, new: Sequence[Traffic], stable: Sequence[Traffic], pre: Traffic,
                same: Sequence[bool], endpoints: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per window of a span (rows: `endpoints`): the new version's events and requests and
    the reference's, the reference being the stable version in windows where it served
    traffic, else the service before the deploy."""
    pre = on_endpoints(pre, endpoints)
    pk, pn = _events(signal, pre)
    ks, ns, rs, ms = [], [], [], []
    for p, s, use in zip(new, stable, same):
        p, s = on_endpoints(p, endpoints), on_endpoints(s, endpoints)
        k, n = _events(signal, p)
        r, m = _events(signal, s)
        if use:
            r, m = np.where(m > 0, r, pk), np.where(m > 0, m, pn)
        else:
            r, m = pk, pn
        ks.append(k)
        ns.append(n)
        rs.append(r)
        ms.append(m)
    empty = np.zeros((0, len(endpoints)))
    return tuple(np.array(a) if a else empty for a in (ks, ns, rs, ms))
