"""`rules.may_hold`: the judge skips a rule's span tables when the evidence alone rules out a
candidate. Whenever it says no, `rules.evaluate` must find nothing, whatever the span holds;
at the bar itself it must say yes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from detector.config import Rule
from detector.judge import rules


def _tables(rng: np.random.Generator, windows: int, rows: int) -> tuple[np.ndarray, ...]:
    """A strong regression on every row: the new version fails 30-60 % of requests, the reference 1 %."""
    n = rng.integers(5, 60, size=(windows, rows)).astype(np.float64)
    k = np.floor(n * rng.uniform(0.3, 0.6, size=(windows, rows)))
    m = np.full((windows, rows), 200.0)
    return k, n, np.full((windows, rows), 2.0), m


_NEAR_BAR = st.floats(-2.0, 2.0) | st.sampled_from([0.0, -1e-12, 1e-12, math.log10(2), math.log10(3)]) \
    | st.just(math.nan)


@settings(max_examples=400, deadline=None)
@given(scope=st.sampled_from(["service", "endpoint"]), signal=st.sampled_from(["error_rate", "transactions"]),
       min_score=st.sampled_from([0.0, 1.0, 3.0, 6.0]), alpha=st.sampled_from([0.05, 0.001, 0.000125]),
       rows=st.integers(1, 6), windows=st.integers(1, 30), seed=st.integers(0, 2**31 - 1),
       offsets=st.lists(_NEAR_BAR, min_size=7, max_size=7), service=_NEAR_BAR)
def test_no_candidate_where_the_gate_says_none_can_hold(scope, signal, min_score, alpha, rows, windows, seed,
                                                         offsets, service):
    """Evidence drawn around e-BH's bars (log10(K / (alpha j))) and the rule's floor."""
    rule = Rule(name="r", signal=signal, action="ticket", scope=scope, min_effect=0.01, min_score=min_score)
    bar = math.log10(1 / alpha)
    ev = bar + np.array(offsets[:rows])
    service = bar + service
    inp = rules.Inputs(np.arange(rows, dtype=np.int32), ev, service, alpha,
                       tables=_tables(np.random.default_rng(seed), windows, rows), share_of=lambda ep: 0.5)
    if signal == "transactions":  # completions drop: the new version completes few, the reference most
        k, n, r, m = inp.tables
        inp.tables = (n - k, n, m - r, m)
    if not rules.may_hold(rule, ev, service, alpha):
        assert rules.evaluate(rule, inp) == []


def test_at_the_bar_the_gate_lets_the_rule_be_evaluated_and_it_holds():
    """One endpoint exactly at log10(1/alpha): e-BH rejects it, so the gate must not skip it."""
    alpha = 0.001 / 12
    rule = Rule(name="r", signal="error_rate", action="ticket", scope="endpoint", min_effect=1.0, min_score=0.0)
    bar = math.log10(1 / alpha)
    inp = rules.Inputs(np.array([3], np.int32), np.array([bar]), 0.0, alpha,
                       tables=_tables(np.random.default_rng(1), 20, 1), share_of=lambda ep: 1.0)
    assert rules.may_hold(rule, inp.evidence, 0.0, alpha)
    (c,) = rules.evaluate(rule, inp)
    assert c.endpoint == 3
    below = np.array([np.nextafter(bar - 1e-9, -np.inf)])
    assert not rules.may_hold(rule, below, 0.0, alpha)
    inp.evidence = below
    assert rules.evaluate(rule, inp) == []


def test_service_rules_are_gated_by_the_service_evidence_only():
    alpha = 0.001
    rule = Rule(name="r", signal="error_rate", action="page", scope="service", min_effect=1.0, min_score=4.0)
    quiet_rows = np.array([-3.0, -1.0])
    assert rules.may_hold(rule, quiet_rows, 4.0, alpha)
    assert not rules.may_hold(rule, np.array([20.0, 20.0]), 3.99, alpha)
    inp = rules.Inputs(np.array([1, 2], np.int32), quiet_rows, 4.0, alpha,
                       tables=_tables(np.random.default_rng(2), 12, 2))
    (c,) = rules.evaluate(rule, inp)
    assert c.endpoint == -1
