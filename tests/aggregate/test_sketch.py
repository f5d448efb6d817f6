"""Latency sketch against a numpy oracle: accuracy, exact merges, grouped forms, snapshots.

Quantiles are compared with ``np.quantile(..., method="lower")``: the sketch's
rank rule picks the item of 0-based rank floor(q * (n - 1)), which is exactly
numpy's "lower" definition, so the only difference is the bucket's relative
error of at most ALPHA.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.aggregate import sketch as sk

QS = np.array([0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0])
# Float rounding of log() at a bucket edge can add a few ulps to ALPHA.
TOL = sk.ALPHA * (1 + 1e-9)

latencies = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=200
)


def _assert_close_to_lower(sketch_q: np.ndarray, values: np.ndarray, qs: np.ndarray) -> None:
    exact = np.quantile(values, qs, method="lower")
    # Items at or below MIN_VALUE_MS live in the zero bucket and read back as 0.
    expected_zero = exact <= sk.MIN_VALUE_MS
    assert np.all(sketch_q[expected_zero] == 0.0)
    rel = np.abs(sketch_q[~expected_zero] / exact[~expected_zero] - 1.0)
    assert np.all(rel <= TOL), (rel.max(), qs[~expected_zero][rel.argmax()])


def test_bucket_index_places_values_inside_their_bucket_bounds():
    """Every value above the minimum lies in the (lower, upper] range of its bucket."""
    rng = np.random.default_rng(1)
    v = np.exp(rng.uniform(np.log(sk.MIN_VALUE_MS * 1.001), np.log(sk.MAX_VALUE_MS), 200_000))
    b = sk.bucket_index(v)
    lo, hi = sk.bucket_bounds(b)
    assert b.dtype == np.int32
    assert np.all(v > lo * (1 - 1e-12)) and np.all(v <= hi * (1 + 1e-12))


def test_bucket_index_zero_bucket_and_clamping():
    """Zero, negative and sub-microsecond values use bucket 0; huge and infinite values clamp to the last bucket."""
    b = sk.bucket_index(np.array([0.0, -5.0, sk.MIN_VALUE_MS, 1e-9, 1e12, np.inf]))
    assert b.tolist() == [0, 0, 0, 0, sk.NBUCKETS - 1, sk.NBUCKETS - 1]
    assert sk.bucket_value(b[:1])[0] == 0.0


def test_bucket_index_rejects_nan_with_position():
    """A NaN latency is refused with its index rather than silently bucketed."""
    with pytest.raises(ValueError, match="index 2"):
        sk.bucket_index(np.array([1.0, 2.0, np.nan]))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=sk.MIN_VALUE_MS * 1.0001, max_value=sk.MAX_VALUE_MS))
def test_representative_within_alpha_of_any_member(v):
    """The bucket representative is within ALPHA relative error of any value in the bucket."""
    rep = sk.bucket_value(sk.bucket_index(np.array([v])))[0]
    assert abs(rep / v - 1.0) <= TOL


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.lognormal(mean=3.0, sigma=1.5, size=n),
        lambda rng, n: (rng.pareto(1.2, size=n) + 1.0) * 5.0,
        lambda rng, n: np.where(rng.random(n) < 0.05, 0.0, rng.lognormal(0.0, 2.5, size=n)),
    ],
    ids=["lognormal", "pareto", "lognormal_with_zeros"],
)
@pytest.mark.parametrize("n", [1, 2, 7, 100, 10_000, 200_000])
def test_quantiles_within_one_percent_of_numpy_lower(draw, n):
    """Sketch quantiles match numpy's method='lower' quantiles within 1 % on heavy-tailed data."""
    rng = np.random.default_rng(n)
    values = draw(rng, n)
    _assert_close_to_lower(sk.quantile(sk.from_values(values), QS), values, QS)


@settings(max_examples=150, deadline=None)
@given(latencies, st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5))
def test_quantiles_match_rank_rule_on_arbitrary_data(values, qs):
    """For any data and any q, the sketch returns the bucket of numpy's 'lower' quantile."""
    v = np.array(values)
    q = np.array(qs)
    _assert_close_to_lower(sk.quantile(sk.from_values(v), q), v, q)


def test_quantile_scalar_empty_and_invalid():
    """A scalar q gives a float, an empty sketch gives NaN, and q outside [0, 1] is refused."""
    s = sk.from_values(np.array([10.0, 20.0, 30.0]))
    assert isinstance(sk.quantile(s, 0.5), float)
    assert np.isnan(sk.quantile(sk.empty(), 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sk.quantile(s, 99)


def _same(a: sk.Sketch, b: sk.Sketch) -> bool:
    return np.array_equal(a.buckets, b.buckets) and np.array_equal(a.counts, b.counts)


@settings(max_examples=100, deadline=None)
@given(latencies, latencies, latencies)
def test_merge_is_exact_associative_and_commutative(x, y, z):
    """Merging sketches equals sketching the union, in any order and grouping."""
    a, b, c = (sk.from_values(np.array(v)) for v in (x, y, z))
    union = sk.from_values(np.array(x + y + z))
    assert _same(sk.merge(a, b, c), union)
    assert _same(sk.merge(sk.merge(a, b), c), sk.merge(a, sk.merge(b, c)))
    assert _same(sk.merge(a, b), sk.merge(b, a))
    assert sk.count(sk.merge(a, b, c)) == len(x) + len(y) + len(z)


def test_merge_of_nothing_and_empty_is_empty():
    """Merging no sketches, or only empty ones, gives an empty sketch."""
    assert sk.count(sk.merge()) == 0
    assert _same(sk.merge(sk.empty(), sk.empty()), sk.empty())


def _random_events(seed: int, n_events: int, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Skewed series popularity so some series are empty and some are large.
    series = np.minimum(rng.zipf(1.5, n_events) - 1, n_series - 1)
    values = rng.lognormal(3.0, 1.2, n_events) * (1 + series % 3)
    return series, values


def test_grouped_quantiles_equal_per_series_sketches():
    """quantiles_grouped gives, for every series, what a sketch of that series alone gives."""
    n_series = 300
    series, values = _random_events(3, 50_000, n_series)
    g = sk.group_values(series, values, n_series)
    got = sk.quantiles_grouped(g, QS)
    assert got.shape == (n_series, len(QS))
    for s in range(n_series):
        mine = values[series == s]
        if mine.size == 0:
            assert np.all(np.isnan(got[s]))
        else:
            np.testing.assert_array_equal(got[s], sk.quantile(sk.from_values(mine), QS))
    np.testing.assert_array_equal(sk.counts_grouped(g), np.bincount(series, minlength=n_series))


def test_dense_and_sorted_grouping_agree(monkeypatch):
    """The bincount path and the sort path of group_codes build identical CSRs."""
    series, values = _random_events(4, 20_000, 50)
    dense = sk.group_values(series, values, 50)
    monkeypatch.setattr(sk, "_DENSE_MAX_BINS", 0)
    sorted_ = sk.group_values(series, values, 50)
    for a, b in zip(dense, sorted_):
        np.testing.assert_array_equal(a, b)


def test_group_codes_rejects_codes_outside_series_range():
    """A series id not covered by n_series is an error naming the bound."""
    with pytest.raises(ValueError, match="n_series=2"):
        sk.group_sketches(np.array([0, 2]), np.array([5, 5]), n_series=2)


def test_merge_grouped_builds_exact_rollups():
    """A rollup sketch equals the sketch of all events of its member series; -1 leaves a series out."""
    n_series = 40
    series, values = _random_events(5, 30_000, n_series)
    g = sk.group_values(series, values, n_series)
    rollup_of = np.arange(n_series) % 4
    rollup_of[7] = -1
    r = sk.merge_grouped(g, rollup_of, 4)
    for k in range(4):
        members = np.flatnonzero(rollup_of == k)
        want = sk.from_values(values[np.isin(series, members)])
        assert _same(sk.select(r, k), want)


def test_merge_grouped_rejects_bad_mapping():
    """A rollup map of the wrong length or naming a missing rollup is refused."""
    g = sk.group_values(np.array([0, 1]), np.array([1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="one entry per series"):
        sk.merge_grouped(g, np.array([0]), 1)
    with pytest.raises(ValueError, match="n_rollups=1"):
        sk.merge_grouped(g, np.array([0, 1]), 1)


def test_add_grouped_equals_grouping_all_events():
    """Summing grouped sketches of two windows equals grouping both windows' events at once."""
    s1, v1 = _random_events(6, 5_000, 30)
    s2, v2 = _random_events(7, 8_000, 20)
    total = sk.add_grouped(sk.group_values(s1, v1, 30), sk.group_values(s2, v2, 20))
    want = sk.group_values(np.concatenate((s1, s2)), np.concatenate((v1, v2)), 30)
    for a, b in zip(total, want):
        np.testing.assert_array_equal(a, b)


def test_stack_and_select_round_trip():
    """stack() then select() gives back each sketch unchanged."""
    rng = np.random.default_rng(8)
    sketches = [sk.from_values(rng.lognormal(2, 1, n)) for n in (0, 5, 500)]
    g = sk.stack(sketches)
    assert g.n_series == 3
    for i, s in enumerate(sketches):
        assert _same(sk.select(g, i), s)


def test_snapshots_round_trip():
    """to_arrays/from_arrays and the grouped pair restore identical sketches."""
    series, values = _random_events(9, 3_000, 25)
    g = sk.group_values(series, values, 25)
    back = sk.grouped_from_arrays(sk.grouped_to_arrays(g))
    for a, b in zip(g, back):
        np.testing.assert_array_equal(a, b)
    one = sk.select(g, 0)
    assert _same(sk.from_arrays(sk.to_arrays(one)), one)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"indptr": [0, 2], "buckets": [5, 3], "counts": [1, 1]}, "not strictly increasing"),
        ({"indptr": [0, 2], "buckets": [3, 5], "counts": [1, 0]}, "must be > 0"),
        ({"indptr": [0, 3], "buckets": [3, 5], "counts": [1, 1]}, "broken indptr"),
        ({"indptr": [0, 1], "buckets": [sk.NBUCKETS], "counts": [1]}, "NBUCKETS"),
    ],
)
def test_corrupt_snapshots_are_refused(arrays, message):
    """A snapshot that breaks a CSR invariant is refused with a message saying which."""
    with pytest.raises(ValueError, match=message):
        sk.grouped_from_arrays({k: np.array(v) for k, v in arrays.items()})


def test_snapshot_allows_bucket_drop_at_series_boundary():
    """Buckets may decrease from one series to the next; only within a series must they increase."""
    g = sk.grouped_from_arrays({"indptr": np.array([0, 2, 3]), "buckets": np.array([3, 9, 1]),
                                "counts": np.array([1, 2, 3])})
    assert sk.counts_grouped(g).tolist() == [3, 3]
