"""The rows of a deploy's windows before it, kept between evaluations, are the rows of those
very window objects: the same objects give equal rows, another object for a window new ones."""

from __future__ import annotations

import numpy as np

from detector.logs.counts import WindowArrays
from detector.logs.findings import _Rows


def _window(k: int, rng: np.random.Generator) -> WindowArrays:
    n = int(rng.integers(0, 6))
    return WindowArrays(k * 10.0, (k + 1) * 10.0, rng.integers(0, 40, n).astype(np.int32),
                        rng.integers(-1, 3, n).astype(np.int32), rng.integers(0, 4, n).astype(np.int8),
                        rng.integers(1, 100, n).astype(np.int64))


def _same(a: _Rows, b: _Rows) -> None:
    for name in ("pos", "tpl", "version", "level", "count"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_kept_rows_equal_fresh_rows_and_follow_the_window_objects():
    rng = np.random.default_rng(8)
    windows = [_window(k, rng) for k in range(90)]
    first = _Rows.of_kept(windows)
    _same(first, _Rows.of(windows))
    assert _Rows.of_kept(list(windows)) is first  # the same objects: kept
    replaced = windows[:40] + [_window(40, rng)] + windows[41:]  # window 40 closed again: a new object
    again = _Rows.of_kept(replaced)
    assert again is not first
    _same(again, _Rows.of(replaced))
    _same(_Rows.of_kept([]), _Rows.of([]))
    for k in range(40):  # more deploys than entries kept: the oldest go, answers stay right
        some = [_window(j, rng) for j in range(k % 7 + 1)]
        _same(_Rows.of_kept(some), _Rows.of(some))
    _same(_Rows.of_kept(windows), _Rows.of(windows))
