"""Deferred mining: a window's template ids do not depend on how far the input was read past it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from detector.ingest.columns import LEVEL_ERROR, LEVEL_INFO, LogColumns
from detector.ingest.interner import Interner
from detector.logs import LogSettings, LogTemplates

WINDOW_S = 10.0

# Window 0 logs one exception type; window 1 three others, which generalise the template to
# "unhandled <*> ..." (the miner folds a word position with four variants).
ROWS = [(1.0 + i, "pay", "v2", LEVEL_ERROR, "unhandled KeyError while processing GET /payments/7")
        for i in range(3)] + \
       [(11.0 + i, "pay", "v2", LEVEL_ERROR, f"unhandled {e} while processing GET /payments/7")
        for i, e in enumerate(["ValueError", "TimeoutError", "IllegalStateException"])] + \
       [(21.0, "pay", "v2", LEVEL_INFO, "started")]


def _columns(rows, interner: Interner) -> LogColumns:
    n = len(rows)
    return LogColumns(
        pos=np.arange(n, dtype=np.int64),
        ts=np.array([r[0] for r in rows], dtype=np.float64),
        service=np.array([interner.intern(r[1]) for r in rows], dtype=np.int32),
        version=np.array([interner.intern(r[2]) for r in rows], dtype=np.int32),
        instance=np.full(n, -1, dtype=np.int32),
        level=np.array([r[3] for r in rows], dtype=np.int8),
        logger=np.full(n, -1, dtype=np.int32),
        message=[r[4] for r in rows],
    )


def _window_ids(batch: int, defer: bool, snapshot_at: int | None = None) -> list[list[tuple[str, int]]]:
    """(template id, lines) per closed window, feeding ROWS `batch` rows at a time and closing
    the windows the newest row allows after each batch."""
    it = Interner()
    lt = LogTemplates(LogSettings(window_s=WINDOW_S, history_s=1_200.0))
    out = []
    newest = -np.inf
    for a in range(0, len(ROWS), batch):
        rows = ROWS[a:a + batch]
        cols = _columns(rows, it)
        lt.defer_batch(cols, it) if defer else lt.add_batch(cols, it)
        if snapshot_at is not None and a == snapshot_at:
            lt = LogTemplates.from_bytes(lt.to_bytes(), lt.settings)
        newest = max(newest, max(r[0] for r in rows))
        for w in lt.close_windows(newest):
            out.append(_by_id(w))
    for w in lt.close_all():
        out.append(_by_id(w))
    return out


def _by_id(w) -> list[tuple[str, int]]:
    """Lines per template id (templates that converged on one text share their id)."""
    lines = Counter()
    for r in w.rows:
        lines[r.template_id] += r.count
    return sorted(lines.items())


def test_mining_on_arrival_names_a_window_by_what_came_after_it():
    """The defect deferred mining removes: read in one batch, window 0's lines are counted under
    the template text window 1 generalised; read line by line, under the text of their own window."""
    assert _window_ids(len(ROWS), defer=False)[0] != _window_ids(1, defer=False)[0]


@pytest.mark.parametrize("batch", [1, 2, 3, 4, len(ROWS)])
def test_deferred_lines_are_counted_under_the_same_ids_whatever_the_batching(batch):
    want = _window_ids(1, defer=True)
    assert [len(w) for w in want] == [1, 1, 1]
    assert want[0][0][0] != want[1][0][0]  # window 0 closed before window 1's lines generalised it
    assert _window_ids(batch, defer=True) == want


def test_pending_lines_survive_a_snapshot():
    """Lines deferred but not mined yet travel in the snapshot and are mined after the restore."""
    lt = LogTemplates(LogSettings(window_s=WINDOW_S, history_s=1_200.0))
    it = Interner()
    lt.defer_batch(_columns(ROWS[:4], it), it)
    assert lt.stats["pending_lines"] == 4 and len(lt) == 0
    assert _window_ids(2, defer=True, snapshot_at=2) == _window_ids(1, defer=True)


def test_late_deferred_lines_are_counted_late_and_never_mined():
    it = Interner()
    lt = LogTemplates(LogSettings(window_s=WINDOW_S, history_s=1_200.0))
    lt.defer_batch(_columns(ROWS[:4], it), it)
    lt.close_windows(10.0)
    lt.defer_batch(_columns([(2.0, "pay", "v2", LEVEL_ERROR, "a line for the closed window")], it), it)
    assert lt.stats["late_rows"] == 1
    assert not any("closed window" in t.text for t in lt.templates())
