"""A persistent error regression on an endpoint with a handful of requests per block.

The rate rules' persistence check cuts the span into six blocks and reads only
blocks with at least `PART_MIN_REQUESTS` requests; with fewer than three such
blocks it does not apply. A rarely used endpoint (0.12 requests/s, 36 requests
in a 300 s span, 6 a block) is therefore judged on its evidence and its effect
over the span, never held back by blocks too small to say anything. What keeps
such an endpoint from a ticket is the evidence against a small "before"
sample (see the second test), not persistence.
"""

from __future__ import annotations

import math

import numpy as np

from detector.config import Rule
from detector.judge import rules
from detector.stats import sequential

RARE = Rule(name="rare-endpoint-errors", signal="error_rate", scope="endpoint", action="ticket", min_effect=2.0,
            min_score=0.0, max_traffic_share=0.05, duration_s=300)


def _tables(errors_at: list[int], windows: int = 30) -> tuple[np.ndarray, ...]:
    """One request a window on the new version, errors in the windows given; the reference
    100 requests a window with one error (1 %)."""
    k = np.zeros((windows, 1))
    k[errors_at, 0] = 1.0
    n = np.ones((windows, 1))
    return k, n, np.full((windows, 1), 1.0), np.full((windows, 1), 100.0)


def _inputs(tables) -> rules.Inputs:
    return rules.Inputs(np.array([4], np.int32), np.array([9.0]), 9.0, 0.001, tables=tables,
                        share_of=lambda ep: 0.01)


def test_a_sparse_endpoints_spread_regression_holds_although_no_block_has_ten_requests():
    assert 30 // rules.PERSISTENCE_BLOCKS < rules.PART_MIN_REQUESTS
    (c,) = rules.evaluate(RARE, _inputs(_tables([2, 8, 13, 19, 26])))  # 5 errors in 30, one every ~6 requests
    assert c.endpoint == 4 and c.effect > 10.0


def test_the_same_regression_without_evidence_does_not_hold():
    """The evidence decides for sparse endpoints: below the threshold nothing holds, whatever the effect."""
    inp = _inputs(_tables([2, 8, 13, 19, 26]))
    inp.evidence = np.array([math.log10(1 / 0.001) - 0.1])
    assert rules.evaluate(RARE, inp) == []


def test_a_fifteen_minute_before_sample_of_a_rare_endpoint_caps_the_evidence_below_the_threshold():
    """Sweep seed 5, deploy sw-12: +12.8 points on an endpoint at 0.12 requests/s, 2 errors in
    122 requests in the 15 minutes before the deploy. However many requests the new version
    serves at its 14.6 %, the evidence against that sample stays below the rule's threshold
    (the budget 0.001 over eight request rules, e-BH over two rare endpoints); twice the
    sample would pass it within 400 requests."""
    need = math.log10(2 / (0.001 / 8))
    ceiling = max(float(sequential.before_log10(0.146 * n, n, 2, 122)) for n in range(100, 100_000, 100))
    assert ceiling < need - 1.0
    assert float(sequential.before_log10(0.146 * 400, 400, 4, 244)) > need


ALL = Rule(name="errors-everywhere", signal="error_rate", scope="service", action="rollback", min_effect=5.0,
           min_score=0.0, duration_s=60)


def _quiet_service(failing: list[int]) -> rules.Inputs:
    """A quiet service: 3 requests a window over a 60 s span (18 requests, no block of 10), every
    request failing in the windows given; the service before the deploy 300 requests, none failing."""
    k = np.zeros((6, 1))
    k[failing, 0] = 3.0
    tables = (k, np.full((6, 1), 3.0), np.zeros((6, 1)), np.full((6, 1), 50.0))
    return rules.Inputs(np.array([4], np.int32), np.array([9.0]), 9.0, 0.001, tables=tables,
                        share_of=lambda ep: 1.0)


def test_a_restart_blip_on_a_quiet_service_holds_nothing_although_no_block_has_ten_requests():
    """Too few requests for blocks of time, the span's first and last thirds of its requests still
    need half the effect: a pod restart failing every request for 40 s of a 60 s span, which
    misses the span's start, holds nothing; the same failures over the whole span hold."""
    assert rules.evaluate(ALL, _quiet_service([2, 3, 4, 5])) == []
    assert rules.evaluate(ALL, _quiet_service([0, 1, 2, 3])) == []
    (c,) = rules.evaluate(ALL, _quiet_service([0, 1, 2, 3, 4, 5]))
    assert c.effect == 100.0
