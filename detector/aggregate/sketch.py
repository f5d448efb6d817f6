"""Mergeable latency sketch: log-bucketed counts with 1 % relative accuracy.

This module owns the latency summary every window keeps per series. It is a
DDSketch (Masson, Rim & Lee, VLDB 2019) with a fixed, bounded bucket grid so
that whole windows of many series can be handled as flat numpy arrays:

* A value ``v`` (milliseconds) above ``MIN_VALUE_MS`` falls in the bucket of
  key ``ceil(log_gamma(v))`` with ``gamma = (1 + ALPHA) / (1 - ALPHA)``; the
  bucket's representative ``2 * gamma**key / (gamma + 1)`` is within
  ``ALPHA`` relative error of every value in it. Values at or below
  ``MIN_VALUE_MS`` go to bucket 0 (the zero bucket, represented by 0.0);
  values above ``MAX_VALUE_MS`` are clamped into the last bucket.
* Bucket numbers are shifted keys, ``0 <= bucket < NBUCKETS``, so a
  (series, bucket) pair packs into one int64 code ``series * NBUCKETS +
  bucket``. Windows accumulate codes; grouping them is one sort or one
  ``bincount``, never a Python loop per event or per series.

Two representations:

``Sketch(buckets, counts)``
    One series: sorted unique int32 buckets and their int64 counts.
``GroupedSketch(indptr, buckets, counts)``
    Many series in CSR form: series ``s`` owns entries
    ``indptr[s]:indptr[s + 1]``, buckets sorted within each series.

Both are exact under merge (bucket-wise count sums), so partitions, windows
and rollups combine without loss. Quantiles follow DDSketch's rank rule: the
q-quantile is the value of the item of 0-based rank ``floor(q * (n - 1))`` in
sorted order, i.e. numpy's ``np.quantile(..., method="lower")``, reported as
its bucket's representative.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

ALPHA = 0.01
GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA

MIN_VALUE_MS = 1e-3  # one microsecond: below this, latency is "zero" for our purposes
MAX_VALUE_MS = 1e7  # ~2.8 hours: anything slower is clamped, it is a timeout either way

# bucket = key - KEY_OFFSET, with bucket 1 the first key above MIN_VALUE_MS.
KEY_OFFSET = math.ceil(math.log(MIN_VALUE_MS) * _INV_LOG_GAMMA) - 1
NBUCKETS = math.ceil(math.log(MAX_VALUE_MS) * _INV_LOG_GAMMA) - KEY_OFFSET + 1
ZERO_BUCKET = 0

# Grouping by bincount allocates n_series * NBUCKETS int64 counters; above this
# many the sort-based path is cheaper in memory (and not much slower).
_DENSE_MAX_BINS = 1 << 22
# Merging counted codes (sketch sums) by bincount scans every bin; it beats
# the sort (of codes that come as sorted runs, one per sketch merged) while
# there are at most this many bins per code.
_DENSE_BINS_PER_CODE = 4
_FLOAT_EXACT = 1 << 53  # float64 holds every integer below this exactly

_REPRESENTATIVE = np.concatenate(
    (
        [0.0],
        2.0 * np.exp((np.arange(1, NBUCKETS) + KEY_OFFSET) * _LOG_GAMMA) / (GAMMA + 1.0),
    )
)


class Sketch(NamedTuple):
    """One series' latency distribution: sorted unique buckets and their counts."""

    buckets: np.ndarray  # int32, strictly increasing, in [0, NBUCKETS)
    counts: np.ndarray  # int64, > 0, same length


class GroupedSketch(NamedTuple):
    """Sketches of series 0..n_series-1 in CSR form (see module docstring)."""

    indptr: np.ndarray  # int64, length n_series + 1, indptr[0] == 0
    buckets: np.ndarray  # int32, sorted within each series
    counts: np.ndarray  # int64, > 0

    @property
    def n_series(self) -> int:
        return len(self.indptr) - 1


# --------------------------------------------------------------------------- buckets


def bucket_index(values_ms: np.ndarray) -> np.ndarray:
    """Bucket of each latency value (ms) as int32 in [0, NBUCKETS).

    NaN is refused because it has no place on the grid and would silently
    become a bucket; the decoder rejects non-finite latencies before this.
    """
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size and np.isnan(v).any():
        bad = int(np.flatnonzero(np.isnan(v.ravel()))[0])
        raise ValueError(
            f"latency values must not be NaN (got NaN at index {bad}); "
            "drop or reject non-finite latencies before sketching"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.ceil(np.log(np.maximum(v, MIN_VALUE_MS)) * _INV_LOG_GAMMA)
    # Clip in float first so +inf and huge values cannot wrap when cast.
    b = np.clip(keys - KEY_OFFSET, 1, NBUCKETS - 1).astype(np.int32)
    b[v <= MIN_VALUE_MS] = ZERO_BUCKET
    return b


def bucket_value(buckets: np.ndarray) -> np.ndarray:
    """Representative value (ms) of each bucket: within ALPHA of every member."""
    return _REPRESENTATIVE[np.asarray(buckets, dtype=np.intp)]


def bucket_bounds(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper] value range (ms) of each bucket; the zero bucket is [0, MIN_VALUE_MS]."""
    b = np.asarray(buckets, dtype=np.int64)
    upper = np.exp((b + KEY_OFFSET) * _LOG_GAMMA)
    lower = upper / GAMMA
    zero = b == ZERO_BUCKET
    return np.where(zero, 0.0, lower), np.where(zero, MIN_VALUE_MS, upper)


# --------------------------------------------------------------------------- one series


def empty() -> Sketch:
    return Sketch(np.empty(0, np.int32), np.empty(0, np.int64))


def from_values(values_ms: np.ndarray) -> Sketch:
    """Sketch of a 1-D array of latencies in milliseconds."""
    b = bucket_index(np.ravel(values_ms))
    dense = np.bincount(b, minlength=NBUCKETS)
    nz = np.flatnonzero(dense)
    return Sketch(nz.astype(np.int32), dense[nz].astype(np.int64))


def from_buckets(buckets: np.ndarray, counts: np.ndarray | None = None) -> Sketch:
    """Sketch of (possibly repeated, unsorted) buckets with optional counts per entry."""
    b = np.asarray(buckets, dtype=np.int64).ravel()
    c = np.ones(len(b), np.int64) if counts is None else np.asarray(counts, dtype=np.int64).ravel()
    _check_buckets(b, "buckets")
    if len(c) != len(b):
        raise ValueError(f"buckets and counts differ in length ({len(b)} vs {len(c)}); pass one count per bucket")
    g = group_codes(b, n_series=1, counts=c)
    return Sketch(g.buckets, g.counts)


def merge(*sketches: Sketch) -> Sketch:
    """Exact union: counts of equal buckets add up."""
    if not sketches:
        return empty()
    b = np.concatenate([s.buckets for s in sketches]).astype(np.intp)
    c = np.concatenate([s.counts for s in sketches]).astype(np.int64)
    dense = np.zeros(NBUCKETS, np.int64)
    np.add.at(dense, b, c)
    nz = np.flatnonzero(dense)
    return Sketch(nz.astype(np.int32), dense[nz])


def count(sketch: Sketch) -> int:
    return int(sketch.counts.sum())


def quantile(sketch: Sketch, q: float | np.ndarray) -> float | np.ndarray:
    """q-quantile(s) (ms) by DDSketch's rank rule; NaN for an empty sketch.

    Matches ``np.quantile(values, q, method="lower")`` to within ALPHA relative
    error (exactly, up to float rounding at bucket edges).
    """
    qs = check_quantiles(q)
    g = GroupedSketch(np.array([0, len(sketch.buckets)], np.int64), sketch.buckets, sketch.counts)
    out = quantiles_grouped(g, qs)[0]
    return float(out[0]) if np.ndim(q) == 0 else out


def to_arrays(sketch: Sketch) -> dict[str, np.ndarray]:
    """Plain arrays for state snapshots (see `from_arrays`)."""
    return {"buckets": sketch.buckets.astype(np.int32), "counts": sketch.counts.astype(np.int64)}


def from_arrays(arrays: dict[str, np.ndarray]) -> Sketch:
    """Restore a sketch from `to_arrays` output, validating the invariants."""
    b = np.asarray(arrays["buckets"])
    c = np.asarray(arrays["counts"])
    _check_csr(np.array([0, len(b)], np.int64), b, c)
    return Sketch(b.astype(np.int32), c.astype(np.int64))


# --------------------------------------------------------------------------- many series


def encode(series_ids: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Pack (series, bucket) pairs into int64 codes ``series * NBUCKETS + bucket``."""
    return np.asarray(series_ids, dtype=np.int64) * NBUCKETS + np.asarray(buckets, dtype=np.int64)


def group_codes(codes: np.ndarray, n_series: int, counts: np.ndarray | None = None) -> GroupedSketch:
    """CSR sketches from codes accumulated over a window (one per event, or with counts).

    Codes must lie in [0, n_series * NBUCKETS). Without counts every code is one
    observation; with counts each code carries that many (used to merge CSRs).
    """
    codes = np.asarray(codes, dtype=np.int64).ravel()
    total_bins = int(n_series) * NBUCKETS
    if n_series < 0:
        raise ValueError(f"n_series must be >= 0 (got {n_series})")
    if codes.size:
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= total_bins:
            raise ValueError(
                f"codes must lie in [0, n_series * NBUCKETS) = [0, {total_bins}) "
                f"(got min={lo}, max={hi}); check n_series={n_series} covers every series id"
            )
    if counts is None:
        if total_bins <= _DENSE_MAX_BINS:
            dense = np.bincount(codes, minlength=total_bins)
            uniq = np.flatnonzero(dense)
            sums = dense[uniq].astype(np.int64)
        else:
            uniq, sums = _run_lengths(np.sort(codes))
    else:
        c = np.asarray(counts, dtype=np.int64).ravel()
        if len(c) != len(codes):
            raise ValueError(f"codes and counts differ in length ({len(codes)} vs {len(c)})")
        if c.size and c.min() < 0:
            raise ValueError(f"counts must be >= 0 (got {int(c.min())})")
        if _dense_is_exact_and_cheaper(total_bins, c):
            dense = np.bincount(codes, weights=c, minlength=total_bins)
            uniq = np.flatnonzero(dense)
            sums = dense[uniq].astype(np.int64)
        else:
            order = np.argsort(codes, kind="stable")
            sc = codes[order]
            starts = np.flatnonzero(np.concatenate(([True], sc[1:] != sc[:-1]))) if sc.size else np.empty(0, np.intp)
            uniq = sc[starts]
            sums = np.add.reduceat(c[order], starts) if sc.size else np.empty(0, np.int64)
            keep = sums > 0
            uniq, sums = uniq[keep], sums[keep]
    series = uniq // NBUCKETS
    indptr = np.searchsorted(series, np.arange(n_series + 1), side="left").astype(np.int64)
    return GroupedSketch(indptr, (uniq - series * NBUCKETS).astype(np.int32), sums.astype(np.int64))


def group_sketches(
    series_ids: np.ndarray, buckets: np.ndarray, n_series: int, counts: np.ndarray | None = None
) -> GroupedSketch:
    """CSR sketches from per-event (series id, bucket) arrays."""
    b = np.asarray(buckets)
    if b.size:
        _check_buckets(b, "buckets")
    return group_codes(encode(series_ids, b), n_series, counts)


def group_values(series_ids: np.ndarray, values_ms: np.ndarray, n_series: int) -> GroupedSketch:
    """CSR sketches straight from per-event latencies."""
    return group_codes(encode(series_ids, bucket_index(values_ms)), n_series)


def counts_grouped(g: GroupedSketch) -> np.ndarray:
    """Number of observations per series (int64, length n_series)."""
    cum = np.concatenate(([0], np.cumsum(g.counts, dtype=np.int64)))
    return cum[g.indptr[1:]] - cum[g.indptr[:-1]]


def quantiles_grouped(g: GroupedSketch, qs: float | np.ndarray) -> np.ndarray:
    """Quantiles (ms) of every series at once: float64 [n_series, n_qs], NaN where empty."""
    b = quantile_buckets_grouped(g, qs)
    return np.where(b >= 0, _REPRESENTATIVE[np.maximum(b, 0)], np.nan)


def quantile_buckets_grouped(g: GroupedSketch, qs: float | np.ndarray) -> np.ndarray:
    """Bucket holding each series' q-quantile: int64 [n_series, n_qs], -1 where empty.

    One global cumsum over all counts; the item of rank r in series s is the
    first entry whose cumulative count exceeds ``offset[s] + r``, found by a
    single searchsorted on the global cumsum.
    """
    q = np.atleast_1d(check_quantiles(qs))
    cum = np.cumsum(g.counts, dtype=np.int64)
    cum0 = np.concatenate(([0], cum))
    offset = cum0[g.indptr[:-1]]
    n = cum0[g.indptr[1:]] - offset
    rank = np.floor(q[None, :] * (np.maximum(n, 1) - 1)[:, None]).astype(np.int64)
    pos = np.searchsorted(cum, offset[:, None] + rank, side="right")
    out = np.full((g.n_series, len(q)), -1, np.int64)
    nonempty = n > 0
    if cum.size:
        out[nonempty] = g.buckets[np.minimum(pos[nonempty], cum.size - 1)]
    return out


def merge_grouped(g: GroupedSketch, rollup_of: np.ndarray, n_rollups: int) -> GroupedSketch:
    """Exact rollup sketches: rollup r is the merge of every series s with rollup_of[s] == r.

    ``rollup_of`` has one entry per series; -1 leaves a series out (e.g. unknown
    version). For several rollup levels (endpoint -> service) call once per level.
    """
    rollup_of = np.asarray(rollup_of, dtype=np.int64)
    if rollup_of.shape != (g.n_series,):
        raise ValueError(
            f"rollup_of must have one entry per series (shape ({g.n_series},), got {rollup_of.shape})"
        )
    if rollup_of.size and (rollup_of.max() >= n_rollups or rollup_of.min() < -1):
        raise ValueError(
            f"rollup_of values must be -1 or in [0, n_rollups={n_rollups}) "
            f"(got min={int(rollup_of.min())}, max={int(rollup_of.max())})"
        )
    entry_rollup = np.repeat(rollup_of, np.diff(g.indptr))
    keep = entry_rollup >= 0
    return group_codes(encode(entry_rollup[keep], g.buckets[keep]), n_rollups, g.counts[keep])


def add_grouped(*groups: GroupedSketch) -> GroupedSketch:
    """Exact sum of grouped sketches over the same series numbering (e.g. several windows).

    The result has as many series as the largest input.
    """
    if not groups:
        return GroupedSketch(np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64))
    n = max(g.n_series for g in groups)
    codes = np.concatenate([encode(entry_series(g), g.buckets) for g in groups])
    counts = np.concatenate([g.counts for g in groups])
    return group_codes(codes, n, counts)


def select(g: GroupedSketch, series: int) -> Sketch:
    """The sketch of one series (a view, not a copy)."""
    if not 0 <= series < g.n_series:
        raise IndexError(f"series {series} out of range [0, {g.n_series})")
    lo, hi = g.indptr[series], g.indptr[series + 1]
    return Sketch(g.buckets[lo:hi], g.counts[lo:hi])


def stack(sketches: list[Sketch]) -> GroupedSketch:
    """CSR holding the given sketches as series 0..len-1."""
    lengths = np.array([len(s.buckets) for s in sketches], np.int64)
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if not sketches:
        return GroupedSketch(indptr, np.empty(0, np.int32), np.empty(0, np.int64))
    return GroupedSketch(
        indptr,
        np.concatenate([s.buckets for s in sketches]).astype(np.int32),
        np.concatenate([s.counts for s in sketches]).astype(np.int64),
    )


def grouped_to_arrays(g: GroupedSketch) -> dict[str, np.ndarray]:
    """Plain arrays for state snapshots (see `grouped_from_arrays`)."""
    return {
        "indptr": g.indptr.astype(np.int64),
        "buckets": g.buckets.astype(np.int32),
        "counts": g.counts.astype(np.int64),
    }


def grouped_from_arrays(arrays: dict[str, np.ndarray]) -> GroupedSketch:
    """Restore from `grouped_to_arrays` output, validating the CSR invariants."""
    indptr, b, c = (np.asarray(arrays[k]) for k in ("indptr", "buckets", "counts"))
    _check_csr(indptr, b, c)
    return GroupedSketch(indptr.astype(np.int64), b.astype(np.int32), c.astype(np.int64))


# --------------------------------------------------------------------------- helpers


def _dense_is_exact_and_cheaper(total_bins: int, counts: np.ndarray) -> bool:
    """Whether summing counted codes with one weighted bincount beats sorting them.

    bincount sums weights in float64, which is exact while every partial sum
    stays below 2**53 (bounded here by max count * entries), so its result
    equals the sort-based integer sums. It scans all total_bins counters, so
    it pays off only when there are few bins per code (measured on sorted
    runs of codes: 2-3x faster at one bin per code, even at four, slower
    beyond).
    """
    if counts.size == 0 or total_bins > _DENSE_MAX_BINS or total_bins > _DENSE_BINS_PER_CODE * counts.size:
        return False
    return int(counts.max()) * counts.size < _FLOAT_EXACT


def _run_lengths(sorted_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    if not sorted_codes.size:
        return sorted_codes, np.empty(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1])))
    return sorted_codes[starts], np.diff(np.append(starts, sorted_codes.size)).astype(np.int64)


def entry_series(g: GroupedSketch) -> np.ndarray:
    """Series id of every CSR entry (int64, aligned with g.buckets)."""
    return np.repeat(np.arange(g.n_series, dtype=np.int64), np.diff(g.indptr))


def check_quantiles(q: float | np.ndarray) -> np.ndarray:
    """Quantiles as a float array, refusing anything outside [0, 1]."""
    qa = np.asarray(q, dtype=np.float64)
    if qa.size and (np.isnan(qa).any() or qa.min() < 0.0 or qa.max() > 1.0):
        raise ValueError(f"quantiles must be in [0, 1] (got {qa.tolist()}); write 0.99, not 99")
    return qa


def _check_buckets(b: np.ndarray, what: str) -> None:
    if b.size and (b.min() < 0 or b.max() >= NBUCKETS):
        raise ValueError(
            f"{what} must lie in [0, NBUCKETS={NBUCKETS}) (got min={int(b.min())}, max={int(b.max())}); "
            "use bucket_index() to map latencies to buckets"
        )


def _check_csr(indptr: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or indptr[-1] != len(b) or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"sketch snapshot has a broken indptr (starts {indptr[:1].tolist()}, ends "
            f"{indptr[-1:].tolist()}, {len(b)} buckets); the snapshot is corrupt, rebuild it from events"
        )
    if len(b) != len(c):
        raise ValueError(f"sketch snapshot has {len(b)} buckets but {len(c)} counts; the snapshot is corrupt")
    _check_buckets(b, "snapshot buckets")
    if c.size and c.min() <= 0:
        raise ValueError(f"sketch snapshot counts must be > 0 (got {int(c.min())}); the snapshot is corrupt")
    # Within each series buckets strictly increase; across a series boundary they may drop.
    step_ok = np.diff(b.astype(np.int64)) > 0
    boundary = np.zeros(max(len(b) - 1, 0), bool)
    inner = indptr[1:-1]
    inner = inner[(inner > 0) & (inner < len(b))]
    boundary[inner - 1] = True
    if not np.all(step_ok | boundary):
        raise ValueError("sketch snapshot buckets are not strictly increasing within a series; the snapshot is corrupt")
