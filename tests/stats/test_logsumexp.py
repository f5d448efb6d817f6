"""`stats.logsumexp` is scipy's logsumexp, bit for bit, on the shapes the sequential evidence uses.

The judge's records (golden test) depend on these values to the last bit, so
the check is exact equality of the float64 bit patterns, -inf and nan included.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from detector.stats.logsumexp import logsumexp


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.mark.parametrize("shape,axis", [((40, 9), -1), ((40, 9), 1), ((7, 30), 1), ((12, 25, 9), 1),
                                        ((9,), -1), ((1, 1), 1), ((3, 1, 9), 1)])
def test_equals_scipy_to_the_last_bit_on_random_arrays(shape, axis):
    rng = np.random.default_rng(17)
    for trial in range(200):
        scale = [1.0, 30.0, 700.0, 1e-3][trial % 4]
        a = rng.normal(0.0, scale, size=shape)
        if trial % 5 == 1:
            a[rng.random(shape) < 0.3] = -np.inf  # empty terms, as the hypergeometric table pads rows
        if trial % 5 == 2:
            a = np.round(a)  # ties at the maximum
        if trial % 7 == 3:
            a[..., 0] = -np.inf
            a.reshape(-1)[: a.size // 3] = -np.inf  # whole rows of -inf
        got = logsumexp(a, axis=axis)
        want = special.logsumexp(a, axis=axis)
        assert _same_bits(got, want), (trial, got, want)


def test_edge_values_match_scipy():
    cases = [np.array([[-np.inf, -np.inf], [0.0, -np.inf]]), np.array([[np.nan, 1.0], [2.0, 2.0]]),
             np.array([[np.inf, 1.0], [np.inf, -np.inf]]), np.array([[800.0, 800.0], [-800.0, -745.2]]),
             np.zeros((0, 9)), np.zeros((3, 0))]
    for a in cases:
        assert _same_bits(logsumexp(a, axis=-1), special.logsumexp(a, axis=-1)), a
