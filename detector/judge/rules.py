"""Escalation rules: does a rule's condition hold for the new version now?

A rule names a signal, a scope (service-wide or per endpoint), an effect size
*and* a significance that must both be met, and a duration: the condition is
judged on the last `duration_s` of traffic and must also show (at half the
effect) in each third of that span, so a blip during pod restarts that is
shorter than the rule's duration does not fire it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import numpy as np

from detector import sketch, stats
from detector.config import Rule, Tests
from detector.judge.evidence import Traffic, on_endpoints


@dataclass
class Candidate:
    endpoint: int  # -1 service-wide
    observed: float
    expected: float
    effect: float
    score: float
    n: int
    share: float
    detail: dict


def _error_rate(new_k, new_n, ref_k, ref_n) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed rate, expected rate, effect in points, score; vectorised."""
    dev = stats.error_rate_two_sample_array(new_k, new_n, ref_k, ref_n, min_requests=1)
    return dev.observed, dev.expected, dev.effect, dev.score


def _txn_drop(new_k, new_n, ref_k, ref_n):
    """Completed transactions per request, tested for a drop; effect = relative drop."""
    dev = stats.error_rate_two_sample_array(ref_k, ref_n, new_k, new_n, min_requests=1)
    ref_rate = np.asarray(dev.observed, dtype=float)
    new_rate = np.asarray(dev.expected, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.where(ref_rate > 0, 1.0 - new_rate / ref_rate, 0.0)
    return new_rate, ref_rate, drop, dev.score


def evaluate(
    rule: Rule,
    new: Traffic,
    ref: Traffic,
    tests: Tests,
    parts: Sequence[Traffic] = (),
    share_of: Callable[[int], float] | None = None,
    skip: Collection[int] = (),
) -> list[Candidate]:
    """Candidates for which the rule's condition holds (empty when it does not).

    Endpoints in `skip` (-1: service-wide) are not tested: the caller already
    holds a finding of this rule for them. `ref` and `parts` are compared row
    by row with `new` on `new`'s endpoint table, whatever tables they came with.
    """
    ref = on_endpoints(ref, new.endpoints)
    parts = [on_endpoints(p, new.endpoints) for p in parts]
    if rule.signal == "error_rate":
        return _rate_rule(rule, new, ref, tests, parts, share_of, skip, lambda p: (p.errors, p.n),
                          lambda p: (p.total_errors, p.total_n), _error_rate, _error_rate_effect)
    if rule.signal == "transactions":
        return _rate_rule(rule, new, ref, tests, parts, share_of, skip, lambda p: (p.txn, p.n),
                          lambda p: (p.total_txn, p.total_n), _txn_drop, _txn_drop_effect, only_rows_with_ref=True)
    if rule.signal == "latency":
        return _latency_rule(rule, new, ref, tests, parts, share_of, skip)
    return []


# The exact tests cost a fixed ~0.3 ms per call (tail sums in Python-driven
# blocks), which most rows, far from any threshold, do not need: a rule holds
# only where the effect and the observed level reach the rule's minimums, and
# both are plain ratios of the counts. The screens below compute them with the
# tests' own formulas (stats.error_rate_two_sample_array, the quantile ratio of
# stats.latency_shift_grouped) and keep a row unless it is clearly below; the
# test then decides on the rows kept, with the values it always reported.
_SCREEN_SLACK = 1e-9


def _error_rate_effect(k, n, rk, rn) -> tuple[np.ndarray, np.ndarray]:
    """Observed rate and effect in points, as `_error_rate` reports them."""
    k, n, rk, rn = (np.asarray(x, dtype=np.float64) for x in (k, n, rk, rn))
    with np.errstate(invalid="ignore", divide="ignore"):
        r1, r2 = k / n, rk / rn
    return r1, (r1 - r2) * 100.0


def _txn_drop_effect(k, n, rk, rn) -> tuple[np.ndarray, np.ndarray]:
    """Observed completion rate and relative drop, as `_txn_drop` reports them."""
    k, n, rk, rn = (np.asarray(x, dtype=np.float64) for x in (k, n, rk, rn))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_rate, new_rate = rk / rn, k / n
        drop = np.where(ref_rate > 0, 1.0 - new_rate / ref_rate, 0.0)
    return new_rate, drop


def _may_hold(rule: Rule, observed: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """False only where the effect or the level is clearly below the rule's minimum (NaN is kept)."""
    def below(x: np.ndarray, floor: float) -> np.ndarray:
        return np.asarray(x) < floor - _SCREEN_SLACK * max(1.0, abs(floor))

    return ~(below(effect, rule.min_effect) | below(observed, rule.min_level))


def _rate_rule(rule, new, ref, tests, parts, share_of, skip, rows, totals, test, effect, only_rows_with_ref=False):
    out: list[Candidate] = []
    if rule.scope == "service":
        if -1 in skip:
            return out
        k, n = totals(new)
        rk, rn = totals(ref)
        if n < tests.min_requests or rn < tests.min_requests or (only_rows_with_ref and rk == 0):
            return out
        if not _may_hold(rule, *effect([k], [n], [rk], [rn]))[0]:
            return out
        obs, exp, eff, score = (float(np.asarray(x).ravel()[0]) for x in test([k], [n], [rk], [rn]))
        if _holds(rule, obs, eff, score) and _persistent(rule, parts, ref, totals, test, None):
            out.append(Candidate(-1, obs, exp, eff, score, int(n), 1.0, {}))
        return out
    k, n = rows(new)
    rk, rn = rows(ref)
    ok = (n >= tests.min_requests) & (rn >= tests.min_requests)
    if only_rows_with_ref:
        ok &= rk > 0
    if not ok.any():
        return out
    chosen: list[tuple[int, int, float]] = []  # (row, endpoint, traffic share)
    for i in np.flatnonzero(ok & _may_hold(rule, *effect(k, n, rk, rn))).tolist():
        ep = int(new.endpoints[i])
        if ep in skip:
            continue
        share = share_of(ep) if share_of else 1.0
        if rule.min_traffic_share <= share <= rule.max_traffic_share:
            chosen.append((i, ep, share))
    if not chosen:
        return out
    sel = np.array([i for i, _, _ in chosen])
    obs, exp, eff, score = test(k[sel], n[sel], rk[sel], rn[sel])
    for j, (i, ep, share) in enumerate(chosen):
        if _holds(rule, float(obs[j]), float(eff[j]), float(score[j])) and _persistent(
                rule, parts, ref, rows, test, i):
            out.append(Candidate(ep, float(obs[j]), float(exp[j]), float(eff[j]), float(score[j]),
                                 int(n[i]), share, {}))
    return out


def latency_deviation(new, ref, quantile: float) -> stats.Deviation:
    """Quantile ratio new/ref with the exact test on requests above the pooled quantile."""
    return stats.latency_shift(new, ref, (quantile,), min_requests=1).by_quantile[0]


def _latency_deviations(new: Sequence, ref: Sequence, quantile: float) -> stats.DeviationArray:
    """`latency_deviation` of each (new[i], ref[i]) sketch pair, in one test call."""
    return stats.latency_shift_grouped(sketch.stack(list(new)), sketch.stack(list(ref)), (quantile,),
                                       min_requests=1).by_quantile[0]


def _holds(rule: Rule, observed: float, effect: float, score: float) -> bool:
    return effect >= rule.min_effect and score >= rule.min_score and observed >= rule.min_level


def _persistent(rule, parts, ref, pick, test, row) -> bool:
    """Each part of the span shows at least half the effect, where it has data to say so."""
    rk, rn = pick(ref)
    if row is not None:
        rk, rn = rk[row], rn[row]
    tested = []
    for p in parts:
        k, n = pick(p)
        if row is not None:
            k, n = k[row], n[row]
        if n >= 10:
            tested.append((k, n))
    if not tested:
        return True
    _obs, _exp, eff, _score = test([k for k, _ in tested], [n for _, n in tested], [rk] * len(tested),
                                   [rn] * len(tested))
    return not np.any(np.asarray(eff) < rule.min_effect / 2)


def _requests(p: Traffic, row: int) -> int:
    return p.total_n if row < 0 else int(p.n[row])


def _latency_rule(rule, new, ref, tests, parts, share_of, skip) -> list[Candidate]:
    chosen: list[tuple[int, int, float, int]] = []  # (row, endpoint, traffic share, requests)
    for row in [-1] if rule.scope == "service" else range(len(new.endpoints)):
        n = _requests(new, row)
        if n < tests.min_requests or _requests(ref, row) < tests.min_requests:
            continue
        ep = -1 if row < 0 else int(new.endpoints[row])
        if ep in skip:
            continue
        share = 1.0 if row < 0 else (share_of(ep) if share_of else 1.0)
        if rule.min_traffic_share <= share <= rule.max_traffic_share:
            chosen.append((row, ep, share, n))
    if not chosen:
        return []
    new_sk = [new.sketch_of(row) for row, _, _, _ in chosen]
    ref_sk = [ref.sketch_of(row) for row, _, _, _ in chosen]
    q_new = sketch.quantiles_grouped(sketch.stack(new_sk), rule.quantile)[:, 0]
    q_ref = sketch.quantiles_grouped(sketch.stack(ref_sk), rule.quantile)[:, 0]
    ratio = np.maximum(q_new, sketch.MIN_VALUE_MS) / np.maximum(q_ref, sketch.MIN_VALUE_MS)
    screened = np.flatnonzero(_may_hold(rule, q_new, ratio)).tolist()
    if not screened:
        return []
    devs = _latency_deviations([new_sk[i] for i in screened], [ref_sk[i] for i in screened], rule.quantile)
    holding = [(i, devs[j]) for j, i in enumerate(screened)
               if _holds(rule, devs[j].observed, devs[j].effect, devs[j].score)]
    # Persistence: each third of the span with data shows at least half the slowdown
    # (one test for every third of every row that holds).
    checks = [(h, p.sketch_of(chosen[i][0]), ref_sk[i]) for h, (i, _) in enumerate(holding) for p in parts
              if _requests(p, chosen[i][0]) >= 10]
    weak: set[int] = set()
    if checks:
        effect = _latency_deviations([c[1] for c in checks], [c[2] for c in checks], rule.quantile).effect
        weak = {checks[m][0] for m in np.flatnonzero(effect < 1 + (rule.min_effect - 1) / 2).tolist()}
    out: list[Candidate] = []
    for h, (i, dev) in enumerate(holding):
        if h not in weak:
            _row, ep, share, n = chosen[i]
            out.append(Candidate(ep, float(dev.observed), float(dev.expected), float(dev.effect),
                                 float(dev.score), n, share, {"quantile": rule.quantile}))
    return out
