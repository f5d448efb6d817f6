"""Difference in differences: did the new version move more than its reference?

Blame asks it when the new version was compared with the past: over the same
windows, the reference (the stable version, another service) moved too. A
shared cause (a slow database) moves both; the deploy's fault moves the new
version *more*. The statistic is the change of the new version's rate minus
the change of the reference's rate over the same windows, each change against
its own past:

    d = (p_new - p_new_before) - (p_ref - p_ref_before)

with the variance of four independent binomial proportions (Jeffreys-smoothed,
so a side with no events still has a variance) and a one-sided normal test.
Latency is reduced to rates first: the share of requests above each side's
own quantile before (by definition about 1 - q before, and rising when that
side got slower).

    >>> moved_as_much = rate_did(60, 1000, 5, 1000, 62, 1000, 4, 1000)
    >>> round(moved_as_much.effect, 1), moved_as_much.score < 1
    (-0.3, True)
    >>> moved_more = rate_did(160, 1000, 5, 1000, 62, 1000, 4, 1000)
    >>> round(moved_more.effect, 1), moved_more.score > 6
    (9.7, True)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detector.aggregate import sketch
from detector.stats.results import Deviation


def _rate_var(k: float, n: float) -> tuple[float, float]:
    p = (k + 0.5) / (n + 1.0)
    return k / n if n else 0.0, p * (1 - p) / max(n, 1.0)


def rate_did(k_new: float, n_new: float, k_new0: float, n_new0: float,
             k_ref: float, n_ref: float, k_ref0: float, n_ref0: float) -> Deviation:
    """How much more the new version's event rate rose than the reference's (points), and how surely.

    observed / expected: the new version's and the reference's change (points);
    effect: their difference; score: -log10 of the one-sided p-value;
    n: the fewest requests of the four samples.
    """
    (p1, v1), (p0, v0) = _rate_var(k_new, n_new), _rate_var(k_new0, n_new0)
    (r1, w1), (r0, w0) = _rate_var(k_ref, n_ref), _rate_var(k_ref0, n_ref0)
    d_new, d_ref = p1 - p0, r1 - r0
    did = d_new - d_ref
    z = did / math.sqrt(v1 + v0 + w1 + w0)
    log_p = float(special.log_ndtr(-z))
    n = min(n_new, n_new0, n_ref, n_ref0)
    return Deviation(observed=100 * d_new, expected=100 * d_ref, effect=100 * did, score=-log_p / math.log(10),
                     p_value=math.exp(log_p), n=float(n), enough_data=n > 0)


def _above(s: sketch.Sketch, bucket: int) -> int:
    return int(s.counts[s.buckets > bucket].sum())


def latency_did(new: sketch.Sketch, new0: sketch.Sketch, ref: sketch.Sketch, ref0: sketch.Sketch,
                q: float) -> tuple[float, Deviation]:
    """(ratio of quantile ratios (new/new_before) / (ref/ref_before), test on the share above each side's
    quantile before). The ratio is nan where a side has no requests."""
    parts = (new, new0, ref, ref0)
    if any(sketch.count(s) == 0 for s in parts):
        return float("nan"), Deviation(0.0, 0.0, 0.0, 0.0, 1.0, 0.0, False)
    qn1, qn0, qr1, qr0 = (float(sketch.quantile(s, q)) for s in parts)
    ratio = (qn1 / qn0) / (qr1 / qr0) if min(qn0, qr0, qr1) > 0 else float("nan")
    b_new = int(sketch.bucket_index(np.array([qn0]))[0])
    b_ref = int(sketch.bucket_index(np.array([qr0]))[0])
    dev = rate_did(_above(new, b_new), sketch.count(new), _above(new0, b_new), sketch.count(new0),
                   _above(ref, b_ref), sketch.count(ref), _above(ref0, b_ref), sketch.count(ref0))
    return ratio, dev
