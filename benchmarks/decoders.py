"""Decoder candidates side by side on the same batches: bare orjson, the current path, msgspec, pyarrow.

Issue 17 asks whether decoding in compiled code would pay: each candidate
turns the same batches of raw demo lines (batches of `--batch` lines) into
what the core needs, and all are timed in alternation in one run:

* `orjson.loads` per line (baseline): parsing only, nothing validated or kept;
* `decode_batch` (current): on these clean batches the msgspec fast path
  (detector/ingest/fastpath.py, since issue 17's third round); a batch with a
  bad line goes to the precise path (orjson, then whole-column checks,
  grouping by `type`, interning, numpy columns: `decode_precise`);
* `decode_precise`: that precise path alone, on the same batches;
* msgspec, typed: one `msgspec.json.decode` of the batch as a JSON array of a
  tagged union on `type` (Request, Log, Metric, Deploy, Check, Incident
  structs, with the contract's ranges and lengths as `Meta` constraints:
  validation in C), then the request columns (ts, status, latency_ms as numpy
  arrays; service, endpoint, version, instance interned) built from the
  structs. It is a lower bound of a msgspec decoder: RFC 3339 timestamps, the
  log level mapping, metric labels and the per-line rejection reasons would
  still be Python work on top;
* msgspec, structs only: the decode call alone (validation, no columns);
* pyarrow's JSON reader (`pyarrow.json.read_json` on the batch's bytes, an
  explicit schema of the request fields): requests only, since the reader
  needs one schema per input and has no per-line rejection (a bad line fails
  the whole batch). Skipped when pyarrow is not installed.

Not part of `make bench`. msgspec is a dependency of the package; pyarrow comes with the `bench`
extra (its row is skipped without it).
Run: `python benchmarks/decoders.py [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import sys
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Union

import msgspec
import numpy as np
import orjson
from msgspec import Meta, Struct

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import best_of, demo_lines, machine  # noqa: E402

from detector.ingest.contract import decode_batch, decode_precise  # noqa: E402
from detector.ingest.fields import MAX_LEVEL_CHARS, MAX_NAME_CHARS, MAX_SERVICE_CHARS  # noqa: E402
from detector.ingest.interner import Interner  # noqa: E402

REQUEST_PREFIX = b'{"type":"request"'
# The prototype measured in issue 17, kept as it was measured: every type's fields typed (the fast path
# of detector/ingest/fastpath.py types only the column types, forbids unknown fields and leaves "" to the
# precise path), the contract's limits shared with the decoders.
Service = Annotated[str, Meta(min_length=1, max_length=MAX_SERVICE_CHARS)]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
Opt = Union[Annotated[str, Meta(max_length=MAX_NAME_CHARS)], None]


class Request(Struct, tag_field="type", tag="request"):
    ts: Union[float, str]
    service: Service
    endpoint: Name
    status: Annotated[int, Meta(ge=100, le=599)]
    latency_ms: Annotated[float, Meta(ge=0)]
    version: Opt = None
    instance: Opt = None
    txn: Opt = None


class Log(Struct, tag_field="type", tag="log"):
    ts: Union[float, str]
    service: Service
    level: Annotated[str, Meta(min_length=1, max_length=MAX_LEVEL_CHARS)]
    message: str
    version: Opt = None
    instance: Opt = None
    logger: Opt = None
    trace_id: Opt = None


class Metric(Struct, tag_field="type", tag="metric"):
    ts: Union[float, str]
    service: Service
    name: Name
    value: float
    labels: Union[dict[str, str], None] = None
    version: Opt = None
    instance: Opt = None


class Deploy(Struct, tag_field="type", tag="deploy"):
    ts: Union[float, str]
    service: Service
    deploy_id: Name
    version: Name
    phase: Opt = None
    previous_version: Opt = None
    strategy: Opt = None
    canary_weight: Union[float, None] = None
    change_kind: Opt = None
    commit: Opt = None
    author: Opt = None
    reviewers: Union[list[str], None] = None
    labels: Union[dict[str, str], None] = None


class Check(Struct, tag_field="type", tag="check"):
    ts: Union[float, str]
    service: Service
    name: Name
    passed: bool
    version: Opt = None
    deploy_id: Opt = None
    instance: Opt = None
    duration_ms: Union[float, None] = None
    message: Opt = None
    url: Opt = None


class Incident(Struct, tag_field="type", tag="incident"):
    ts: Union[float, str]
    service: Service
    incident_id: Name
    status: Opt = None
    severity: Opt = None
    title: Opt = None
    deploy_id: Opt = None
    root_cause: Opt = None
    resolved_ts: Union[float, str, None] = None


Event = Union[Request, Log, Metric, Deploy, Check, Incident]
_batch_decoder = msgspec.json.Decoder(list[Event])
_get_ts, _get_status, _get_lat = attrgetter("ts"), attrgetter("status"), attrgetter("latency_ms")


def msgspec_structs(batch: list[bytes]) -> list:
    return _batch_decoder.decode(b"[" + b",".join(batch) + b"]")


def msgspec_columns(batch: list[bytes], interner: Interner) -> int:
    events = msgspec_structs(batch)
    reqs = [e for e in events if type(e) is Request]
    n = len(reqs)
    ts = np.fromiter(map(_get_ts, reqs), np.float64, n)  # a str ts (RFC 3339) would fail here: Python path
    status = np.fromiter(map(_get_status, reqs), np.int16, n)
    lat = np.fromiter(map(_get_lat, reqs), np.float64, n)
    cols = [ts, status, lat]
    for field in ("service", "endpoint", "version", "instance"):
        values = list(map(attrgetter(field), reqs))
        distinct = list(dict.fromkeys(values))
        ids = {v: (-1 if v is None else interner.intern(v, key=field in ("service", "version"))) for v in distinct}
        cols.append(np.fromiter(map(ids.__getitem__, values), np.int32, n))
    return n + len(events) - n


def arrow_reader():
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:
        return None
    schema = pa.schema([("type", pa.string()), ("ts", pa.float64()), ("service", pa.string()),
                        ("endpoint", pa.string()), ("status", pa.int16()), ("latency_ms", pa.float64()),
                        ("version", pa.string()), ("instance", pa.string()), ("txn", pa.string())])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    read = pj.ReadOptions(use_threads=False, block_size=64 << 20)

    def arrow(batch: list[bytes]) -> int:
        table = pj.read_json(pa.py_buffer(b"\n".join(batch)), read_options=read, parse_options=parse)
        for name in ("service", "endpoint", "version", "instance"):
            table.column(name).combine_chunks().dictionary_encode()
        return table.num_rows

    return arrow, pa.__version__


def measure(lines: list[bytes], batch_lines: int, repeats: int, with_arrow: bool) -> dict:
    batches = [lines[i:i + batch_lines] for i in range(0, len(lines), batch_lines)]
    loads = orjson.loads
    fns = {
        "orjson_loads": lambda: [[loads(v) for v in b] for b in batches],
        "decode_batch": lambda: [decode_batch(b, Interner()).accepted for b in batches],
        "decode_precise": lambda: [decode_precise(b, Interner()).accepted for b in batches],
        "msgspec_columns": lambda: [msgspec_columns(b, Interner()) for b in batches],
        "msgspec_structs": lambda: [msgspec_structs(b) for b in batches],
    }
    arrow = arrow_reader() if with_arrow else None
    if arrow is not None:
        fns["pyarrow_json"] = lambda: [arrow[0](b) for b in batches]
    # every candidate takes every line of these batches (a rejection would measure another path)
    assert sum(decode_batch(b, Interner()).accepted for b in batches) == len(lines)
    assert sum(len(msgspec_structs(b)) for b in batches) == len(lines)
    best = best_of(fns, repeats)
    n = len(lines)
    return {"lines": n, "events_per_s": {k: n / t for k, t in best.items()},
            "ratio": {k: best["orjson_loads"] / t for k, t in best.items()},
            "pyarrow": arrow[1] if arrow is not None else None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000 lines, best of 3")
    ap.add_argument("--lines", type=int, help="lines per workload (default 200,000; 50,000 with --quick)")
    ap.add_argument("--batch", type=int, default=5_000, help="raw lines per batch")
    ap.add_argument("--repeats", type=int, help="timed runs per figure, best kept (default 5; 3 with --quick)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    n_lines = args.lines or (50_000 if args.quick else 200_000)
    repeats = args.repeats or (3 if args.quick else 5)
    lines = demo_lines(min(2_400.0, max(120.0, 1.3 * n_lines / 270)))
    requests = [ln for ln in lines if ln.startswith(REQUEST_PREFIX)]
    r = {"machine": machine(), "msgspec": msgspec.__version__, "batch_lines": args.batch, "repeats": repeats,
         "mixed": measure(lines[:n_lines], args.batch, repeats, with_arrow=False),
         "requests_only": measure(requests[:n_lines], args.batch, repeats, with_arrow=True)}
    if args.json:
        print(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
        return r
    print(f"decoders side by side: {n_lines:,} demo lines per workload, batches of {args.batch:,}, best of {repeats}")
    print(f"machine: {r['machine']}; msgspec {r['msgspec']}; pyarrow {r['requests_only']['pyarrow'] or 'not installed'}")
    for name in ("mixed", "requests_only"):
        print(f"\n{name}:")
        for k, v in r[name]["events_per_s"].items():
            print(f"  {k:<18} {v:>12,.0f} ev/s {r[name]['ratio'][k]:>6.2f}")
    return r


if __name__ == "__main__":
    main()
