"""`WindowCounts` keeps exactly the closed windows of the last `history_s`, in time order,
whatever the order and size of the closes, and across a snapshot."""

from __future__ import annotations

import math

import numpy as np

from detector.logs.counts import WindowCounts

WINDOW_S, HISTORY_S = 10.0, 95.0


def _add(wc: WindowCounts, k: int, n: int = 2) -> None:
    ts = np.full(n, k * WINDOW_S + 1.0)
    wc.add(ts, np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.zeros(n, np.int64))


def _expected(with_rows: set[int], closed_before: int) -> list[int]:
    oldest = closed_before - math.ceil(HISTORY_S / WINDOW_S)
    return sorted(k for k in with_rows if oldest <= k < closed_before)


def test_closed_windows_are_those_of_the_last_history_s():
    rng = np.random.default_rng(7)
    wc = WindowCounts(WINDOW_S, HISTORY_S)
    with_rows: set[int] = set()
    k = 0
    for _ in range(200):
        for _ in range(int(rng.integers(0, 4))):  # some windows get no lines at all
            k += int(rng.integers(1, 3))
            k = max(k, wc.closed_before or 0)  # not a late line (those are never folded in)
            _add(wc, k)
            with_rows.add(k)
        upto = (k + int(rng.integers(0, 3))) * WINDOW_S  # close zero, one or several windows
        wc.close(upto)
        assert list(wc.closed) == _expected(with_rows, wc.closed_before)
        if rng.random() < 0.1:  # a snapshot round trip keeps the same windows
            wc = WindowCounts.from_state(wc.to_state(), WINDOW_S, HISTORY_S)
            assert list(wc.closed) == _expected(with_rows, wc.closed_before)
    assert len(wc.closed) > 3


def test_a_long_gap_forgets_every_window():
    wc = WindowCounts(WINDOW_S, HISTORY_S)
    for k in range(5):
        _add(wc, k)
    wc.close(5 * WINDOW_S)
    assert list(wc.closed) == [0, 1, 2, 3, 4]
    wc.close(1_000 * WINDOW_S)
    assert not wc.closed
