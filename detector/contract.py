"""Wire contract, input side: raw message values -> columnar batches.

`decode_batch` is on the hot path. It parses every value with orjson, groups
the documents by `type` and validates each group with whole-column checks
(type sets, numpy range checks). Only when a group fails a column check does
it fall back to checking that group event by event, so that every bad event
gets a precise reason and the good ones in the same batch still go through.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable, Sequence

import numpy as np
import orjson

from detector.columns import (
    LEVEL_ERROR,
    LEVEL_FATAL,
    LEVEL_INFO,
    LEVEL_WARN,
    PHASES,
    STRATEGIES,
    DecodedBatch,
    DeployEvent,
    LogColumns,
    MetricColumns,
    Rejected,
    RequestColumns,
)
from detector.interner import Interner

DEFAULT_MAX_BYTES = 1_048_576
MAX_SERVICE_CHARS = 200
MAX_NAME_CHARS = 2_000
EVENT_TYPES = ("request", "log", "metric", "deploy")

LEVELS = {
    "WARN": LEVEL_WARN,
    "WARNING": LEVEL_WARN,
    "ERROR": LEVEL_ERROR,
    "FATAL": LEVEL_FATAL,
    "CRITICAL": LEVEL_FATAL,
}

_NUM = {int, float}
_STR = {str}
_OPT_STR = {str, type(None)}


class BadEvent(ValueError):
    """One event breaks the contract; the message is the dead-letter reason."""


def parse_ts(value: Any) -> float:
    """Event time in Unix seconds from a JSON number or an RFC 3339 string."""
    if type(value) in _NUM:
        ts = float(value)
        if not math.isfinite(ts):
            raise BadEvent(f"field 'ts' must be finite (got {value!r})")
        return ts
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise BadEvent(f"field 'ts' is not a number nor an RFC 3339 time (got {value[:64]!r})") from None
        if dt.tzinfo is None:
            raise BadEvent(f"field 'ts' RFC 3339 time needs a UTC offset or 'Z' (got {value[:64]!r})")
        return dt.timestamp()
    if value is None:
        raise BadEvent("missing field 'ts'")
    raise BadEvent(f"field 'ts' must be a number or an RFC 3339 string (got {_jtype(value)})")


def _jtype(v: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(v), type(v).__name__)


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
    _req_str(d, "level", 64)
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
    )


# --- column builders (fast path) ---


class _ColumnCheckFailed(Exception):
    """A whole-column check failed: re-check this group event by event."""


def _types(values: list) -> set:
    return set(map(type, values))


def _num_col(values: list) -> np.ndarray:
    if not _types(values) <= _NUM:
        raise _ColumnCheckFailed
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise _ColumnCheckFailed
    return arr


def _str_col(values: list, interner: Interner, max_chars: int, optional: bool, key: bool = False) -> np.ndarray:
    kinds = _types(values)
    if kinds == _STR:
        uniq = set(values)
        if "" in uniq or max(map(len, uniq)) > max_chars:
            raise _ColumnCheckFailed
        return np.asarray(interner.intern_many(values, key), dtype=np.int32)
    if not optional or not kinds <= _OPT_STR:
        raise _ColumnCheckFailed
    if kinds == {type(None)}:
        return np.full(len(values), -1, dtype=np.int32)
    uniq = set(values)
    uniq.discard(None)
    if max(map(len, uniq)) > max_chars:
        raise _ColumnCheckFailed
    intern = interner.intern
    return np.asarray([-1 if v is None else intern(v, key) for v in values], dtype=np.int32)


def _requests(docs: list[dict], pos: np.ndarray, interner: Interner) -> RequestColumns:
    ts = _num_col([d.get("ts") for d in docs])
    status_l = [d.get("status") for d in docs]
    if _types(status_l) != {int}:
        raise _ColumnCheckFailed
    status = np.asarray(status_l, dtype=np.int64)
    if status.size and (status.min() < 100 or status.max() > 599):
        raise _ColumnCheckFailed
    lat = _num_col([d.get("latency_ms") for d in docs])
    if lat.size and lat.min() < 0:
        raise _ColumnCheckFailed
    return RequestColumns(
        pos=pos,
        ts=ts,
        service=_str_col([d.get("service") for d in docs], interner, MAX_SERVICE_CHARS, False, key=True),
        endpoint=_str_col([d.get("endpoint") for d in docs], interner, MAX_NAME_CHARS, False),
        version=_str_col([d.get("version") for d in docs], interner, MAX_NAME_CHARS, True, key=True),
        instance=_str_col([d.get("instance") for d in docs], interner, MAX_NAME_CHARS, True),
        status=status.astype(np.int16),
        latency_ms=lat,
        txn=_str_col([d.get("txn") for d in docs], interner, MAX_NAME_CHARS, True),
    )


def _logs(docs: list[dict], pos: np.ndarray, interner: Interner) -> LogColumns:
    ts = _num_col([d.get("ts") for d in docs])
    levels = [d.get("level") for d in docs]
    msgs = [d.get("message") for d in docs]
    if _types(levels) != _STR or _types(msgs) != _STR:
        raise _ColumnCheckFailed
    uniq = set(levels)
    if "" in uniq or max(map(len, uniq)) > 64:
        raise _ColumnCheckFailed
    code = {lv: LEVELS.get(lv.upper(), LEVEL_INFO) for lv in uniq}
    for key in ("trace_id",):
        if not _types([d.get(key) for d in docs]) <= _OPT_STR:
            raise _ColumnCheckFailed
    return LogColumns(
        pos=pos,
        ts=ts,
        service=_str_col([d.get("service") for d in docs], interner, MAX_SERVICE_CHARS, False, key=True),
        version=_str_col([d.get("version") for d in docs], interner, MAX_NAME_CHARS, True, key=True),
        instance=_str_col([d.get("instance") for d in docs], interner, MAX_NAME_CHARS, True),
        level=np.asarray([code[lv] for lv in levels], dtype=np.int8),
        logger=_str_col([d.get("logger") for d in docs], interner, MAX_NAME_CHARS, True),
        message=msgs,
    )


def _labels_key(labels: dict) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _metrics(docs: list[dict], pos: np.ndarray, interner: Interner) -> MetricColumns:
    ts = _num_col([d.get("ts") for d in docs])
    value = _num_col([d.get("value") for d in docs])
    labels_l = [d.get("labels") for d in docs]
    intern = interner.intern
    label_ids = []
    for lab in labels_l:
        if lab is None:
            label_ids.append(-1)
        elif type(lab) is dict and _types(list(lab.values())) <= _STR:
            label_ids.append(intern(_labels_key(lab)) if lab else -1)
        else:
            raise _ColumnCheckFailed
    return MetricColumns(
        pos=pos,
        ts=ts,
        service=_str_col([d.get("service") for d in docs], interner, MAX_SERVICE_CHARS, False, key=True),
        name=_str_col([d.get("name") for d in docs], interner, MAX_NAME_CHARS, False),
        labels=np.asarray(label_ids, dtype=np.int32),
        value=value,
        version=_str_col([d.get("version") for d in docs], interner, MAX_NAME_CHARS, True, key=True),
        instance=_str_col([d.get("instance") for d in docs], interner, MAX_NAME_CHARS, True),
    )


_EMPTY = {"request": RequestColumns, "log": LogColumns, "metric": MetricColumns}

_BUILDERS: dict[str, tuple[Callable, Callable]] = {
    "request": (_requests, check_request),
    "log": (_logs, check_log),
    "metric": (_metrics, check_metric),
}


def _build(kind: str, docs: list[dict], pos: list[int], interner: Interner, rejected: list[Rejected]):
    build, check = _BUILDERS[kind]
    try:
        return build(docs, np.asarray(pos, dtype=np.int64), interner)
    except (_ColumnCheckFailed, OverflowError, ValueError):
        pass
    good_docs, good_pos = [], []
    for d, p in zip(docs, pos):
        try:
            check(d)
        except BadEvent as e:
            rejected.append(Rejected(p, f"{kind}: {e}"))
            continue
        good_docs.append(d)
        good_pos.append(p)
    if not good_docs:
        return _EMPTY[kind]()
    return build(good_docs, np.asarray(good_pos, dtype=np.int64), interner)


def _loads_one(v: Any, max_bytes: int) -> Any:
    if not isinstance(v, (bytes, bytearray, memoryview, str)):
        return BadEvent(f"message value must be bytes (got {type(v).__name__})")
    if len(v) > max_bytes:
        return BadEvent(f"message is {len(v)} bytes, larger than the limit of {max_bytes} bytes")
    try:
        return orjson.loads(v)
    except orjson.JSONDecodeError as e:
        return BadEvent(f"not valid JSON: {e}")


def decode_batch(
    values: Sequence[bytes | None],
    interner: Interner,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedBatch:
    """Decode raw message values into columns; never raises for bad input."""
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

    kinds = [d.get("type") if type(d) is dict else None for d in docs]
    rejected = out.rejected
    if kinds.count("request") == n:
        groups = {"request": (docs, list(range(n)))}
    else:
        groups = {}
        for i, (d, k) in enumerate(zip(docs, kinds)):
            if k in _BUILDERS or k == "deploy":
                g = groups.get(k)
                if g is None:
                    g = groups[k] = ([], [])
                g[0].append(d)
                g[1].append(i)
            elif isinstance(d, BadEvent):
                rejected.append(Rejected(i, str(d)))
            elif type(d) is not dict:
                rejected.append(Rejected(i, f"message must be a JSON object (got {_jtype(d)})"))
            elif k is None:
                rejected.append(Rejected(i, "missing field 'type'"))
            elif type(k) is not str:
                rejected.append(Rejected(i, f"field 'type' must be a string (got {_jtype(k)})"))
            else:
                rejected.append(
                    Rejected(i, f"unknown type {k[:64]!r} (expected one of {', '.join(EVENT_TYPES)})")
                )
    for kind, (gdocs, gpos) in groups.items():
        if kind == "request":
            out.requests = _build(kind, gdocs, gpos, interner, rejected)
        elif kind == "log":
            out.logs = _build(kind, gdocs, gpos, interner, rejected)
        elif kind == "metric":
            out.metrics = _build(kind, gdocs, gpos, interner, rejected)
        else:
            for d, p in zip(gdocs, gpos):
                try:
                    out.deploys.append(decode_deploy(d, p))
                except BadEvent as e:
                    rejected.append(Rejected(p, f"deploy: {e}"))
    if len(rejected) > 1:
        rejected.sort(key=lambda r: r.pos)
    return out


def decode_lines(lines: Sequence[bytes], interner: Interner, max_bytes: int = DEFAULT_MAX_BYTES) -> DecodedBatch:
    """JSONL convenience: strips line endings and skips blank lines' positions."""
    return decode_batch([ln.rstrip(b"\r\n") for ln in lines], interner, max_bytes)
