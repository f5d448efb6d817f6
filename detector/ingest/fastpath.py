"""Fast path for clean batches: msgspec structs validate in C, then the precise path's columns.

`msgspec` decodes each raw value into a typed struct (a tagged union on
`type`; the contract's types, ranges and lengths as constraints), which is
cheaper than `orjson.loads` building a dict. From the structs this module
builds the columns the precise path (`contract.decode_precise`) builds for
the same batch, bit for bit: the same groups in the same order, strings
meeting the interner in the same order, the same level codes, RFC 3339
times through the same `parse_ts`, the same canonical metric labels.

It takes a batch only when it can promise that. Anything else returns None
and the caller decodes the whole batch on the precise path, which gives
every bad line its reason. So the fast path is stricter than the contract,
never looser:

* a line that is not a struct of the union (bad JSON, a missing field, a
  wrong type, a value out of range, a field the contract does not name: a
  skipped field is not checked for UTF-8 or number range as orjson checks
  it), or a value that is no bytes nor text;
* "" in an optional string field (the precise path re-checks such a group);
* strings that would not all fit in the interner below `max_size` (the
  precise path counts the overflow event by event);
* a deploy, check or incident line that orjson refuses or reads with
  another `type` (those lines are parsed by orjson and handed back for the
  precise per-event decoders: they are rare and intern nothing).
"""

from __future__ import annotations

import struct
from itertools import compress, count
from operator import attrgetter
from typing import Annotated, Any, Sequence, Union

import msgspec
import numpy as np
import orjson
from msgspec import Meta, Struct

from detector.ingest.columns import LEVEL_INFO, DecodedBatch, LogColumns, MetricColumns, RequestColumns
from detector.ingest.fields import (
    EVENT_TYPES,
    LEVELS,
    MAX_LEVEL_CHARS,
    MAX_NAME_CHARS,
    MAX_SERVICE_CHARS,
    BadEvent,
    parse_ts,
)
from detector.ingest.interner import Interner

_Service = Annotated[str, Meta(min_length=1, max_length=MAX_SERVICE_CHARS)]
_Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
# Optional strings: "" is valid input, but the precise path re-checks a group
# holding one, so such a batch is left to it.
_Opt = Union[Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)], None]
_Ts = Union[float, str]  # a JSON number (an integer becomes its float) or an RFC 3339 string


class _Request(Struct, tag_field="type", tag="request", forbid_unknown_fields=True, gc=False):
    ts: _Ts
    service: _Service
    endpoint: _Name
    status: Annotated[int, Meta(ge=100, le=599)]
    latency_ms: Annotated[float, Meta(ge=0)]
    version: _Opt = None
    instance: _Opt = None
    txn: _Opt = None


class _Log(Struct, tag_field="type", tag="log", forbid_unknown_fields=True, gc=False):
    ts: _Ts
    service: _Service
    level: Annotated[str, Meta(min_length=1, max_length=MAX_LEVEL_CHARS)]
    message: str
    version: _Opt = None
    instance: _Opt = None
    logger: _Opt = None
    trace_id: Union[Annotated[str, Meta(max_length=MAX_NAME_CHARS)], None] = None


class _Metric(Struct, tag_field="type", tag="metric", forbid_unknown_fields=True):
    ts: _Ts
    service: _Service
    name: _Name
    value: float
    labels: Union[dict[str, str], None] = None
    version: _Opt = None
    instance: _Opt = None


# Rare types: only recognised here; orjson parses their lines for the precise decoders.
class _Deploy(Struct, tag_field="type", tag="deploy", gc=False):
    pass


class _Check(Struct, tag_field="type", tag="check", gc=False):
    pass


class _Incident(Struct, tag_field="type", tag="incident", gc=False):
    pass


_KIND = {_Request: "request", _Log: "log", _Metric: "metric", _Deploy: "deploy", _Check: "check",
         _Incident: "incident"}
_CLASSES = tuple(_KIND)
_CODE = {cls: i for i, cls in enumerate(_CLASSES)}
assert tuple(_KIND.values()) == EVENT_TYPES
_decode_one = msgspec.json.Decoder(Union[_Request, _Log, _Metric, _Deploy, _Check, _Incident]).decode

_TS, _STATUS, _LATENCY, _VALUE, _LABELS, _MESSAGE = map(
    attrgetter, ("ts", "status", "latency_ms", "value", "labels", "message"))
# The string fields of each type in the order the precise path interns them
# (a log's level is not interned: it rides along to be mapped once per distinct value).
_REQUEST_STRS = attrgetter("service", "endpoint", "version", "instance", "txn")
_LOG_STRS = attrgetter("service", "version", "instance", "logger", "level")
_METRIC_STRS = attrgetter("service", "name", "version", "instance")


class _Unclean(Exception):
    """The batch is not one the fast path can decode exactly: the precise path takes it."""


def _floats(values: list) -> np.ndarray:
    """float64 column; RFC 3339 strings through `parse_ts`; a string it refuses makes the batch unclean."""
    n = len(values)
    arr = np.empty(n, dtype=np.float64)
    try:
        # struct refuses strings: then the strings are parsed one by one
        struct.pack_into(f"{n}d", arr, 0, *values)
    except struct.error:
        try:
            arr[:] = [v if type(v) is float else parse_ts(v) for v in values]
        except BadEvent:
            raise _Unclean from None
    if not np.isfinite(arr).all():
        raise _Unclean
    return arr


def _labels_keys(labels: list) -> list:
    """Canonical "k=v,k=v" (sorted keys) of each event's labels, None for none or {}."""
    if labels.count(None) == len(labels):
        return labels
    canonical: dict[tuple, str] = {}
    out = []
    for lab in labels:
        if not lab:
            out.append(None)
            continue
        items = tuple(lab.items())
        key = canonical.get(items)
        if key is None:
            key = canonical[items] = ",".join(f"{k}={lab[k]}" for k in sorted(lab))
        out.append(key)
    return out


def _distinct(rows: Any, n: int) -> tuple[list, np.ndarray]:
    """The distinct rows in order of first sight, and each event's index among them.

    A batch repeats a handful of services, endpoints, versions and
    instances: interning and level mapping are then paid per distinct tuple.
    The first sight of a value among the distinct tuples is its first sight
    among the events, so the interner meets the strings in the same order.
    """
    first: dict = {}
    first_row = np.empty(n, dtype=np.int64)
    struct.pack_into(f"{n}q", first_row, 0, *map(first.setdefault, rows, count()))
    slot = np.empty(n, dtype=np.intp)
    slot[np.fromiter(first.values(), dtype=np.intp, count=len(first))] = np.arange(len(first))
    return list(first), slot[first_row]


def _group(events: list) -> list[tuple[type, list, np.ndarray]]:
    """(class, events, positions) per type, in order of each type's first event (the precise path's order)."""
    n = len(events)
    kinds = list(map(type, events))
    if kinds.count(kinds[0]) == n:  # one type: the norm on a topic
        return [(kinds[0], events, np.arange(n, dtype=np.int64))]
    # one byte per event: counting and finding them is then numpy's work, not a compare per event
    codes = np.frombuffer(bytes(map(_CODE.__getitem__, kinds)), dtype=np.uint8)
    counts = np.bincount(codes, minlength=len(_CLASSES))
    main = int(counts.argmax())
    groups = []
    for code in np.flatnonzero(counts).tolist():
        is_code = codes == code
        pos = np.flatnonzero(is_code)
        group = list(compress(events, is_code.tolist())) if code == main else [events[i] for i in pos.tolist()]
        groups.append((_CLASSES[code], group, pos))
    return sorted(groups, key=lambda g: int(g[2][0]))


def decode_clean(values: Sequence[Any], interner: Interner,
                 max_bytes: int) -> tuple[DecodedBatch, list[tuple[str, dict, int]]] | None:
    """Columns of a clean batch, and its rare events as (type, orjson document, position); None if not clean.

    On None nothing has changed (the interner included): the caller decodes
    the batch on the precise path.
    """
    n = len(values)
    if n == 0:
        return None
    try:
        if max(map(len, values)) > max_bytes:
            return None
        events = list(map(_decode_one, values))
    except Exception:  # any line msgspec refuses: the precise path says why
        return None
    try:
        return _build(values, events, interner)
    except _Unclean:
        return None


def _build(values: Sequence[bytes], events: list, interner: Interner):
    out = DecodedBatch()
    rare: list[tuple[str, dict, int]] = []
    strings: list[list] = []  # per field, its values over the group's distinct tuples; in interning order
    plans = []
    for cls, group, pos in _group(events):
        kind = _KIND[cls]
        n = len(group)
        if cls is _Request:
            rows, index = _distinct(map(_REQUEST_STRS, group), n)
            plans.append((kind, pos, index, len(strings), _floats(list(map(_TS, group))),
                          np.array(list(map(_STATUS, group)), dtype=np.int16),
                          np.array(list(map(_LATENCY, group)), dtype=np.float64)))
            strings += map(list, zip(*rows))
        elif cls is _Log:
            rows, index = _distinct(map(_LOG_STRS, group), n)
            *strs, levels = map(list, zip(*rows))
            level = np.array([LEVELS.get(lv.upper(), LEVEL_INFO) for lv in levels], dtype=np.int8)[index]
            plans.append((kind, pos, index, len(strings), _floats(list(map(_TS, group))), level,
                          list(map(_MESSAGE, group))))
            strings += strs
        elif cls is _Metric:
            # the precise path interns the labels before the other strings
            labels, labels_index = _distinct(_labels_keys(list(map(_LABELS, group))), n)
            rows, index = _distinct(map(_METRIC_STRS, group), n)
            plans.append((kind, pos, index, len(strings), _floats(list(map(_TS, group))),
                          _floats(list(map(_VALUE, group))), labels_index))
            strings.append(labels)
            strings += map(list, zip(*rows))
        else:
            loads = orjson.loads
            for p in pos.tolist():
                try:
                    d = loads(values[p])
                except orjson.JSONDecodeError:
                    raise _Unclean from None
                if d.get("type") != kind:
                    raise _Unclean
                rare.append((kind, d, p))

    ids = _intern(strings, interner)
    for kind, pos, index, at, ts, a, b in plans:
        if kind == "request":
            service, endpoint, version, instance, txn = (i[index] for i in ids[at:at + 5])
            out.requests = RequestColumns(pos=pos, ts=ts, service=service, endpoint=endpoint, version=version,
                                          instance=instance, status=a, latency_ms=b, txn=txn)
        elif kind == "log":
            service, version, instance, logger = (i[index] for i in ids[at:at + 4])
            out.logs = LogColumns(pos=pos, ts=ts, service=service, version=version, instance=instance, level=a,
                                  logger=logger, message=b)
        else:
            labels = ids[at][b]
            service, name, version, instance = (i[index] for i in ids[at + 1:at + 5])
            out.metrics = MetricColumns(pos=pos, ts=ts, service=service, name=name, labels=labels, value=a,
                                        version=version, instance=instance)
    return out, rare


def _intern(columns: list[list], interner: Interner) -> list[np.ndarray]:
    """int32 ids of each column's values (-1 for None), new strings interned column by column in order.

    Fails (nothing interned) unless every new string fits below `max_size`:
    past it the precise path's overflow count is per event.
    """
    known = interner.ids_of
    new: dict[str, None] = {}
    for column in columns:
        for s, i in zip(column, known(column)):
            if i is None and s is not None:
                new[s] = None
    if new:
        if len(interner) + len(new) > interner.max_size:
            raise _Unclean
        interner.intern_many(list(new))
    get = interner.get  # -1 for None
    return [np.array(list(map(get, column)), dtype=np.int32) for column in columns]
