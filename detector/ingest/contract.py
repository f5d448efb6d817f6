"""Wire contract, input side: raw message values -> columnar batches.

`decode_batch` is on the hot path. A clean batch (every line a valid event
of the contract's fields) takes the msgspec fast path of `fastpath.py`, which
builds the same columns; any other batch is decoded whole by
`decode_precise`. That precise path parses every value with orjson, groups
the documents by `type` and validates each group with whole-column checks.
Only when a group fails a column check does it fall back to checking that
group event by event, so that every bad event gets a precise reason and the
good ones in the same batch still go through.

Per event, the column checks do their work in C loops: fields are pulled
with `map` and `itemgetter`, numbers are packed by `struct` (which refuses
anything but numbers), types are grouped with `list.count`/`list.index`, and
the string fields of an event are reduced to the distinct tuples of the
batch, so that type, length and interning work is paid once per distinct
value, not once per event. Each check decides exactly as the plain rule
"every value of the column has the right type and range", and the interner
meets the same strings in the same order, so columns, ids and rejections do
not depend on which path a group took.
"""

from __future__ import annotations

import math
import struct
from itertools import compress, count, repeat
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np
import orjson

from detector.ingest.columns import (
    LEVEL_INFO,
    PHASES,
    STRATEGIES,
    DecodedBatch,
    CheckEvent,
    DeployEvent,
    IncidentEvent,
    INCIDENT_STATUSES,
    ROOT_CAUSES,
    LogColumns,
    MetricColumns,
    Rejected,
    RequestColumns,
)
from detector.ingest.fields import (  # noqa: F401  (BadEvent, parse_ts and the limits are this module's API too)
    _NUM,
    DEFAULT_MAX_BYTES,
    EVENT_TYPES,
    LEVELS,
    MAX_LEVEL_CHARS,
    MAX_NAME_CHARS,
    MAX_SERVICE_CHARS,
    BadEvent,
    _jtype,
    parse_ts,
)
from detector.ingest.fastpath import decode_clean
from detector.ingest.interner import Interner

_STR = {str}
_OPT_STR = {str, type(None)}


def _req_str(d: dict, key: str, max_chars: int = MAX_NAME_CHARS) -> str:
    v = d.get(key)
    if v is None:
        raise BadEvent(f"missing field '{key}'")
    if type(v) is not str:
        raise BadEvent(f"field '{key}' must be a string (got {_jtype(v)})")
    if not v:
        raise BadEvent(f"field '{key}' must not be empty")
    if len(v) > max_chars:
        raise BadEvent(f"field '{key}' is longer than {max_chars} characters (got {len(v)})")
    return v


def _opt_str(d: dict, key: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if type(v) is not str:
        raise BadEvent(f"field '{key}' must be a string or absent (got {_jtype(v)})")
    if len(v) > max_chars:
        raise BadEvent(f"field '{key}' is longer than {max_chars} characters (got {len(v)})")
    return v


def _req_num(d: dict, key: str) -> float:
    v = d.get(key)
    if v is None:
        raise BadEvent(f"missing field '{key}'")
    if type(v) not in _NUM:
        raise BadEvent(f"field '{key}' must be a number (got {_jtype(v)})")
    f = float(v)
    if not math.isfinite(f):
        raise BadEvent(f"field '{key}' must be finite (got {v!r})")
    return f


# --- per-event checks (slow path; also the reference for the column checks) ---


def check_request(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "endpoint")
    st = d.get("status")
    if st is None:
        raise BadEvent("missing field 'status'")
    if type(st) is not int:
        raise BadEvent(f"field 'status' must be an integer (got {_jtype(st)})")
    if not 100 <= st <= 599:
        raise BadEvent(f"field 'status' must be within 100-599 (got {st})")
    lat = _req_num(d, "latency_ms")
    if lat < 0:
        raise BadEvent(f"field 'latency_ms' must be >= 0 (got {lat})")
    for key in ("version", "instance", "txn"):
        _opt_str(d, key)


def check_log(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "level", MAX_LEVEL_CHARS)
    msg = d.get("message")
    if msg is None:
        raise BadEvent("missing field 'message'")
    if type(msg) is not str:
        raise BadEvent(f"field 'message' must be a string (got {_jtype(msg)})")
    for key in ("version", "instance", "logger", "trace_id"):
        _opt_str(d, key)


def check_metric(d: dict) -> None:
    d["ts"] = parse_ts(d.get("ts"))
    _req_str(d, "service", MAX_SERVICE_CHARS)
    _req_str(d, "name")
    _req_num(d, "value")
    labels = d.get("labels")
    if labels is not None:
        if type(labels) is not dict:
            raise BadEvent(f"field 'labels' must be an object of string to string (got {_jtype(labels)})")
        for k, v in labels.items():
            if type(v) is not str:
                raise BadEvent(f"field 'labels.{k[:64]}' must be a string (got {_jtype(v)})")
    for key in ("version", "instance"):
        _opt_str(d, key)


def decode_deploy(d: dict, pos: int) -> DeployEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    deploy_id = _req_str(d, "deploy_id")
    version = _req_str(d, "version")
    phase = _opt_str(d, "phase") or "started"
    if phase not in PHASES:
        raise BadEvent(f"field 'phase' must be one of {', '.join(PHASES)} (got {phase[:64]!r})")
    strategy = _opt_str(d, "strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise BadEvent(f"field 'strategy' must be one of {', '.join(STRATEGIES)} (got {strategy[:64]!r})")
    weight = d.get("canary_weight")
    if weight is not None:
        weight = _req_num(d, "canary_weight")
        if not 0.0 <= weight <= 1.0:
            raise BadEvent(f"field 'canary_weight' must be within 0-1 (got {weight})")
    return DeployEvent(
        pos=pos,
        ts=ts,
        service=service,
        deploy_id=deploy_id,
        version=version,
        phase=phase,
        previous_version=_opt_str(d, "previous_version"),
        strategy=strategy,
        canary_weight=weight,
        change_kind=_opt_str(d, "change_kind"),
        commit=_opt_str(d, "commit"),
        author=_opt_str(d, "author"),
        reviewers=_opt_str_list(d, "reviewers"),
        labels=_opt_labels(d, "labels"),
    )


def _opt_str_list(d: dict, key: str) -> tuple[str, ...]:
    v = d.get(key)
    if v is None:
        return ()
    if type(v) is not list or any(type(x) is not str for x in v):
        raise BadEvent(f"field '{key}' must be an array of strings or absent (got {_jtype(v)})")
    return tuple(x[:MAX_NAME_CHARS] for x in v)


def _opt_labels(d: dict, key: str) -> tuple[tuple[str, str], ...]:
    v = d.get(key)
    if v is None:
        return ()
    if type(v) is not dict:
        raise BadEvent(f"field '{key}' must be an object of string to string (got {_jtype(v)})")
    for k, x in v.items():
        if type(x) is not str:
            raise BadEvent(f"field '{key}.{k[:64]}' must be a string (got {_jtype(x)})")
    return tuple(sorted(v.items()))


def _opt_num(d: dict, key: str) -> float | None:
    return None if d.get(key) is None else _req_num(d, key)


def decode_check(d: dict, pos: int) -> CheckEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    name = _req_str(d, "name")
    passed = d.get("passed")
    if passed is None:
        raise BadEvent("missing field 'passed'")
    if type(passed) is not bool:
        raise BadEvent(f"field 'passed' must be a boolean (got {_jtype(passed)})")
    duration = _opt_num(d, "duration_ms")
    if duration is not None and duration < 0:
        raise BadEvent(f"field 'duration_ms' must be >= 0 (got {duration})")
    return CheckEvent(pos=pos, ts=ts, service=service, name=name, passed=passed, version=_opt_str(d, "version"),
                      deploy_id=_opt_str(d, "deploy_id"), instance=_opt_str(d, "instance"), duration_ms=duration,
                      message=_opt_str(d, "message", 10_000), url=_opt_str(d, "url", 10_000))


def decode_incident(d: dict, pos: int) -> IncidentEvent:
    ts = parse_ts(d.get("ts"))
    service = _req_str(d, "service", MAX_SERVICE_CHARS)
    incident_id = _req_str(d, "incident_id")
    status = _opt_str(d, "status") or "opened"
    if status not in INCIDENT_STATUSES:
        raise BadEvent(f"field 'status' must be one of {', '.join(INCIDENT_STATUSES)} (got {status[:64]!r})")
    root = _opt_str(d, "root_cause")
    if root is not None and root not in ROOT_CAUSES:
        raise BadEvent(f"field 'root_cause' must be one of {', '.join(ROOT_CAUSES)} (got {root[:64]!r})")
    resolved = d.get("resolved_ts")
    return IncidentEvent(pos=pos, ts=ts, service=service, incident_id=incident_id, status=status,
                         severity=_opt_str(d, "severity"), title=_opt_str(d, "title", 10_000),
                         deploy_id=_opt_str(d, "deploy_id"), root_cause=root,
                         resolved_ts=None if resolved is None else parse_ts(resolved))


# --- column checks (fast path) ---


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


def _build(kind: str, docs: list[dict], pos: np.ndarray, interner: Interner, rejected: list[Rejected]):
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


def _loads_one(v: Any, max_bytes: int) -> Any:
    if not isinstance(v, (bytes, bytearray, memoryview, str)):
        return BadEvent(f"message value must be bytes (got {type(v).__name__})")
    if len(v) > max_bytes:
        return BadEvent(f"message is {len(v)} bytes, larger than the limit of {max_bytes} bytes")
    try:
        return orjson.loads(v)
    except orjson.JSONDecodeError as e:
        return BadEvent(f"not valid JSON: {e}")


def _untyped(d: Any, kind: Any) -> str:
    """Why a message is no event of a known type."""
    if isinstance(d, BadEvent):
        return str(d)
    if type(d) is not dict:
        return f"message must be a JSON object (got {_jtype(d)})"
    if kind is None:
        return "missing field 'type'"
    if type(kind) is not str:
        return f"field 'type' must be a string (got {_jtype(kind)})"
    return f"unknown type {kind[:64]!r} (expected one of {', '.join(EVENT_TYPES)})"


def _positions(kinds: list, kind: str, how_many: int) -> list[int]:
    """Where `kind` is in `kinds`: list.index scans in C, one call per hit."""
    index = kinds.index
    out, i = [], -1
    for _ in range(how_many):
        i = index(kind, i + 1)
        out.append(i)
    return out


def _group(docs: list, kinds: list, rejected: list[Rejected]) -> list[tuple[str, list[dict], np.ndarray]]:
    """(type, documents, positions) per event type, in order of each type's first event.

    Messages of no known type go to `rejected`. The order matters: groups
    intern their strings in it.
    """
    n = len(docs)
    # list.count and list.index compare in C without a call per message,
    # several times cheaper than any per-message grouping loop.
    first = kinds[0]
    for kind in EVENT_TYPES:
        if first == kind and kinds.count(kind) == n:  # one type: the norm on a topic
            return [(kind, docs, np.arange(n, dtype=np.int64))]
    seen = {kind: c for kind in EVENT_TYPES if (c := kinds.count(kind))}
    if sum(seen.values()) == n:  # every message has a known type
        main = max(seen, key=seen.__getitem__)
        groups = []
        is_main = np.ones(n, dtype=bool)
        for kind, how_many in seen.items():
            if kind != main:
                pos = _positions(kinds, kind, how_many)
                is_main[pos] = False
                groups.append((kind, [docs[i] for i in pos], np.asarray(pos, dtype=np.int64)))
        groups.append((main, list(compress(docs, is_main.tolist())), np.flatnonzero(is_main)))
        return sorted(groups, key=lambda g: int(g[2][0]))
    by_kind: dict[str, tuple[list, list]] = {}
    for i, (d, kind) in enumerate(zip(docs, kinds)):
        if type(kind) is str and kind in seen:
            g = by_kind.get(kind)
            if g is None:
                g = by_kind[kind] = ([], [])
            g[0].append(d)
            g[1].append(i)
        else:
            rejected.append(Rejected(i, _untyped(d, kind)))
    return [(kind, g[0], np.asarray(g[1], dtype=np.int64)) for kind, g in by_kind.items()]


def decode_batch(
    values: Sequence[bytes | None],
    interner: Interner,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedBatch:
    """Decode raw message values into columns; never raises for bad input.

    A clean batch takes the msgspec fast path (`fastpath.decode_clean`); any
    batch it cannot decode exactly as `decode_precise` would, the precise
    path decodes whole, so rejections and their reasons are always its own.
    """
    fast = decode_clean(values, interner, max_bytes)
    if fast is None:
        return decode_precise(values, interner, max_bytes)
    out, rare = fast
    for kind, d, p in rare:
        decode, into = _RARE[kind]
        try:
            getattr(out, into).append(decode(d, p))
        except BadEvent as e:
            out.rejected.append(Rejected(p, f"{kind}: {e}"))
    if len(out.rejected) > 1:
        out.rejected.sort(key=lambda r: r.pos)
    return out


def decode_precise(
    values: Sequence[bytes | None],
    interner: Interner,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedBatch:
    """Decode raw message values into columns, bad lines rejected one by one with their reasons."""
    out = DecodedBatch()
    n = len(values)
    if n == 0:
        return out
    loads = orjson.loads
    try:
        if max(map(len, values)) > max_bytes:
            raise ValueError
        docs: list[Any] = [loads(v) for v in values]
    except Exception:
        docs = [_loads_one(v, max_bytes) for v in values]
    try:
        kinds = list(map(_dget, docs, repeat("type")))
    except TypeError:  # some message is no JSON object
        kinds = [d.get("type") if type(d) is dict else None for d in docs]

    rejected = out.rejected
    for kind, gdocs, gpos in _group(docs, kinds, rejected):
        if kind == "request":
            out.requests = _build(kind, gdocs, gpos, interner, rejected)
        elif kind == "log":
            out.logs = _build(kind, gdocs, gpos, interner, rejected)
        elif kind == "metric":
            out.metrics = _build(kind, gdocs, gpos, interner, rejected)
        else:
            decode, into = _RARE[kind]
            dest = getattr(out, into)
            for d, p in zip(gdocs, gpos.tolist()):
                try:
                    dest.append(decode(d, p))
                except BadEvent as e:
                    rejected.append(Rejected(p, f"{kind}: {e}"))
    if len(rejected) > 1:
        rejected.sort(key=lambda r: r.pos)
    return out


# rare types: decoded one by one into plain objects -> (decoder, DecodedBatch field)
_RARE = {"deploy": (decode_deploy, "deploys"), "check": (decode_check, "checks"),
         "incident": (decode_incident, "incidents")}


def decode_lines(lines: Sequence[bytes], interner: Interner, max_bytes: int = DEFAULT_MAX_BYTES) -> DecodedBatch:
    """JSONL convenience: strips line endings and skips blank lines' positions."""
    return decode_batch([ln.rstrip(b"\r\n") for ln in lines], interner, max_bytes)
