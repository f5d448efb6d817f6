"""`unique_counts`: the plain-Python path for a few codes gives numpy's arrays exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import detector.aggregate.grouping as grouping
from detector.aggregate.grouping import unique_counts


def _numpy(codes: np.ndarray, weights: np.ndarray | None):
    if weights is None:
        uniq, counts = np.unique(codes, return_counts=True)
        return uniq, counts.astype(np.int64)
    uniq, inv = np.unique(codes, return_inverse=True)
    return uniq, np.bincount(inv, weights=weights, minlength=len(uniq)).astype(np.int64)


def _same(a, b) -> None:
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tolist() == y.tolist()


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 40), 1 << 40) | st.integers(0, 9), max_size=grouping.SMALL_CODES),
       st.sampled_from([np.int64, np.int32]), st.booleans(), st.integers(0, 2**31))
def test_small_path_equals_numpy(values, dtype, weighted, seed):
    codes = np.array([v % (1 << 31) if dtype is np.int32 else v for v in values], dtype=dtype)
    weights = np.random.default_rng(seed).integers(1, 1 << 20, len(codes)) if weighted else None
    _same(unique_counts(codes, weights), _numpy(codes, weights))


@pytest.mark.parametrize("n", [grouping.SMALL_CODES, grouping.SMALL_CODES + 1, 5_000])
def test_both_sides_of_the_size_equal_numpy(n):
    rng = np.random.default_rng(n)
    codes = rng.integers(0, n // 3 + 1, n)
    for weights in (None, rng.integers(1, 50, n)):
        _same(unique_counts(codes, weights), _numpy(codes, weights))
