"""Core state snapshots: one partition's whole `Core` as bytes, and back.

The runtime checkpoints each partition's core together with the input
offsets it reflects; after a crash a new process restores the checkpoint,
re-reads from those offsets and carries on as if it had never stopped, so the
records it emits again carry the same ids. This module owns that byte format:
`snapshot(core) -> bytes` and `restore(core_class, pipeline, data) -> Core`
(called through `Core.snapshot` / `Core.restore`).

A snapshot is read from a topic that others can write to, so loading one must
never run code: there is no pickle. Structure is orjson, bulk data is raw
numeric arrays whose dtypes come from a fixed list, and the few objects that
carry behaviour (deploy events, findings, verdicts) are rebuilt by name from a
fixed table of dataclasses. Anything that does not fit is a `StateError`
saying what is wrong and what to do.

Layout (integers little-endian):

    offset 0   8 bytes   magic b"DETSTATE"
           8   u32       format version (FORMAT_VERSION)
          12   u32       CRC-32 of the payload
          16   u64       payload length in bytes
          24   u64       inflated payload length in bytes
          32   payload   zlib stream of: u32 header length, header, array data

The header is orjson: {"format", "pipeline": the settings the state depends
on, "arrays": [[dtype, shape, offset], ...], "state": the tree}. In the tree
an array is its index in "arrays"; floats that JSON cannot hold, tuples,
dicts with non-string keys and the known dataclasses are tagged objects
({"$f": "nan"}, {"$t": [...]}, {"$d": [[k, v], ...]}, {"$c": name, "v": {...}}).
Integer arrays are stored in the narrowest integer type that holds their
values and widened back on restore; arrays of many rows of the same kind
(the closed-window history, the judge's populations) are stored as one
concatenation per field plus the row lengths. Open windows are stored with
their chunk lists merged into distinct codes and counts.

Equal states give equal bytes (no clocks, no set or hash ordering), so
snapshot -> restore -> snapshot is byte-identical.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from detector.aggregate import sketch
from detector.baselines import BaselineFormatError
from detector.ingest.columns import CheckEvent, DeployEvent
from detector.config import Pipeline
from detector.ingest.interner import OVERFLOW, Interner
from detector.judge.evidence import Population
from detector.judge.verification import Finding, Verification
from detector.logs.findings import TemplateFinding
from detector.logs.templates import LogTemplates, SnapshotVersionError
from detector.records import Verdict
from detector.aggregate.windows import WindowFacts, _OpenWindow

if TYPE_CHECKING:
    from detector.core import Core

FORMAT_NAME = "detector.core-state"
FORMAT_VERSION = 3  # 2: verifications keep accumulated evidence; 3: metric series remember recurring excursions
MAGIC = b"DETSTATE"
_PREFIX = struct.Struct("<8sIIQQ")
_COMPRESS_LEVEL = 3  # demo-sized state: 8 ms, 9 % larger than level 6 at a third of its time
_ALIGN = 8
_START_COLD = "delete the checkpoint to start this partition cold"

# dtypes an array may be stored as; nothing else is read (in particular no object arrays)
_STORED_DTYPES = frozenset(np.dtype(t).str for t in (
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float64))
_INT_LADDER = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32))

# dataclasses a snapshot may name; only these are ever constructed from a snapshot
_CLASSES: dict[str, type] = {c.__name__: c for c in (DeployEvent, CheckEvent, Finding, TemplateFinding, Verdict)}

_FACT_ARRAYS = {
    "count": np.int64, "errors": np.int64, "txn_series": np.int64, "txn_name": np.int32, "txn_count": np.int64,
    "metric_n": np.int64, "metric_sum": np.float64, "metric_min": np.float64, "metric_max": np.float64,
    "log_service": np.int32, "log_version": np.int32, "log_level": np.int8, "log_count": np.int64,
}
_POP_ARRAYS = {"endpoints": np.int32, "n": np.int64, "errors": np.int64, "txn": np.int64}
_POP_SCALARS = ("total_n", "total_errors", "total_txn", "windows", "seconds")
_OPEN_ARRAYS = {
    "count": np.int64, "errors": np.int64, "lat_codes": np.int64, "lat_counts": np.int64, "txn_codes": np.int64,
    "txn_counts": np.int64, "m_n": np.int64, "m_sum": np.float64, "m_min": np.float64, "m_max": np.float64,
    "log_codes": np.int64, "log_counts": np.int64,
}
_SKETCH_ARRAYS = {"len": np.int64, "buckets": np.int32, "counts": np.int64}


class StateError(ValueError):
    """A core state snapshot cannot be written or restored; the message says why and what to do."""


# --------------------------------------------------------------------------- public API


def snapshot(core: Core) -> bytes:
    """The whole state of `core` as bytes (see the module docstring for the format)."""
    w = _Writer()
    facts = _Rows(w, _fact_fields())
    for h in core.history:
        facts.add(h)
    pops = _Rows(w, _pop_fields())
    judge = core.judge
    seasonal = core.seasonal.to_state()
    state = {
        "interner": {"strings": core.interner.strings(), "overflow": core.interner.overflow},
        "requests": _table_state(w, core.requests),
        "metrics": _table_state(w, core.metrics),
        "windows": _window_store_state(w, core.windows),
        "history": facts.write(),
        "pending_deploys": _value(core._pending_deploys),
        "pending_checks": _value(core._pending_checks),
        "stats": {f.name: _value(getattr(core.stats, f.name)) for f in dataclasses.fields(core.stats)},
        "seasonal": {"bank": w.blob(seasonal["bank"]), "episodes": seasonal["episodes"]},
        "metricwatch": _metricwatch_state(w, core.metricwatch.to_state()),
        "logs": None if core.logs is None else w.blob(core.logs.to_bytes()),
        "gate": None if core.gate is None else _gate_state(w, core.gate),
        "judge": {
            "verifications": [[sid, _verification_state(v, pops)] for sid, v in judge.verifications.items()],
            "grace": [[sid, _verification_state(v, pops)] for sid, v in judge.grace.items()],
            "done": list(judge.done),
            "smoke": judge.smoke.to_state(),
        },
    }
    state["judge"]["populations"] = pops.write()
    header = {"format": FORMAT_NAME, "pipeline": _pipeline_facts(core.pipeline), "arrays": w.table,
              "state": state}
    try:
        head = orjson.dumps(header)
    except TypeError as e:  # a value _value let through that orjson cannot hold: a bug here, not bad input
        raise StateError(f"cannot encode the core state ({e}); extend detector/state.py for the new value") from None
    raw = b"".join([struct.pack("<I", len(head)), head, *w.chunks])
    payload = zlib.compress(raw, _COMPRESS_LEVEL)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, zlib.crc32(payload), len(payload), len(raw)) + payload


def restore(core_class: type[Core], pipeline: Pipeline, data: bytes, partition: int = 0,
            partitions: int = 1) -> Core:
    """A new core, built for `pipeline` as partition `partition` of `partitions`, holding exactly
    the state `snapshot` wrote into `data`."""
    header, arrays = _open(data)
    _check_pipeline(header.get("pipeline"), pipeline)
    r = _Reader(header.get("arrays"), arrays)
    state = header.get("state")
    if not isinstance(state, dict):
        raise StateError(f"core state snapshot has no state tree (got {type(state).__name__}); {_START_COLD}")
    with _section("interner"):
        interner = _restore_interner(state["interner"], pipeline)
    core = core_class(pipeline, interner=interner, partition=partition, partitions=partitions)
    with _section("requests"):
        _restore_table(r, state["requests"], core.requests, len(interner))
    with _section("metrics"):
        _restore_table(r, state["metrics"], core.metrics, len(interner))
    with _section("windows"):
        _restore_window_store(r, state["windows"], core.windows)
    with _section("history"):
        facts = [_fact_from_row(row, start, end) for row, (start, end) in
                 _read_rows(r, state["history"], _fact_fields())]
        _check_facts(facts, len(core.requests), len(core.metrics))
        core.history.clear()
        core.history.extend(facts)
    with _section("pending_deploys"):
        pending = _unvalue(state["pending_deploys"])
        if not (isinstance(pending, list) and all(isinstance(d, DeployEvent) for d in pending)):
            raise ValueError("pending deploys should be a list of DeployEvent")
        core._pending_deploys = pending
    with _section("pending_checks"):
        # absent from snapshots written before smoke checks existed: nothing was pending
        checks = _unvalue(state.get("pending_checks", []))
        if not (isinstance(checks, list) and all(isinstance(c, CheckEvent) for c in checks)):
            raise ValueError("pending checks should be a list of CheckEvent")
        core._pending_checks = checks
    with _section("stats"):
        _restore_fields(core.stats, state["stats"])
    with _section("seasonal"):
        seasonal = state["seasonal"]
        try:
            core.seasonal.load_state({"bank": r.blob(seasonal["bank"]), "episodes": seasonal["episodes"]})
        except BaselineFormatError as e:
            raise StateError(f"core state snapshot: the seasonal baselines are damaged ({e}); {_START_COLD}") from None
    with _section("metricwatch"):
        mw = state["metricwatch"]
        core.metricwatch.load_state({
            "service_keys": mw["service_keys"],
            **{family: {part: {name: r.array(ref, np.float64) for name, ref in cols.items()}
                        for part, cols in mw[family].items()} for family in ("metrics", "services")}})
    with _section("logs"):
        _restore_logs(r, state["logs"], core)
    with _section("judge"):
        _restore_judge(r, state["judge"], core)
    with _section("gate"):
        # absent from snapshots written before the live fleet view: no window was waiting
        if core.gate is not None and state.get("gate"):
            _restore_gate(r, state["gate"], core)
    return core


def _gate_state(w: _Writer, gate: Any) -> dict:
    """The fleet gate: closed windows still waiting for the fleet (their facts exist nowhere
    else), the horizons queued between them, and what was already published."""
    facts = _Rows(w, _fact_fields())
    order = []
    for item in gate.queue:
        if isinstance(item, WindowFacts):
            facts.add(item)
            order.append(None)
        else:
            order.append(float(item))
    return {"order": order, "facts": facts.write(), "head_ready": gate.head_ready,
            "published_end": None if not np.isfinite(gate._published_end) else gate._published_end,
            "templates_sent": sorted(gate._templates_sent)}


def _restore_gate(r: _Reader, saved: dict, core: Core) -> None:
    facts = [_fact_from_row(row, start, end) for row, (start, end) in _read_rows(r, saved["facts"], _fact_fields())]
    _check_facts(facts, len(core.requests), len(core.metrics))
    order = saved["order"]
    if sum(1 for o in order if o is None) != len(facts):
        raise ValueError("gate queue order does not match its windows")
    head_ready = bool(saved["head_ready"])
    if head_ready and not (facts and order[0] is None and core.history and core.history[-1].end == facts[0].end):
        raise ValueError("the gate's prepared window is not the newest of the history")
    it = iter(facts)
    queue = [next(it) if o is None else float(o) for o in order]
    if head_ready:
        queue[0] = core.history[-1]  # the prepared head is the history's newest window, one object
    gate = core.gate
    gate.queue.clear()
    gate.queue.extend(queue)
    gate.head_ready = head_ready
    gate._templates_sent = set(saved["templates_sent"])
    if saved["published_end"] is not None:
        gate._published_end = float(saved["published_end"])


# --------------------------------------------------------------------------- container


def _open(data: bytes) -> tuple[dict, memoryview]:
    """Check the frame, inflate, split header and array data."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StateError(f"a core state snapshot is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise StateError(f"core state snapshot is truncated: {len(data)} bytes, shorter than its "
                         f"{_PREFIX.size}-byte frame; {_START_COLD}")
    magic, version, crc, n_payload, n_raw = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise StateError(f"not a core state snapshot: starts with {magic!r}, expected {MAGIC!r}; the checkpoint "
                         f"was written by something else: {_START_COLD}")
    if version != FORMAT_VERSION:
        raise StateError(f"core state snapshot has format version {version}, this build reads version "
                         f"{FORMAT_VERSION}; run the detector release that wrote it, or {_START_COLD}")
    payload = data[_PREFIX.size:]
    if len(payload) != n_payload:
        what = "truncated" if len(payload) < n_payload else "longer than its frame says"
        raise StateError(f"core state snapshot is {what}: the frame announces {n_payload} payload bytes, "
                         f"found {len(payload)}; {_START_COLD}")
    if zlib.crc32(payload) != crc:
        raise StateError(f"core state snapshot is corrupt: payload checksum {zlib.crc32(payload):#010x} does not "
                         f"match {crc:#010x}; {_START_COLD}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(payload, n_raw + 1)
    except zlib.error as e:
        raise StateError(f"core state snapshot is corrupt: cannot inflate its payload ({e}); {_START_COLD}") from None
    if len(raw) != n_raw or not inflater.eof:
        raise StateError(f"core state snapshot is corrupt: the payload inflates to {len(raw)} bytes, the frame "
                         f"says {n_raw}; {_START_COLD}")
    if n_raw < 4 or struct.unpack_from("<I", raw)[0] > n_raw - 4:
        raise StateError(f"core state snapshot is corrupt: its header length does not fit the payload; {_START_COLD}")
    n_head = struct.unpack_from("<I", raw)[0]
    try:
        header = orjson.loads(raw[4:4 + n_head])
    except orjson.JSONDecodeError as e:
        raise StateError(f"core state snapshot is corrupt: its header is not JSON ({e}); {_START_COLD}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise StateError(f"core state snapshot header names format {got!r}, expected {FORMAT_NAME!r}; "
                         f"{_START_COLD}")
    return header, memoryview(raw)[4 + n_head:]


class _Writer:
    """Collects arrays into one aligned byte region; `array` returns the index the header refers to."""

    def __init__(self) -> None:
        self.table: list[list] = []
        self.chunks: list[bytes] = []
        self.size = 0

    def array(self, a: np.ndarray, dtype: Any = None) -> int:
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        a = _narrow(a)
        stored = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        body = np.ascontiguousarray(a, dtype=stored).tobytes()
        pad = -self.size % _ALIGN
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.table.append([stored.str, list(a.shape), self.size])
        self.chunks.append(body)
        self.size += len(body)
        return len(self.table) - 1

    def blob(self, data: bytes) -> int:
        return self.array(np.frombuffer(data, dtype=np.uint8))


def _narrow(a: np.ndarray) -> np.ndarray:
    """The smallest integer type holding every value (exact: widened back on restore)."""
    if a.dtype.kind not in "iu":
        if a.dtype.str not in _STORED_DTYPES:
            raise StateError(f"cannot snapshot an array of dtype {a.dtype}; extend detector/state.py")
        return a
    if not a.size:
        return a.astype(np.uint8)
    lo, hi = int(a.min()), int(a.max())
    for t in _INT_LADDER:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return a.astype(t)
    if a.dtype == np.uint64 and hi > np.iinfo(np.int64).max:
        raise StateError(f"cannot snapshot uint64 values above 2**63 (got {hi}); extend detector/state.py")
    return a.astype(np.int64)


class _Reader:
    """Arrays of a snapshot by index, checked against the region and widened to the type the caller needs."""

    def __init__(self, table: Any, region: memoryview) -> None:
        if not isinstance(table, list):
            raise StateError(f"core state snapshot has no array table; {_START_COLD}")
        self.table = table
        self.region = region

    def array(self, ref: Any, dtype: Any) -> np.ndarray:
        if type(ref) is not int or not 0 <= ref < len(self.table):
            raise ValueError(f"array reference {ref!r} is not an index into the {len(self.table)} stored arrays")
        entry = self.table[ref]
        if not (isinstance(entry, list) and len(entry) == 3 and entry[0] in _STORED_DTYPES
                and isinstance(entry[1], list) and all(type(d) is int and d >= 0 for d in entry[1])
                and type(entry[2]) is int and entry[2] >= 0):
            raise ValueError(f"array #{ref} has a malformed entry {entry!r} (allowed dtypes: "
                             f"{sorted(_STORED_DTYPES)})")
        stored, shape, offset = np.dtype(entry[0]), tuple(entry[1]), entry[2]
        count = math.prod(shape)
        if offset + count * stored.itemsize > len(self.region):
            raise ValueError(f"array #{ref} ({count} x {stored}) runs past the end of the array data")
        a = np.frombuffer(self.region, dtype=stored, count=count, offset=offset).reshape(shape)
        want = np.dtype(dtype)
        if want.kind in "iu":
            if stored.kind not in "iu":
                raise ValueError(f"array #{ref} should hold integers, holds {stored}")
            if a.size and not np.can_cast(stored, want) and (
                    int(a.min()) < np.iinfo(want).min or int(a.max()) > np.iinfo(want).max):
                raise ValueError(f"array #{ref} has values outside {want}")
        elif want.kind != stored.kind:
            raise ValueError(f"array #{ref} should hold {want}, holds {stored}")
        return a.astype(want)  # always a copy: restored state owns writable arrays

    def vector(self, ref: Any, dtype: Any) -> np.ndarray:
        a = self.array(ref, dtype)
        if a.ndim != 1:
            raise ValueError(f"array #{ref} should be one-dimensional, has shape {a.shape}")
        return a

    def blob(self, ref: Any) -> bytes:
        return self.vector(ref, np.uint8).tobytes()


@contextmanager
def _section(name: str) -> Iterator[None]:
    """Turns any failure to rebuild one part of the state into a StateError naming that part."""
    try:
        yield
    except StateError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise StateError(f"core state snapshot: the {name} section is malformed ({type(e).__name__}: {e}); "
                         f"{_START_COLD}") from None


# --------------------------------------------------------------------------- plain values


def _value(v: Any) -> Any:
    """A JSON-able form of a plain value: see the tags in the module docstring."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"$f": repr(f)}
    if isinstance(v, tuple):
        return {"$t": [_value(x) for x in v]}
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _value(x) for k, x in v.items()}
        return {"$d": [[_value(k), _value(x)] for k, x in v.items()]}
    name = type(v).__name__
    if _CLASSES.get(name) is type(v):
        return {"$c": name, "v": {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    raise StateError(f"cannot snapshot a value of type {type(v).__qualname__} ({v!r:.80}); extend detector/state.py")


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _unvalue(j: Any) -> Any:
    """Inverse of `_value`; ValueError on anything `_value` cannot have written."""
    if j is None or isinstance(j, (bool, int, float, str)):
        return j
    if isinstance(j, list):
        return [_unvalue(x) for x in j]
    if not isinstance(j, dict):
        raise ValueError(f"unexpected JSON value {j!r:.80}")
    tags = [k for k in j if k.startswith("$")]
    if not tags:
        return {k: _unvalue(x) for k, x in j.items()}
    if set(j) == {"$f"} and j["$f"] in _NON_FINITE:
        return _NON_FINITE[j["$f"]]
    if set(j) == {"$t"} and isinstance(j["$t"], list):
        return tuple(_unvalue(x) for x in j["$t"])
    if set(j) == {"$d"} and isinstance(j["$d"], list):
        out = {}
        for pair in j["$d"]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"dict item should be [key, value], got {pair!r:.80}")
            out[_unvalue(pair[0])] = _unvalue(pair[1])
        return out
    if set(j) == {"$c", "v"} and j["$c"] in _CLASSES and isinstance(j["v"], dict):
        cls = _CLASSES[j["$c"]]
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        # fields added later (with defaults) may be absent from an older snapshot
        required = {f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not required <= set(j["v"]) <= set(names):
            raise ValueError(f"{cls.__name__} should have fields {names}, got {sorted(j['v'])}")
        return cls(**{k: _unvalue(x) for k, x in j["v"].items()})
    raise ValueError(f"unknown tagged value {j!r:.120} (known classes: {sorted(_CLASSES)})")


def _restore_fields(obj: Any, saved: Any) -> None:
    """Set every dataclass field of `obj` from `saved`, which must name exactly those fields."""
    names = [f.name for f in dataclasses.fields(obj)]
    if not isinstance(saved, dict) or set(saved) != set(names):
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{type(obj).__name__} should have fields {names}, got {got}")
    for k in names:
        setattr(obj, k, _unvalue(saved[k]))


# --------------------------------------------------------------------------- rows of arrays


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
                         "extend detector/state.py")
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
                         "extend detector/state.py")
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


# --------------------------------------------------------------------------- parts of the core


def _metricwatch_state(w: _Writer, mw: dict) -> dict:
    """The metric watch's detectors as arrays (per family, part and column) and its series keys."""
    out: dict[str, Any] = {"service_keys": mw["service_keys"]}
    for family in ("metrics", "services"):
        out[family] = {part: {name: w.array(a, np.float64) for name, a in cols.items()}
                       for part, cols in mw[family].items()}
    return out


def _pipeline_facts(p: Pipeline) -> dict:
    """The settings a snapshot's state is shaped by."""
    return {"width_s": p.windows.width_s, "lateness_s": p.windows.lateness_s, "logs": p.logs.enabled,
            "slot_s": p.baselines.slot_s}


def _check_pipeline(saved: Any, p: Pipeline) -> None:
    if not isinstance(saved, dict):
        raise StateError(f"core state snapshot does not record its pipeline settings; {_START_COLD}")
    now = _pipeline_facts(p)
    # Windows of another width, or state for a log step that is switched off
    # (or missing for one switched on), cannot continue; other settings
    # (thresholds, rules, lateness) apply from the next window on.
    for key, setting in (("width_s", "windows.width_s"), ("logs", "logs.enabled"), ("slot_s", "baselines.slot_s")):
        if saved.get(key) != now[key]:
            raise StateError(f"core state snapshot was written with {setting} = {saved.get(key)!r}, the pipeline "
                             f"{p.source} has {now[key]!r}; restore the setting, or {_START_COLD}")


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


def _restore_logs(r: _Reader, saved: Any, core: Any) -> None:
    if (saved is None) != (core.logs is None):
        raise StateError(f"core state snapshot {'lacks' if saved is None else 'has'} log template state but the "
                         f"pipeline has logs.enabled = {core.logs is not None}; {_START_COLD}")
    if saved is None:
        return
    try:
        core.logs = LogTemplates.from_bytes(r.blob(saved), core.logs.settings)
    except SnapshotVersionError as e:
        # Written with other masking rules (an upgrade): its template ids are not
        # the ones mined from now on. Keep the rest, relearn the templates.
        core.logs.cold_start_reason = str(e)
    except ValueError as e:
        raise StateError(f"core state snapshot: the log template state cannot be restored ({e}); {_START_COLD}") from None
    core.judge.logs = core.logs  # the judge reads findings from the same object


_VERIFICATION_SPECIAL = ("pre", "slices")


def _verification_state(v: Verification, pops: _Rows) -> dict:
    out = {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v) if f.name not in _VERIFICATION_SPECIAL}
    out["pre"] = None if v.pre is None else pops.add(v.pre)
    out["slices"] = [[_value(start), [[kind, pops.add(p)] for kind, p in by_kind.items()]]
                     for start, by_kind in v.slices.items()]
    return out


def _verification_from(saved: dict, pops: list[Population]) -> Verification:
    fields = dataclasses.fields(Verification)
    names = [f.name for f in fields]
    # fields added later with defaults (the ticket hold, the watch) may be absent from an older snapshot
    required = {f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not required <= set(saved) <= set(names):
        raise ValueError(f"Verification should have fields {names}, got {sorted(saved)}")

    def pop(ref: Any) -> Population:
        if type(ref) is not int or not 0 <= ref < len(pops):
            raise ValueError(f"population reference {ref!r} is not one of the {len(pops)} stored populations")
        return pops[ref]

    kwargs = {k: _unvalue(saved[k]) for k in names if k in saved and k not in _VERIFICATION_SPECIAL}
    kwargs["pre"] = None if saved["pre"] is None else pop(saved["pre"])
    kwargs["slices"] = {_unvalue(start): {kind: pop(ref) for kind, ref in by_kind}
                        for start, by_kind in saved["slices"]}
    v = Verification(**kwargs)
    if not isinstance(v.deploy, DeployEvent) or not (v.verdict is None or isinstance(v.verdict, Verdict)) \
            or not all(isinstance(f, Finding) for f in v.findings.values()) \
            or not all(isinstance(f, TemplateFinding) for f in [*v.log_findings, *v.log_reported.values()]):
        raise ValueError(f"verification of deploy {getattr(v.deploy, 'deploy_id', v.deploy)!r} holds objects "
                         "of the wrong kind")
    return v


def _restore_judge(r: _Reader, saved: dict, core: Any) -> None:
    pops = [_pop_from_row(parts, scalars) for parts, scalars in _read_rows(r, saved["populations"], _pop_fields())]
    verifications, grace = {}, {}
    # "grace" (verdicts whose root cause may still be completed) is absent from older snapshots.
    for held, items in ((verifications, saved["verifications"]), (grace, saved.get("grace", []))):
        for sid, v in items:
            if type(sid) is not int or not 0 <= sid < len(core.interner):
                raise ValueError(f"verification key {sid!r} is not an interned service id")
            held[sid] = _verification_from(v, pops)
    done = saved["done"]
    if not (isinstance(done, list) and all(isinstance(d, str) for d in done)):
        raise ValueError("judged deploy ids should be a list of strings")
    judge = core.judge
    judge.verifications = verifications
    judge.grace = grace
    judge.done.clear()
    judge.done.extend(done)
    if "smoke" in saved:  # absent from snapshots written before smoke checks existed: no runs kept
        judge.smoke.load_state(saved["smoke"])
