"""One window compared with the service before the deploy cannot carry a span.

Seed 99 of the judge sweep (trial 29, benign) was ticketed: late in the
rollout the stable version served too little to be compared with, so the
windows were compared with the service before the deploy, and one window
during a slowdown shared by every version carried almost all of 10^11.6 of
evidence. Against the stable version a window counts at most
10^`window_evidence_cap`; the windows compared with the before-sample are
now bounded the same way (`accumulate.clip_before`: the window's events are
lowered until that window alone says at most the cap), while a regression
that stays accumulates as before.
"""

from __future__ import annotations

import math

import numpy as np

from detector.aggregate import sketch
from detector.judge import accumulate
from detector.judge.evidence import Population
from detector.stats import sequential

CAP = 1.0  # the shipped verification.window_evidence_cap
BUDGET = 4.0  # log10(1/alpha) of a rule sharing 0.001 among ten rules


def _pop(n: int, errors: int) -> Population:
    ep = np.array([0], np.int32)
    rows = [sketch.Sketch(np.array([100], np.int32), np.array([n], np.int64))]
    return Population(ep, np.array([n], np.int64), np.array([errors], np.int64), np.zeros(1, np.int64),
                      sketch.stack(rows), sketch.merge(*rows), n, errors, 0, 1, 10.0)


PRE = _pop(9000, 90)  # 1 % errors in the 15 minutes before the deploy
NOBODY = _pop(0, 0)  # the stable version served nothing (blue/green, or a finished rollout)


def _evidence(errors_per_window: list[int], cap: float, n: int = 250) -> float:
    evidence: dict = {}
    for k in errors_per_window:
        new = _pop(n, k)
        llr, before = accumulate.window_llr("error_rate", new, NOBODY, PRE, True, cap_log10=cap)
        accumulate.add_window(evidence, "error_rate", new.endpoints, llr, before, cap)
    r, m = accumulate.before_counts("error_rate", PRE)
    return float(accumulate.log10_evidence(evidence, "error_rate", PRE.endpoints, r, m)[0][0])


# 29 windows like before (2-3 errors of 250), one where 60 % failed (a shared incident).
ONE_BAD_WINDOW = [2, 3, 2, 3, 2] * 3 + [150] + [3, 2, 3, 2, 3, 2, 2, 3, 2, 3, 2, 3, 2, 3]


def test_without_a_cap_one_window_against_before_carries_a_rule():
    assert _evidence(ONE_BAD_WINDOW, math.inf) > BUDGET  # the class of the false ticket


def test_one_window_against_before_counts_at_most_the_cap():
    assert _evidence([150], CAP) <= CAP + 1e-6
    assert _evidence(ONE_BAD_WINDOW, CAP) <= CAP + 1e-6


def test_a_regression_that_stays_still_accumulates():
    # +5 points in every window (15 errors of 250 against 1 %): each window alone is
    # near the cap, together far beyond any budget.
    assert _evidence([15] * 12, CAP) > BUDGET
    assert _evidence([15] * 12, CAP) > 0.5 * _evidence([15] * 12, math.inf)


def test_clip_lowers_only_what_is_over_the_cap():
    k = accumulate.clip_before(np.array([2.0, 150.0, 0.0]), np.array([250.0] * 3), np.array([90.0] * 3),
                               np.array([9000.0] * 3), CAP)
    assert k[0] == 2.0 and k[2] == 0.0 and 2.0 < k[1] < 150.0
    assert sequential.before_log10(k[1], 250.0, 90.0, 9000.0) <= CAP + 1e-9
    assert sequential.before_log10(k[1] + 1, 250.0, 90.0, 9000.0) > CAP
