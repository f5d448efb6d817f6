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

The package's modules, lowest first: `frame` (the byte frame, the array
region, `StateError`), `values` (plain values and the dataclass table),
`rows` (row tables: closed windows, populations), `tables` (the string
table, series tables and open windows), `verdicts` (the judge's
verifications and the fleet gate); this module writes and reads the whole.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from detector.baselines import BaselineFormatError
from detector.config import Pipeline
from detector.ingest.columns import CheckEvent, DeployEvent
from detector.logs.templates import LogTemplates, SnapshotVersionError
from detector.state.frame import (_COMPRESS_LEVEL, _PREFIX, _START_COLD, FORMAT_NAME, FORMAT_VERSION, MAGIC,
                                  StateError, _open, _Reader, _section, _Writer)
from detector.state.rows import _check_facts, _fact_fields, _fact_from_row, _pop_fields, _read_rows, _Rows
from detector.state.tables import (_restore_interner, _restore_table, _restore_window_store, _table_state,
                                   _window_store_state)
from detector.state.values import _restore_fields, _unvalue, _value
from detector.state.verdicts import _gate_state, _restore_gate, _restore_judge, _verification_state

if TYPE_CHECKING:
    from detector.core import Core

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAGIC", "StateError", "restore", "snapshot"]

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
        raise StateError(f"cannot encode the core state ({e}); extend detector/state/values.py for the new "
                         "value") from None
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
