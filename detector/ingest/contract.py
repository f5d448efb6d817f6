"""Wire contract, input side: raw message values -> columnar batches.

`decode_batch` is on the hot path. A clean batch (every line a valid event
of the contract's fields) takes the msgspec fast path of `fastpath.py`, which
builds the same columns; any other batch is decoded whole by
`decode_precise`. That precise path parses every value with orjson, groups
the documents by `type` and validates each group with whole-column checks
(`columnchecks.py`). Only when a group fails a column check does it fall back
to checking that group event by event (`eventchecks.py`), so that every bad
event gets a precise reason and the good ones in the same batch still go
through. Types are grouped here with `list.count`/`list.index`, in C.
"""

from __future__ import annotations

from itertools import compress, repeat
from typing import Any, Sequence

import numpy as np
import orjson

from detector.ingest.columnchecks import build_group
from detector.ingest.columns import DecodedBatch, Rejected
from detector.ingest.eventchecks import decode_check, decode_deploy, decode_incident
from detector.ingest.fastpath import decode_clean
from detector.ingest.fields import (  # noqa: F401  (BadEvent, parse_ts and the size limit are this module's API too)
    DEFAULT_MAX_BYTES,
    EVENT_TYPES,
    BadEvent,
    _jtype,
    parse_ts,
)
from detector.ingest.interner import Interner

_dget = dict.get


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
            out.requests = build_group(kind, gdocs, gpos, interner, rejected)
        elif kind == "log":
            out.logs = build_group(kind, gdocs, gpos, interner, rejected)
        elif kind == "metric":
            out.metrics = build_group(kind, gdocs, gpos, interner, rejected)
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
