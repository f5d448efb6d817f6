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
  itself, and two thirds of them and the first and the last at least half
  of it. Latency rules need each third of the span with data to show half
  of it. A blip that does not reach from the span's start to its end (pod
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
END_MIN_REQUESTS = 5  # fewer blocks qualify: the span's first and last thirds of requests, each at least this many


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


def _end_thirds(per_window: np.ndarray) -> tuple[slice, slice] | None:
    """The windows holding the first and the last third of a span's requests (None when a
    third is fewer than `END_MIN_REQUESTS` requests: too few to say anything)."""
    total = float(per_window.sum())
    if total < 3 * END_MIN_REQUESTS:
        return None
    cum = np.cumsum(per_window)
    first = int(np.searchsorted(cum, total / 3)) + 1
    last = int(np.searchsorted(cum, 2 * total / 3, side="right"))
    return slice(0, first), slice(last, len(per_window))


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
        # Persistence: the median block of the span shows the effect, two thirds of
        # the blocks and the first and last of them at least half of it. A blip that
        # does not cover the span from its start to its end (a pod restart shorter
        # than the span less two blocks) holds nothing however strong it was, and
        # noise in quiet blocks cannot carry it (the median block needs the full effect).
        effects = []
        for part in _blocks(len(kk), PERSISTENCE_BLOCKS):
            pk, pn, pr, pm = (a[part].ravel()[:, None] for a in (kk, nn, rr, mm))
            if pn.sum() >= PART_MIN_REQUESTS:
                effects.append(float(_rate_effect(signal, pk, pn, pr, pm)[2][0]))
        if len(effects) >= 3:
            e = np.nan_to_num(np.array(effects), nan=-np.inf)
            if not (np.median(e) >= rule.min_effect and np.quantile(e, 1 / 3) >= rule.min_effect / 2
                    and min(e[0], e[-1]) >= rule.min_effect / 2):
                continue
        else:
            # Too few requests for blocks of time: the span's first and last thirds of its
            # requests (windows in order) still need half the effect, so a blip on a quiet
            # service that misses the span's start or end holds nothing either.
            ends = _end_thirds(nn.sum(axis=1))
            if ends is not None and min(
                    float(_rate_effect(signal, *(a[part].ravel()[:, None] for a in (kk, nn, rr, mm)))[2][0])
                    for part in ends) < rule.min_effect / 2:
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
        parts = [p.sketch_of(row) for p in inp.parts if _requests(p, row) >= PART_MIN_REQUESTS]
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
