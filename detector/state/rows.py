"""Row tables of a core state snapshot: many rows of one kind as one array per field.

The closed-window history (and the fleet gate's waiting windows) and the
judge's populations are stored as one concatenation per field plus the row
lengths; a row's sketches as their bucket and count arrays. This module holds
the generic table (`_Rows` writes one, `_read_rows` reads it back) and how a
closed window (`WindowFacts`) and a `Population` split into a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from detector.aggregate import sketch
from detector.aggregate.windows import WindowFacts
from detector.judge.evidence import Population
from detector.state.frame import StateError, _Reader, _Writer
from detector.state.values import _unvalue, _value

_FACT_ARRAYS = {
    "count": np.int64, "errors": np.int64, "txn_series": np.int64, "txn_name": np.int32, "txn_count": np.int64,
    "metric_n": np.int64, "metric_sum": np.float64, "metric_min": np.float64, "metric_max": np.float64,
    "log_service": np.int32, "log_version": np.int32, "log_level": np.int8, "log_count": np.int64,
}
_POP_ARRAYS = {"endpoints": np.int32, "n": np.int64, "errors": np.int64, "txn": np.int64}
_POP_SCALARS = ("total_n", "total_errors", "total_txn", "windows", "seconds")
_SKETCH_ARRAYS = {"len": np.int64, "buckets": np.int32, "counts": np.int64}


@dataclasses.dataclass(frozen=True)
class _Fields:
    """How one kind of row (a closed window, a population) splits into arrays, sketches and scalars."""

    arrays: Mapping[str, Any]  # name -> dtype
    sketches: tuple[str, ...]  # GroupedSketch names; a Sketch is stored as a one-series group
    to_parts: Callable[[Any], tuple[dict[str, np.ndarray], dict[str, sketch.GroupedSketch], list]]


class _Rows:
    """Rows of one kind, written as one concatenation per field plus row lengths."""

    def __init__(self, writer: _Writer, spec: _Fields) -> None:
        self.w, self.spec = writer, spec
        self.columns: dict[str, list[np.ndarray]] = {k: [] for k in _column_names(spec)}
        self.scalars: list[list] = []

    def add(self, row: Any) -> int:
        arrays, groups, scalars = self.spec.to_parts(row)
        for k, dtype in self.spec.arrays.items():
            self.columns[k].append(np.asarray(arrays[k], dtype=dtype).ravel())
        for k in self.spec.sketches:
            g = groups[k]
            self.columns[f"{k}.len"].append(np.diff(g.indptr).astype(np.int64))
            self.columns[f"{k}.buckets"].append(np.asarray(g.buckets, np.int32))
            self.columns[f"{k}.counts"].append(np.asarray(g.counts, np.int64))
        self.scalars.append([_value(s) for s in scalars])
        return len(self.scalars) - 1

    def write(self) -> dict:
        cols = {}
        for k, parts in self.columns.items():
            dtype = _column_dtype(self.spec, k)
            data = np.concatenate(parts) if parts else np.empty(0, dtype)
            cols[k] = [self.w.array(np.array([len(p) for p in parts], np.int64)), self.w.array(data, dtype)]
        return {"rows": len(self.scalars), "scalars": self.scalars, "columns": cols}


def _column_names(spec: _Fields) -> list[str]:
    return list(spec.arrays) + [f"{k}.{part}" for k in spec.sketches for part in _SKETCH_ARRAYS]


def _column_dtype(spec: _Fields, name: str) -> Any:
    if name in spec.arrays:
        return spec.arrays[name]
    return _SKETCH_ARRAYS[name.rsplit(".", 1)[1]]


def _read_rows(r: _Reader, saved: dict, spec: _Fields) -> list[tuple[dict, list]]:
    """(arrays and sketches by name, scalars) per row, as `_Rows.write` stored them."""
    n_rows, scalars, cols = saved["rows"], saved["scalars"], saved["columns"]
    if type(n_rows) is not int or not isinstance(scalars, list) or len(scalars) != n_rows:
        raise ValueError(f"row table says {n_rows!r} rows but has {len(scalars)} scalar rows")
    if set(cols) != set(_column_names(spec)):
        raise ValueError(f"row table has columns {sorted(cols)}, expected {sorted(_column_names(spec))}")
    split: dict[str, list[np.ndarray]] = {}
    for k, (len_ref, data_ref) in cols.items():
        lengths = r.vector(len_ref, np.int64)
        data = r.vector(data_ref, _column_dtype(spec, k))
        if len(lengths) != n_rows or (n_rows and lengths.min() < 0) or int(lengths.sum()) != len(data):
            raise ValueError(f"column {k!r}: {len(lengths)} row lengths summing to {int(lengths.sum())} "
                             f"for {n_rows} rows and {len(data)} values")
        split[k] = np.split(data, np.cumsum(lengths)[:-1]) if n_rows else []
    rows = []
    for i in range(n_rows):
        parts: dict[str, Any] = {k: split[k][i] for k in spec.arrays}
        for k in spec.sketches:
            lengths = split[f"{k}.len"][i]
            indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
            parts[k] = sketch.grouped_from_arrays(
                {"indptr": indptr, "buckets": split[f"{k}.buckets"][i], "counts": split[f"{k}.counts"][i]})
        if not isinstance(scalars[i], list):
            raise ValueError(f"scalar row {i} should be a list, got {scalars[i]!r:.80}")
        rows.append((parts, [_unvalue(s) for s in scalars[i]]))
    return rows


def _fact_parts(w: WindowFacts) -> tuple[dict, dict, list]:
    return {k: getattr(w, k) for k in _FACT_ARRAYS}, {"lat": w.lat}, [w.start, w.end]


def _fact_fields() -> _Fields:
    known = set(_FACT_ARRAYS) | {"lat", "start", "end"}
    fields = {f.name for f in dataclasses.fields(WindowFacts)}
    if fields != known:
        raise StateError(f"WindowFacts fields {sorted(fields ^ known)} are unknown to the state codec; "
                         "extend detector/state/rows.py")
    return _Fields(_FACT_ARRAYS, ("lat",), _fact_parts)


def _fact_from_row(parts: dict, start: Any, end: Any) -> WindowFacts:
    if not all(isinstance(t, (int, float)) for t in (start, end)):
        raise ValueError(f"window bounds should be numbers, got {start!r}, {end!r}")
    return WindowFacts(start=start, end=end, **parts)


def _check_facts(facts: list[WindowFacts], n_series: int, n_mseries: int) -> None:
    for w in facts:
        k = len(w.count)
        if len(w.errors) != k or k > n_series or w.lat.n_series > n_series or len(w.metric_n) > n_mseries \
                or not len(w.metric_n) == len(w.metric_sum) == len(w.metric_min) == len(w.metric_max) \
                or not len(w.txn_series) == len(w.txn_name) == len(w.txn_count) \
                or not len(w.log_service) == len(w.log_version) == len(w.log_level) == len(w.log_count):
            raise ValueError(f"closed window [{w.start}, {w.end}) has arrays that do not line up with each "
                             f"other or with the {n_series} request / {n_mseries} metric series")


def _pop_parts(p: Population) -> tuple[dict, dict, list]:
    whole = sketch.GroupedSketch(np.array([0, len(p.whole.buckets)], np.int64), p.whole.buckets, p.whole.counts)
    return ({k: getattr(p, k) for k in _POP_ARRAYS}, {"lat": p.lat, "whole": whole},
            [getattr(p, k) for k in _POP_SCALARS])


def _pop_fields() -> _Fields:
    known = set(_POP_ARRAYS) | set(_POP_SCALARS) | {"lat", "whole"}
    fields = {f.name for f in dataclasses.fields(Population)}
    if fields != known:
        raise StateError(f"Population fields {sorted(fields ^ known)} are unknown to the state codec; "
                         "extend detector/state/rows.py")
    return _Fields(_POP_ARRAYS, ("lat", "whole"), _pop_parts)


def _pop_from_row(parts: dict, scalars: list) -> Population:
    if len(scalars) != len(_POP_SCALARS) or parts["whole"].n_series != 1:
        raise ValueError("population row has the wrong number of totals or a whole-selection sketch of "
                         f"{parts['whole'].n_series} series")
    n = len(parts["endpoints"])
    if not len(parts["n"]) == len(parts["errors"]) == len(parts["txn"]) == n or parts["lat"].n_series < n:
        raise ValueError(f"population arrays do not line up with its {n} endpoints")
    whole = sketch.select(parts.pop("whole"), 0)
    return Population(**parts, whole=whole, **dict(zip(_POP_SCALARS, scalars)))
