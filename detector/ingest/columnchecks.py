"""Column checks: a group of events of one type validated and built into columns at once.

Per event, the column checks do their work in C loops: fields are pulled
with `map` and `itemgetter`, numbers are packed by `struct` (which refuses
anything but numbers), and the string fields of an event are reduced to the
distinct tuples of the batch, so that type, length and interning work is
paid once per distinct value, not once per event. Each check decides exactly
as the plain rule "every value of the column has the right type and range"
(the per-event checks of `eventchecks.py`), and the interner meets the same
strings in the same order, so columns, ids and rejections do not depend on
which path a group took.

`build_group` is the entry point: the whole-column build first; when a check
fails, every event of the group is checked alone, the bad ones rejected with
their reasons and the good ones built.
"""

from __future__ import annotations

import struct
from itertools import compress, count, repeat
from operator import itemgetter
from typing import Any, Callable

import numpy as np

from detector.ingest.columns import (
    LEVEL_INFO,
    LogColumns,
    MetricColumns,
    Rejected,
    RequestColumns,
)
from detector.ingest.eventchecks import check_log, check_metric, check_request
from detector.ingest.fields import (
    _NUM,
    LEVELS,
    MAX_LEVEL_CHARS,
    MAX_NAME_CHARS,
    MAX_SERVICE_CHARS,
    BadEvent,
)
from detector.ingest.interner import Interner

_STR = {str}
_OPT_STR = {str, type(None)}


class _ColumnCheckFailed(Exception):
    """A whole-column check failed: re-check this group event by event."""


_dget = dict.get
_NULL = {type(None)}


def _types(values: Any) -> set:
    return set(map(type, values))


def _col(docs: list[dict], key: str) -> list:
    """One field of every document, None where absent, gathered in C."""
    return list(map(_dget, docs, repeat(key)))


def _float_col(docs: list[dict], key: str) -> np.ndarray:
    """float64 column of a field; fails unless every value is a finite JSON number."""
    n = len(docs)
    arr = np.empty(n, dtype=np.float64)
    try:
        # struct refuses null, strings, arrays and objects, at a fraction of a per-value type check.
        struct.pack_into(f"{n}d", arr, 0, *map(_dget, docs, repeat(key)))
    except struct.error:
        raise _ColumnCheckFailed from None
    # It takes booleans as 0 and 1, so only a column holding those values needs the type check.
    if n and not arr.min() > 1.0:
        maybe_bool = np.flatnonzero((arr == 0.0) | (arr == 1.0)).tolist()
        if maybe_bool and not _types(_dget(docs[i], key) for i in maybe_bool) <= _NUM:
            raise _ColumnCheckFailed
    if not np.isfinite(arr).all():
        raise _ColumnCheckFailed
    return arr


def _status_col(docs: list[dict]) -> np.ndarray:
    """int16 statuses; fails unless every value is an integer within 100-599."""
    n = len(docs)
    arr = np.empty(n, dtype=np.int64)
    try:
        # struct's 'q' refuses floats, strings, null and integers beyond 64 bits.
        struct.pack_into(f"{n}q", arr, 0, *map(_dget, docs, repeat("status")))
    except struct.error:
        raise _ColumnCheckFailed from None
    # Booleans pack as 0 and 1: the range check turns them away.
    if n and (arr.min() < 100 or arr.max() > 599):
        raise _ColumnCheckFailed
    return arr.astype(np.int16)


def _intern_each(values: list, interner: Interner, key: bool) -> np.ndarray:
    """Intern event by event: an event whose new string finds no room counts once in `overflow`."""
    intern = interner.intern
    return np.asarray([-1 if v is None else intern(v, key) for v in values], dtype=np.int32)


def _str_col(values: list, interner: Interner, max_chars: int, optional: bool, key: bool,
             empty_ok: bool) -> np.ndarray:
    """Column rule for a string field, one value per event (used when a field holds an array or object)."""
    kinds = _types(values)
    if kinds == _STR:
        uniq = set(values)
        if ("" in uniq and not (optional and empty_ok)) or max(map(len, uniq)) > max_chars:
            raise _ColumnCheckFailed
        return np.asarray(interner.intern_many(values, key), dtype=np.int32)
    if not optional or not kinds <= _OPT_STR:
        raise _ColumnCheckFailed
    if kinds == _NULL:
        return np.full(len(values), -1, dtype=np.int32)
    if max(len(v) for v in values if v is not None) > max_chars:
        raise _ColumnCheckFailed
    return _intern_each(values, interner, key)


class _StrFields:
    """The string fields of a group of events, checked and interned one field at a time.

    A batch repeats a handful of services, endpoints, versions and instances,
    so the events' tuples of string fields are reduced to the distinct ones:
    types, lengths and interner look-ups are paid per distinct value, and
    numpy maps the results back onto the events. Equal tuples hold equal
    strings, so a check on the distinct tuples decides as on every event.
    A field holding an array or an object cannot be a dict key: then the
    fields stay whole columns and `_str_col` checks them.

    `empty_ok` says whether an optional field may be "" when no event of the
    group leaves it null. The first try of a group says no: the group is then
    checked event by event (the per-event check accepts "") and rebuilt with
    `empty_ok`. Failing there, before the field is interned, keeps the order
    in which strings meet the interner, and so every id, as the column rules
    have always had it.
    """

    __slots__ = ("_fields", "_rows", "_index", "_n", "_interner", "_empty_ok")

    def __init__(self, docs: list[dict], fields: tuple[str, ...], interner: Interner, empty_ok: bool) -> None:
        self._n = n = len(docs)
        self._fields, self._interner, self._empty_ok = fields, interner, empty_ok
        self._index: np.ndarray | None
        try:
            if len(fields) == 1:
                column = _col(docs, fields[0])
                nulls = column.count(None)
                if not (2 * nulls > n and self._sparse(column, nulls)):
                    self._distinct(column, n)
                return
            try:
                # The tuples are streamed, not kept: a list of them would cost
                # more in garbage-collector passes than building them does.
                self._distinct(map(itemgetter(*fields), docs), n)
            except KeyError:  # an optional field is absent from some events
                self._distinct(zip(*[_col(docs, f) for f in fields]), n)
        except TypeError:  # an array or an object in a field: check whole columns
            self._rows = _col(docs, fields[0]) if len(fields) == 1 else list(zip(*[_col(docs, f) for f in fields]))
            self._index = None

    def _distinct(self, rows: Any, n: int, offset: int = 0) -> np.ndarray:
        """Keep the distinct rows in order of first sight; each row's position among them (+ offset)."""
        first: dict = {}
        # setdefault answers each row with the number of the row it first
        # appeared at; struct packs those numbers without a per-row call.
        first_row = np.empty(n, dtype=np.int64)
        struct.pack_into(f"{n}q", first_row, 0, *map(first.setdefault, rows, count()))
        slot = np.empty(n, dtype=np.intp)
        slot[np.fromiter(first.values(), dtype=np.intp, count=len(first))] = np.arange(offset, offset + len(first))
        self._rows = list(first)
        self._index = slot[first_row]
        return self._index

    def _sparse(self, column: list, nulls: int) -> bool:
        """Distinct values of a mostly null field, looking only at the events that have it."""
        n = self._n
        present = list(compress(range(n), column))
        if len(present) + nulls != n:  # some value is "", 0, false, [] or {}: no shortcut
            return False
        index = np.zeros(n, dtype=np.intp)
        if present:
            index[present] = self._distinct(compress(column, column), len(present), offset=1)
        else:
            self._rows = []
        self._rows.insert(0, None)
        self._index = index
        return True

    def values(self, field: str) -> list:
        """The field's value in each distinct tuple; in each event when the fields stay columns."""
        if len(self._fields) == 1:
            return self._rows
        return list(map(itemgetter(self._fields.index(field)), self._rows))

    def expand(self, per_value: np.ndarray) -> np.ndarray:
        """Per-event column from an array aligned with `values`."""
        return per_value if self._index is None else per_value[self._index]

    def ids(self, field: str, max_chars: int, optional: bool, key: bool = False) -> np.ndarray:
        """Interned ids of the field, -1 where null; fails as `_str_col` would on the whole column."""
        values = self.values(field)
        interner = self._interner
        if self._index is None:
            return _str_col(values, interner, max_chars, optional, key, self._empty_ok)
        distinct = list(dict.fromkeys(values))  # in order of first sight: the order of interning
        kinds = _types(distinct)
        if kinds == _STR:
            if ("" in distinct and not (optional and self._empty_ok)) or max(map(len, distinct)) > max_chars:
                raise _ColumnCheckFailed
        elif not optional or not kinds <= _OPT_STR:
            raise _ColumnCheckFailed
        elif kinds == _NULL:
            return np.full(self._n, -1, dtype=np.int32)
        elif max(len(v) for v in distinct if v is not None) > max_chars:
            raise _ColumnCheckFailed
        ids = interner.ids_of(distinct)
        new = [v for v, i in zip(distinct, ids) if i is None and v is not None]
        if new:
            if len(interner) + len(new) > interner.max_size + (interner.max_keys if key else 0):
                # Not all fit: `overflow` counts every event whose string found no room.
                return _intern_each([values[i] for i in self._index.tolist()], interner, key)
            for v in new:
                interner.intern(v, key)
            ids = interner.ids_of(distinct)
        by_value = dict(zip(distinct, ids))
        by_value[None] = -1
        return np.array([by_value[v] for v in values], dtype=np.int32)[self._index]


_REQUEST_STRS = ("service", "endpoint", "version", "instance")
_LOG_STRS = ("service", "level", "version", "instance", "logger")
_METRIC_STRS = ("service", "name", "version", "instance")


def _requests(docs: list[dict], pos: np.ndarray, interner: Interner, empty_ok: bool) -> RequestColumns:
    ts = _float_col(docs, "ts")
    status = _status_col(docs)
    lat = _float_col(docs, "latency_ms")
    if lat.size and lat.min() < 0:
        raise _ColumnCheckFailed
    strs = _StrFields(docs, _REQUEST_STRS, interner, empty_ok)
    return RequestColumns(
        pos=pos,
        ts=ts,
        service=strs.ids("service", MAX_SERVICE_CHARS, False, key=True),
        endpoint=strs.ids("endpoint", MAX_NAME_CHARS, False),
        version=strs.ids("version", MAX_NAME_CHARS, True, key=True),
        instance=strs.ids("instance", MAX_NAME_CHARS, True),
        status=status,
        latency_ms=lat,
        txn=_StrFields(docs, ("txn",), interner, empty_ok).ids("txn", MAX_NAME_CHARS, True),
    )


def _logs(docs: list[dict], pos: np.ndarray, interner: Interner, empty_ok: bool) -> LogColumns:
    ts = _float_col(docs, "ts")
    msgs = _col(docs, "message")
    strs = _StrFields(docs, _LOG_STRS, interner, empty_ok)
    levels = strs.values("level")
    if _types(levels) != _STR or _types(msgs) != _STR:
        raise _ColumnCheckFailed
    uniq = set(levels)
    if "" in uniq or max(map(len, uniq)) > MAX_LEVEL_CHARS:
        raise _ColumnCheckFailed
    code = {lv: LEVELS.get(lv.upper(), LEVEL_INFO) for lv in uniq}
    if not _types(_col(docs, "trace_id")) <= _OPT_STR:
        raise _ColumnCheckFailed
    return LogColumns(
        pos=pos,
        ts=ts,
        service=strs.ids("service", MAX_SERVICE_CHARS, False, key=True),
        version=strs.ids("version", MAX_NAME_CHARS, True, key=True),
        instance=strs.ids("instance", MAX_NAME_CHARS, True),
        level=strs.expand(np.array([code[lv] for lv in levels], dtype=np.int8)),
        logger=strs.ids("logger", MAX_NAME_CHARS, True),
        message=msgs,
    )


def _labels_key(labels: dict) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _label_ids(labels: list, interner: Interner) -> np.ndarray:
    """Id of each event's canonical "k=v,k=v" labels, -1 for none; fails on a non-object or a non-string value."""
    n = len(labels)
    if labels.count(None) == n:
        return np.full(n, -1, dtype=np.int32)
    intern = interner.intern
    canonical: dict[tuple, str] = {}  # label sets repeat: sort and join each distinct one once
    ids = []
    for lab in labels:
        if lab is None or (type(lab) is dict and not lab):
            ids.append(-1)
            continue
        if type(lab) is not dict:
            raise _ColumnCheckFailed
        try:
            items = tuple(lab.items())
            key = canonical.get(items)
        except TypeError:  # an array or an object among the values
            raise _ColumnCheckFailed from None
        if key is None:
            if not _types(lab.values()) <= _STR:
                raise _ColumnCheckFailed
            key = canonical[items] = _labels_key(lab)
        # One intern call per event, as the overflow count is per event.
        ids.append(intern(key))
    return np.asarray(ids, dtype=np.int32)


def _metrics(docs: list[dict], pos: np.ndarray, interner: Interner, empty_ok: bool) -> MetricColumns:
    ts = _float_col(docs, "ts")
    value = _float_col(docs, "value")
    labels = _label_ids(_col(docs, "labels"), interner)
    strs = _StrFields(docs, _METRIC_STRS, interner, empty_ok)
    return MetricColumns(
        pos=pos,
        ts=ts,
        service=strs.ids("service", MAX_SERVICE_CHARS, False, key=True),
        name=strs.ids("name", MAX_NAME_CHARS, False),
        labels=labels,
        value=value,
        version=strs.ids("version", MAX_NAME_CHARS, True, key=True),
        instance=strs.ids("instance", MAX_NAME_CHARS, True),
    )


_EMPTY = {"request": RequestColumns, "log": LogColumns, "metric": MetricColumns}

_BUILDERS: dict[str, tuple[Callable, Callable]] = {
    "request": (_requests, check_request),
    "log": (_logs, check_log),
    "metric": (_metrics, check_metric),
}


def build_group(kind: str, docs: list[dict], pos: np.ndarray, interner: Interner, rejected: list[Rejected]):
    """Columns of one type's group; on a failed column check, event by event (bad ones to `rejected`)."""
    build, check = _BUILDERS[kind]
    try:
        return build(docs, pos, interner, False)
    except (_ColumnCheckFailed, OverflowError, ValueError):
        pass
    good_docs, good_pos = [], []
    for d, p in zip(docs, pos.tolist()):
        try:
            check(d)
        except BadEvent as e:
            rejected.append(Rejected(p, f"{kind}: {e}"))
            continue
        good_docs.append(d)
        good_pos.append(p)
    if not good_docs:
        return _EMPTY[kind]()
    return build(good_docs, np.asarray(good_pos, dtype=np.int64), interner, True)
