"""Always-valid evidence: false alarms stay within the budget at every look, and strong
evidence on few requests is enough."""

from __future__ import annotations

import math

import numpy as np

from detector.stats import sequential as S


def _ever_crosses(rng, windows, alpha, same: bool, p=0.02, n_rate=8, m_rate=30) -> bool:
    """One null run: equal rates on both sides, looked at after every window."""
    total = np.zeros(S.G)
    need = math.log10(1 / alpha)
    before_n = 900
    before_k = rng.binomial(before_n, p)
    k_sum = n_sum = 0
    for _ in range(windows):
        n = rng.poisson(n_rate)
        k = rng.binomial(n, p)
        if same:
            m = rng.poisson(m_rate)
            r = rng.binomial(m, p)
            total += S.hypergeometric_llr([k], [n], [m], [k + r])[0]
            e = S.log10_evidence(total)
        else:
            k_sum, n_sum = k_sum + k, n_sum + n
            e = S.before_log10(k_sum, n_sum, before_k, before_n)
        if e >= need:
            return True
    return False


def test_false_alarms_stay_within_the_budget_however_often_one_looks():
    rng = np.random.default_rng(11)
    alpha = 0.05
    for same in (True, False):
        runs = 300
        alarms = sum(_ever_crosses(rng, 120, alpha, same) for _ in range(runs))
        # Ville: P(ever) <= alpha; allow the binomial noise of 300 runs (sd ~ 0.013).
        assert alarms / runs <= alpha + 0.03, (same, alarms)


def test_a_fixed_sample_test_looked_at_every_window_would_not():
    """The reason for all this: a per-look z test at the same alpha, looked at 120 times, alarms far more often."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(300):
        k = n = r = m = 0
        for _w in range(120):
            dn, dm = rng.poisson(8), rng.poisson(30)
            n, m = n + dn, m + dm
            k, r = k + rng.binomial(dn, 0.02), r + rng.binomial(dm, 0.02)
            p = (k + r) / max(n + m, 1)
            se = math.sqrt(max(p * (1 - p) * (1 / max(n, 1) + 1 / max(m, 1)), 1e-12))
            if n and m and (k / n - r / m) / se > 1.645:
                alarms += 1
                break
    assert alarms / 300 > 0.15


def test_strong_evidence_on_few_requests_is_enough():
    # 18 of 18 calls fail on an endpoint that failed 0.5 % of the time before (2,000 requests).
    assert S.before_log10(18, 18, 10, 2000) > 10
    # The same against the stable version in the same windows, 18 one-request windows.
    llr = S.hypergeometric_llr([1] * 18, [1] * 18, [60] * 18, [1] * 18).sum(axis=0)
    assert S.log10_evidence(llr) > 8
    # A quiet service: 65 requests, half of them failing, against 0 of 32 before.
    assert S.before_log10(33, 65, 0, 32) > 4.5
    # Healthy: no evidence, however many requests.
    assert S.before_log10(50, 10_000, 5, 1000) < 0


def test_hypergeometric_strata_without_information_say_nothing():
    # No reference requests, no events, or every request an event: the margins fix the count.
    llr = S.hypergeometric_llr([3, 0, 5], [10, 10, 5], [0, 20, 7], [3, 0, 12])
    assert np.all(llr == 0)


def test_e_bh_rejects_the_largest_e_values_that_clear_their_step():
    e = np.log10(np.array([2000.0, 15.0, 700.0, 1.0]))
    assert S.e_bh(e, 0.01).tolist() == [True, False, True, False]  # 4/(0.01*2) = 200 <= 700
    assert S.e_bh(e, 0.001).tolist() == [False] * 4  # 4/(0.001*1) = 4000 > 2000


def test_detectable_rise_shrinks_with_traffic():
    d = [S.detectable_rise(n, 9, 900, 3.85) for n in (10, 65, 300, 3000, 30000)]
    assert all(a > b for a, b in zip(d, d[1:]))
    assert d[0] > 0.2
    # ... down to what the sample before the deploy allows: 900 requests can't vouch for a point.
    assert d[-1] > 0.02 and S.detectable_rise(30000, 900, 90000, 3.85) < 0.01
