"""Escalation rules: does a rule's condition hold for the new version now?

A rule names a signal, a scope (service-wide or per endpoint), an effect size
*and* a significance that must both be met, and a duration: the condition is
judged on the last `duration_s` of traffic and must also show (at half the
effect) in each third of that span, so a blip during pod restarts that is
shorter than the rule's duration does not fire it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from detector import stats
from detector.config import Rule, Tests
from detector.judge.evidence import Population


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
    new: Population,
    ref: Population,
    tests: Tests,
    parts: Sequence[Population] = (),
    share_of: Callable[[int], float] | None = None,
) -> list[Candidate]:
    """Candidates for which the rule's condition holds (empty when it does not)."""
    if rule.signal == "error_rate":
        return _rate_rule(rule, new, ref, tests, parts, share_of, lambda p: (p.errors, p.n),
                          lambda p: (p.total_errors, p.total_n), _error_rate)
    if rule.signal == "transactions":
        return _rate_rule(rule, new, ref, tests, parts, share_of, lambda p: (p.txn, p.n),
                          lambda p: (p.total_txn, p.total_n), _txn_drop, only_rows_with_ref=True)
    if rule.signal == "latency":
        return _latency_rule(rule, new, ref, tests, parts, share_of)
    return []


def _rate_rule(rule, new, ref, tests, parts, share_of, rows, totals, test, only_rows_with_ref=False):
    out: list[Candidate] = []
    if rule.scope == "service":
        k, n = totals(new)
        rk, rn = totals(ref)
        if n < tests.min_requests or rn < tests.min_requests or (only_rows_with_ref and rk == 0):
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
    obs, exp, eff, score = test(k, n, rk, rn)
    for i in np.flatnonzero(ok).tolist():
        ep = int(new.endpoints[i])
        share = share_of(ep) if share_of else 1.0
        if not rule.min_traffic_share <= share <= rule.max_traffic_share:
            continue
        if _holds(rule, float(obs[i]), float(eff[i]), float(score[i])) and _persistent(
                rule, parts, ref, rows, test, i):
            out.append(Candidate(ep, float(obs[i]), float(exp[i]), float(eff[i]), float(score[i]),
                                 int(n[i]), share, {}))
    return out


def latency_deviation(new, ref, quantile: float) -> stats.Deviation:
    """Quantile ratio new/ref with the exact test on requests above the pooled quantile."""
    return stats.latency_shift(new, ref, (quantile,), min_requests=1).by_quantile[0]


def _holds(rule: Rule, observed: float, effect: float, score: float) -> bool:
    return effect >= rule.min_effect and score >= rule.min_score and observed >= rule.min_level


def _persistent(rule, parts, ref, pick, test, row) -> bool:
    """Each part of the span shows at least half the effect, where it has data to say so."""
    for p in parts:
        k, n = pick(p)
        rk, rn = pick(ref)
        if row is not None:
            k, n, rk, rn = k[row], n[row], rk[row], rn[row]
        if n < 10:
            continue
        _obs, _exp, eff, _score = (float(np.asarray(x).ravel()[0]) for x in test([k], [n], [rk], [rn]))
        if eff < rule.min_effect / 2:
            return False
    return True


def _latency_rule(rule, new, ref, tests, parts, share_of) -> list[Candidate]:
    out: list[Candidate] = []
    rows = [-1] if rule.scope == "service" else list(range(len(new.endpoints)))
    for row in rows:
        n = new.total_n if row < 0 else int(new.n[row])
        rn = ref.total_n if row < 0 else int(ref.n[row])
        if n < tests.min_requests or rn < tests.min_requests:
            continue
        ep = -1 if row < 0 else int(new.endpoints[row])
        share = 1.0 if row < 0 else (share_of(ep) if share_of else 1.0)
        if not rule.min_traffic_share <= share <= rule.max_traffic_share:
            continue
        dev = latency_deviation(new.sketch_of(row), ref.sketch_of(row), rule.quantile)
        if not (dev.effect >= rule.min_effect and dev.score >= rule.min_score and dev.observed >= rule.min_level):
            continue
        persistent = True
        for p in parts:
            pn = p.total_n if row < 0 else int(p.n[row])
            if pn < 10:
                continue
            pd = latency_deviation(p.sketch_of(row), ref.sketch_of(row), rule.quantile)
            if pd.effect < 1 + (rule.min_effect - 1) / 2:
                persistent = False
                break
        if persistent:
            out.append(Candidate(ep, float(dev.observed), float(dev.expected), float(dev.effect),
                                 float(dev.score), n, share, {"quantile": rule.quantile}))
    return out
