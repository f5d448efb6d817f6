"""Escalation rules: does a rule's condition hold for the new version now?

A rule names a signal, a scope (service-wide or per endpoint), an effect size
and a duration. It holds when

- the evidence accumulated since the verification started (`accumulate`,
  always valid however often it is looked at) passes the rule's share of
  the deploy's false-alarm budget: service-wide, log10 e >= log10(1/alpha);
  per endpoint, the e-Benjamini-Hochberg procedure at alpha over the
  endpoints the rule covers (and at least the rule's `min_score`, a floor);
- the effect over the rule's last `duration_s` (Mantel-Haenszel weighted,
  window by window, against the stable version where it served traffic and
  the service before the deploy elsewhere) reaches `min_effect`, above
  `min_level`;
- the effect persists: error and transaction rules split the span into six
  blocks; the median block (of those with data) must show `min_effect`
  itself, two thirds of them at least half of it, and so must the span's
  first and last block (one too thin to say anything, or a span too quiet
  for blocks: the windows holding its first and last sixth of requests).
  Latency rules need each third of the span with data to show half of it.
  A blip that does not reach from the span's start to its end (pod
  restarts) holds nothing however strong it was.

No minimum request count: the evidence says when there is enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Collection, Sequence

import numpy as np

from detector import stats

from detector.aggregate import sketch
from detector.config import Rule
from detector.stats import sequential
from detector.judge.accumulate import mantel_haenszel
from detector.judge.evidence import Traffic

PART_MIN_REQUESTS = 10  # a block of a span with fewer requests says nothing about persistence
PERSISTENCE_BLOCKS = 6
END_MIN_REQUESTS = 5  # an end read by requests: the span's first (last) sixth of them, at least this many


@dataclass
class Candidate:
    endpoint: int  # -1 service-wide
    observed: float
    expected: float
    effect: float
    score: float  # log10 of the accumulated evidence
    n: int
    share: float
    detail: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """What one rule reads at one window, prepared by the judge."""

    endpoints: np.ndarray  # rows
    evidence: np.ndarray  # log10 e per row
    service_evidence: float
    alpha: float  # this rule's share of the deploy's false-alarm budget
    tables: tuple[np.ndarray, ...] = ()  # rates: k, n, r, m per window of the span [W, rows]
    new: Traffic | None = None  # latency: the span's sketches
    ref: Traffic | None = None
    parts: Sequence[Traffic] = ()  # latency: the span's thirds
    share_of: Callable[[int], float] | None = None
    skip: Collection[int] = ()
    persistence: bool = True  # False: the effect over the span is enough (a rule "in sight", not holding)


def _passes(rule: Rule, log10_e: float, need: float) -> bool:
    return log10_e >= max(need, rule.min_score)


def _eligible(rule: Rule, inp: Inputs, has_data: np.ndarray) -> list[tuple[int, int, float]]:
    out = []
    for i in np.flatnonzero(has_data).tolist():
        ep = int(inp.endpoints[i])
        share = inp.share_of(ep) if inp.share_of else 1.0
        if rule.min_traffic_share <= share <= rule.max_traffic_share:
            out.append((i, ep, share))
    return out


def _rate_effect(signal: str, k, n, r, m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """observed, expected, effect per row (points of errors; relative drop of completions).

    An error rate's expected is the reference's own rate over the windows compared (never
    the observed rate minus the adjusted difference, which goes below zero when the
    windows' weights differ); the effect is the Mantel-Haenszel difference.
    """
    observed, diff, ratio = mantel_haenszel(k, n, r, m)
    if signal == "error_rate":
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (n > 0) & (m > 0)
            reference = np.where(ok, r, 0).sum(axis=0) / np.where(ok, m, 0).sum(axis=0)
        return observed, reference, diff * 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return observed, observed / ratio, 1.0 - ratio


def _request_ends(k, n, r, m, errors: bool = True) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]] | None:
    """The tables (windows x strata) of a span's first and last sixth of requests: the span's
    first (last) window with requests and the windows after (before) it wholly within that
    sixth, and when they hold fewer than `END_MIN_REQUESTS` the next window's first (last)
    requests up to that many, with only the errors that lie among them however the window's
    requests are ordered (None below three times that in the span: too few to say anything).

    Time blocks ask a blip to cover the span's first and last sixth of time; read by requests
    the ends ask the same of its first and last sixth of requests. Thirds let a 38 s restart
    inside a 60 s span through (it reached into both), and so does any end that takes in the
    whole window after a thin first one: that window may lie inside the blip. Read pro rata,
    that window's share of the end still carried its rate: a 38 s blip starting halfway into a
    60 s span's second window lent it to the 4 requests before it, and held. A window's
    requests are not ordered within it (across its strata either), so the part an end takes of
    it holds max(0, k - (n - part)) of the window's k errors, each stratum its share of them:
    those the blip could not have put after the part (completions: min(k, part), as many as
    could lie in it). Per stratum, a stratum whose every request failed lent its rate to its
    share of the part: a 40 s blip that ended 5 s into a span's second-last window held with a
    last window of 4 requests, none failing. A blip of length L then holds only where it
    reaches into the windows wholly within both ends (or fails nearly every request of the
    window an end takes part of): in a span of D with traffic even enough that an end is one
    window of D/6, L > D - 2 D/6 (40 s of 60 s), as with time blocks."""
    per_window = n.sum(axis=1)
    total = float(per_window.sum())
    if total < 3 * END_MIN_REQUESTS:
        return None
    q = max(float(END_MIN_REQUESTS), total / PERSISTENCE_BLOCKS)

    def end(order: np.ndarray) -> tuple[np.ndarray, ...]:
        cum = np.cumsum(per_window[order])
        first = int(np.searchsorted(cum, 0.0, side="right"))  # the first window with requests
        whole = max(int(np.searchsorted(cum, q, side="right")), first + 1)
        weight = np.zeros(len(order))
        weight[:whole] = 1.0
        held = float(cum[whole - 1])
        counts = k[order] * weight[:, None]
        if held < END_MIN_REQUESTS:  # the next window's first requests (one exists: the span holds more)
            nxt = int(np.searchsorted(cum, held, side="right"))
            weight[whole:nxt] = 1.0  # windows without requests on the way
            weight[nxt] = (END_MIN_REQUESTS - held) / float(per_window[order][nxt])
            kn = k[order][nxt]
            total_k, part = float(kn.sum()), END_MIN_REQUESTS - held
            sure = max(0.0, total_k - (per_window[order][nxt] - part)) if errors else min(total_k, part)
            counts[nxt] = kn * (sure / total_k) if total_k else 0.0
        w = np.zeros(len(order))
        w[order] = weight
        kk = np.zeros_like(k, dtype=float)
        kk[order] = counts
        return (kk, *(a * w[:, None] for a in (n, r, m)))

    windows = np.arange(len(per_window))
    return end(windows), end(windows[::-1])


def _blocks(w: int, k: int) -> list[slice]:
    """`w` windows in `k` consecutive blocks (fewer when there are fewer windows)."""
    k = min(k, w)
    return [slice(j * w // k, (j + 1) * w // k) for j in range(k)] if k else []


def _rate_rule(rule: Rule, signal: str, inp: Inputs) -> list[Candidate]:
    k, n, r, m = inp.tables
    if rule.scope == "service":
        if -1 in inp.skip or not len(k):
            return []
        k, n, r, m = (a.reshape(len(a), -1) for a in (k, n, r, m))
        rows = [(-1, -1, 1.0)]
        flat = True
        passing = {-1} if _passes(rule, inp.service_evidence, math.log10(1 / inp.alpha)) else set()
    else:
        if not len(k):
            return []
        rows = _eligible(rule, inp, n.sum(axis=0) > 0)
        flat = False
        e = np.array([inp.evidence[i] for i, _, _ in rows])
        ok = sequential.e_bh(e, inp.alpha) if len(rows) else np.zeros(0, bool)
        passing = {rows[j][1] for j in np.flatnonzero(ok).tolist() if e[j] >= rule.min_score}
    out = []
    for i, ep, share in rows:
        if ep in inp.skip or ep not in passing:
            continue
        cols = (slice(None),) if flat else (slice(None), slice(i, i + 1))
        kk, nn, rr, mm = (a[cols].reshape(len(a), -1) for a in (k, n, r, m))
        # Strata: the span's windows (service-wide: every window of every endpoint).
        o, x, f = _rate_effect(signal, *(a.ravel()[:, None] for a in (kk, nn, rr, mm)))
        obs, exp, eff = float(o[0]), float(x[0]), float(f[0])
        if not (eff >= rule.min_effect and obs >= rule.min_level):
            continue
        if not inp.persistence:
            out.append(Candidate(ep, obs, exp, eff, inp.service_evidence if ep == -1 else float(inp.evidence[i]),
                                 int(nn.sum()), share))
            continue
        # Persistence: the median block of the span shows the effect, two thirds of
        # the blocks and the span's first and last block at least half of it. A blip that
        # does not cover the span from its start to its end (a pod restart shorter than
        # the span less two blocks) holds nothing however strong it was, and noise in
        # quiet blocks cannot carry it (the median block needs the full effect). An end
        # block too thin to say anything (a deploy ramping up), or a span too quiet for
        # three blocks, is read by requests: the windows holding the span's first (last)
        # sixth of them. Reading the first and last QUALIFYING blocks instead let a blip
        # through that filled every block after the thin ones.
        def effect(tables: tuple[np.ndarray, ...]) -> float:  # one that cannot be estimated shows nothing
            x = float(_rate_effect(signal, *(a.ravel()[:, None] for a in tables))[2][0])
            return -math.inf if math.isnan(x) else x

        blocks = [tuple(a[b] for a in (kk, nn, rr, mm)) for b in _blocks(len(kk), PERSISTENCE_BLOCKS)]
        full = [b[1].sum() >= PART_MIN_REQUESTS for b in blocks]
        if sum(full) >= 3:
            e = np.array([effect(b) for b, ok in zip(blocks, full) if ok])
            if not (np.median(e) >= rule.min_effect and np.quantile(e, 1 / 3) >= rule.min_effect / 2):
                continue
            if full[0] and full[-1]:
                ends = [blocks[0], blocks[-1]]
            else:  # >= 30 requests in the span: the ends by requests exist
                first, last = _request_ends(kk, nn, rr, mm, signal == "error_rate")
                ends = [blocks[0] if full[0] else first, blocks[-1] if full[-1] else last]
        else:
            by_requests = _request_ends(kk, nn, rr, mm, signal == "error_rate")
            ends = list(by_requests) if by_requests is not None else []
        if ends and min(effect(part) for part in ends) < rule.min_effect / 2:
            continue
        score = inp.service_evidence if ep == -1 else float(inp.evidence[i])
        out.append(Candidate(ep, obs, exp, eff, score, int(nn.sum()), share))
    return out


def evaluate(rule: Rule, inp: Inputs) -> list[Candidate]:
    """Candidates for which the rule's condition holds (empty when it does not).

    Endpoints in `inp.skip` (-1: service-wide) are not tested: the caller already
    holds a finding of this rule for them.
    """
    if rule.signal == "error_rate":
        return _rate_rule(rule, "error_rate", inp)
    if rule.signal == "transactions":
        return _rate_rule(rule, "completions", inp)
    if rule.signal == "latency":
        return _latency_rule(rule, inp)
    return []


def latency_deviation(new, ref, quantile: float) -> stats.Deviation:
    """Quantile ratio new/ref with the exact test on requests above the pooled quantile."""
    return stats.latency_shift(new, ref, (quantile,), min_requests=1).by_quantile[0]


def _quantile_ratio(new: Sequence[sketch.Sketch], ref: Sequence[sketch.Sketch], q: float) -> tuple[
        np.ndarray, np.ndarray]:
    q_new = sketch.quantiles_grouped(sketch.stack(list(new)), q)[:, 0]
    q_ref = sketch.quantiles_grouped(sketch.stack(list(ref)), q)[:, 0]
    return q_new, q_ref


def _requests(p: Traffic, row: int) -> int:
    return p.total_n if row < 0 else int(p.n[row])


def _latency_rule(rule: Rule, inp: Inputs) -> list[Candidate]:
    new, ref = inp.new, inp.ref
    if new is None or ref is None:
        return []
    if rule.scope == "service":
        if -1 in inp.skip or not _passes(rule, inp.service_evidence, math.log10(1 / inp.alpha)):
            return []
        chosen = [(-1, -1, 1.0, inp.service_evidence)]
    else:
        has = np.array([_requests(new, i) > 0 and _requests(ref, i) > 0 for i in range(len(new.endpoints))], bool)
        rows = _eligible(rule, inp, has)
        e = np.array([inp.evidence[i] for i, _, _ in rows])
        ok = sequential.e_bh(e, inp.alpha) if len(rows) else np.zeros(0, bool)
        chosen = [(rows[j][0], rows[j][1], rows[j][2], float(e[j])) for j in np.flatnonzero(ok).tolist()
                  if rows[j][1] not in inp.skip and e[j] >= rule.min_score]
    if not chosen:
        return []
    new_sk = [new.sketch_of(row) for row, _, _, _ in chosen]
    ref_sk = [ref.sketch_of(row) for row, _, _, _ in chosen]
    q_new, q_ref = _quantile_ratio(new_sk, ref_sk, rule.quantile)
    ratio = np.maximum(q_new, sketch.MIN_VALUE_MS) / np.maximum(q_ref, sketch.MIN_VALUE_MS)
    out: list[Candidate] = []
    for j, (row, ep, share, score) in enumerate(chosen):
        if not (ratio[j] >= rule.min_effect and q_new[j] >= rule.min_level):
            continue
        # Persistence: each third of the span with data shows at least half the slowdown.
        parts = [p.sketch_of(row) for p in inp.parts if _requests(p, row) >= PART_MIN_REQUESTS] \
            if inp.persistence else []
        if parts:
            pq, rq = _quantile_ratio(parts, [ref_sk[j]] * len(parts), rule.quantile)
            p_ratio = np.maximum(pq, sketch.MIN_VALUE_MS) / np.maximum(rq, sketch.MIN_VALUE_MS)
            if np.any(p_ratio < 1 + (rule.min_effect - 1) / 2):
                continue
        out.append(Candidate(ep, float(q_new[j]), float(q_ref[j]), float(ratio[j]), score,
                             _requests(new, row), share, {"quantile": rule.quantile}))
    return out


def may_hold(rule: Rule, evidence: np.ndarray, service_evidence: float, alpha: float) -> bool:
    """False when `evaluate` cannot find a candidate for `rule` whatever the span's effects:
    the evidence alone rules it out, so the judge need not build the span's tables.

    Service-wide, a candidate needs `_passes` (as `_rate_rule` and `_latency_rule` ask).
    Per endpoint it needs e-BH to reject the row and its evidence to reach `min_score`;
    e-BH's lowest bar over K rows is log10(K / (alpha K)) = log10(1 / alpha), less a margin
    far above the rounding of that quotient, so a row below both bars is never a candidate.
    """
    if rule.scope == "service":
        return _passes(rule, service_evidence, math.log10(1 / alpha))
    bar = max(rule.min_score, math.log10(1 / alpha) - 1e-9)
    return bool((np.asarray(evidence, dtype=np.float64) >= bar).any())
