"""The ingest side of a core state snapshot: the string table, the series tables, the open windows.

Each pair writes one part of the core into the snapshot and restores it,
checking that the saved arrays line up with each other and with the interned
strings before anything is loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.aggregate.windows import _OpenWindow
from detector.config import Pipeline
from detector.ingest.interner import OVERFLOW, Interner
from detector.state.frame import _START_COLD, StateError, _Reader, _Writer
from detector.state.values import _unvalue, _value

_OPEN_ARRAYS = {
    "count": np.int64, "errors": np.int64, "lat_codes": np.int64, "lat_counts": np.int64, "txn_codes": np.int64,
    "txn_counts": np.int64, "m_n": np.int64, "m_sum": np.float64, "m_min": np.float64, "m_max": np.float64,
    "log_codes": np.int64, "log_counts": np.int64,
}


def _restore_interner(saved: dict, pipeline: Pipeline) -> Interner:
    strings, overflow = saved["strings"], saved["overflow"]
    if not (isinstance(strings, list) and strings and strings[0] == OVERFLOW
            and all(isinstance(s, str) for s in strings) and len(set(strings)) == len(strings)):
        raise ValueError(f"the string table should be distinct strings starting with {OVERFLOW!r}")
    if type(overflow) is not int or overflow < 0:
        raise ValueError(f"overflow should be an int >= 0, got {overflow!r}")
    cap = pipeline.limits.max_interned_strings
    if len(strings) > cap + Interner(max_size=cap).max_keys:
        raise StateError(f"core state snapshot holds {len(strings)} interned strings, more than "
                         f"limits.max_interned_strings = {cap} in {pipeline.source}; raise the limit, or "
                         f"{_START_COLD}")
    interner = Interner(strings, max_size=cap)
    interner.overflow = overflow
    return interner


def _table_state(w: _Writer, table: Any) -> dict:
    s = table.to_state()
    aliases = np.array(s["aliases"], np.int64).reshape(-1, 2)
    return {"a": w.array(s["a"], np.int32), "b": w.array(s["b"], np.int32), "c": w.array(s["c"], np.int32),
            "overflow": s["overflow"], "alias_codes": w.array(aliases[:, 0]), "alias_index": w.array(aliases[:, 1])}


def _restore_table(r: _Reader, saved: dict, table: Any, n_strings: int) -> None:
    a, b, c = (r.vector(saved[k], np.int32) for k in ("a", "b", "c"))
    codes, index = r.vector(saved["alias_codes"], np.int64), r.vector(saved["alias_index"], np.int64)
    n = len(a)
    if not (len(b) == len(c) == n and len(codes) == len(index)):
        raise ValueError(f"series columns have lengths {len(a)}, {len(b)}, {len(c)}; aliases {len(codes)} codes "
                         f"for {len(index)} indices")
    if n and (a.min() < 0 or max(a.max(), b.max(), c.max()) >= n_strings or min(b.min(), c.min()) < -1):
        raise ValueError(f"series name ids fall outside the {n_strings} interned strings")
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise ValueError(f"series aliases point outside the {n} series")
    if type(saved["overflow"]) is not int:
        raise ValueError(f"overflow should be an int, got {saved['overflow']!r}")
    table.load_state({"a": a.tolist(), "b": b.tolist(), "c": c.tolist(), "overflow": saved["overflow"],
                      "aliases": list(zip(codes.tolist(), index.tolist()))})


def _window_store_state(w: _Writer, store: Any) -> dict:
    return {
        "open": [[k, {name: w.array(a, _OPEN_ARRAYS[name]) for name, a in win.to_state().items()}]
                 for k, win in store.open.items()],
        "closed_before": store.closed_before,
        "max_ts": [[src, _value(ts)] for src, ts in store.max_ts.items()],
        "late": store.late,
        "events": store.events,
        "txn_names": store.txn_names.to_state(),
    }


def _restore_window_store(r: _Reader, saved: dict, store: Any) -> None:
    opened = {}
    for k, arrays in saved["open"]:
        if type(k) is not int or not isinstance(arrays, dict) or set(arrays) != set(_OPEN_ARRAYS):
            raise ValueError(f"open window {k!r} should be a window index and the arrays {sorted(_OPEN_ARRAYS)}")
        parts = {name: r.vector(ref, _OPEN_ARRAYS[name]) for name, ref in arrays.items()}
        for codes, counts in (("lat_codes", "lat_counts"), ("txn_codes", "txn_counts"), ("log_codes", "log_counts")):
            if len(parts[codes]) != len(parts[counts]) or (len(parts[counts]) and parts[counts].min() <= 0):
                raise ValueError(f"open window {k}: {codes} and {counts} do not line up")
        if len(parts["count"]) != len(parts["errors"]) or \
                not len(parts["m_n"]) == len(parts["m_sum"]) == len(parts["m_min"]) == len(parts["m_max"]):
            raise ValueError(f"open window {k}: dense arrays differ in length")
        opened[k] = _OpenWindow.from_state(parts)
    closed_before = saved["closed_before"]
    if closed_before is not None and type(closed_before) is not int:
        raise ValueError(f"closed_before should be a window index or null, got {closed_before!r}")
    max_ts = {}
    for src, ts in saved["max_ts"]:
        ts = _unvalue(ts)
        if not isinstance(src, str) or not isinstance(ts, (int, float)):
            raise ValueError(f"watermark entry should be [source, time], got {[src, ts]!r}")
        max_ts[src] = ts
    late, events = saved["late"], saved["events"]
    if type(late) is not int or type(events) is not int:
        raise ValueError(f"late and events should be ints, got {late!r}, {events!r}")
    store.open, store.closed_before, store.max_ts = opened, closed_before, max_ts
    store.late, store.events = late, events
    # absent from snapshots written before transaction names were capped: none admitted yet
    if "txn_names" in saved:
        store.txn_names.load_state(saved["txn_names"], len(store.requests.interner))
