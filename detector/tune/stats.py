"""Small exact statistics for tuning: Wilson intervals, Fisher's exact test, Holm's correction."""

from __future__ import annotations

import math

from scipy.stats import fisher_exact


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n ((0, 1) when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def fisher(k: int, n: int, k_rest: int, n_rest: int) -> float:
    """Two-sided p of Fisher's exact test: k of n in the group against k_rest of n_rest outside it."""
    _, p = fisher_exact([[k, n - k], [k_rest, n_rest - k_rest]], alternative="two-sided")
    return float(p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p values (family-wise error control), in the input's order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adj = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj


def needed(k: int, n: int, k_rest: int, n_rest: int, alpha: float, cap: int = 100_000) -> int | None:
    """How many deploys of the group, failing at the observed rate k/n (the rest unchanged), would
    make its test significant at `alpha`; None when the rates are equal (no count would) or above `cap`."""
    if n == 0 or n_rest == 0:
        return None
    rate, rest = k / n, k_rest / n_rest
    if abs(rate - rest) < 1e-12:
        return None

    def sig(m: int) -> bool:
        return fisher(round(rate * m), m, k_rest, n_rest) < alpha

    hi = max(n, 1)
    while not sig(hi):
        hi *= 2
        if hi > cap:
            return None
    lo = max(n, 1) - 1 if hi == max(n, 1) else hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sig(mid):
            hi = mid
        else:
            lo = mid
    return hi
