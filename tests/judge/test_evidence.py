"""Span sums of a verification's window slices equal a plain sum of those slices."""

from __future__ import annotations

import numpy as np

from detector.aggregate import sketch
from detector.judge import evidence as E


def _pop(rng, eps):
    n = rng.integers(0, 500, len(eps))
    n[rng.random(len(eps)) < 0.3] = 0
    errors = (n * rng.random(len(eps)) * 0.2).astype(np.int64)
    txn = (n * rng.random(len(eps))).astype(np.int64)
    rows = []
    for k in n:
        if k:
            b = np.unique(rng.integers(0, sketch.NBUCKETS, rng.integers(1, 40))).astype(np.int32)
            rows.append(sketch.Sketch(b, rng.integers(1, 100, len(b)).astype(np.int64)))
        else:
            rows.append(sketch.empty())
    return E.Population(eps, n.astype(np.int64), errors, txn, sketch.stack(rows), sketch.merge(*rows),
                        int(n.sum()) + int(rng.integers(0, 50)), int(errors.sum()), int(txn.sum()), 1, 10.0)


def _oracle(pops, endpoints):
    """Row by row, slice by slice: what a span must hold."""
    n, err, txn, rows = [], [], [], []
    for ep in endpoints.tolist():
        parts = [(p, int(np.flatnonzero(p.endpoints == ep)[0])) for p in pops if ep in p.endpoints]
        n.append(sum(int(p.n[i]) for p, i in parts))
        err.append(sum(int(p.errors[i]) for p, i in parts))
        txn.append(sum(int(p.txn[i]) for p, i in parts))
        rows.append(sketch.merge(*[sketch.select(p.lat, i) for p, i in parts]))
    return n, err, txn, rows, sketch.merge(*[p.whole for p in pops]), sum(p.total_n for p in pops)


def test_span_sums_equal_a_plain_sum_of_slices_as_endpoints_come_and_go():
    """Running sums, with slices dropped and endpoint sets changing, give exactly the slices' sum."""
    rng = np.random.default_rng(5)
    checked = 0
    for _trial in range(60):
        universe = np.sort(rng.choice(100, rng.integers(1, 10), replace=False)).astype(np.int32)
        slices: dict[float, dict[str, E.Population]] = {}
        spans = E.SpanSums()
        cur = universe
        for w in range(int(rng.integers(1, 20))):
            eps = np.sort(rng.choice(universe, rng.integers(0, len(universe) + 1), replace=False)).astype(np.int32)
            slices[float(w * 10)] = {"new": _pop(rng, eps), "stable": _pop(rng, eps)}
            if rng.random() < 0.3 and len(slices) > 3:
                del slices[next(iter(slices))]
            if rng.random() < 0.15:
                cur = np.sort(rng.choice(universe, rng.integers(0, len(universe) + 1),
                                         replace=False)).astype(np.int32)
            spans.begin(slices, cur)
            keys = list(slices)
            i = int(rng.integers(0, len(keys)))
            starts = keys[i:int(rng.integers(i, len(keys))) + 1]
            for kind in ("new", "stable"):
                got = spans.total(kind, starts)
                n, err, txn, rows, whole, total = _oracle([slices[s][kind] for s in starts], cur)
                assert list(got.n) == n and list(got.errors) == err and list(got.txn) == txn
                assert got.total_n == total
                for r, want in enumerate(rows):
                    have = got.sketch_of(r)
                    assert np.array_equal(have.buckets, want.buckets) and np.array_equal(have.counts, want.counts)
                assert np.array_equal(got.sketch_of(-1).counts, whole.counts)
                checked += 1
    assert checked > 100
