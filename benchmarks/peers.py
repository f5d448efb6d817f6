"""Peers on the same input: a Bytewax tumbling-window aggregation next to the detector's replay.

The comparable minimum of what the detector does per window, in a stream
processor: per (service, endpoint) and 10 s event-time tumbling window, the
request count, the errors (status >= 500) and the p95 latency. Input: the
demo scenario's first `--duration-s` seconds (simulator, fixed seed), one
JSON document per line, read from the same file by all. Timed in
alternation, best of `--repeats`, same run:

* read + `orjson.loads` (baseline);
* Bytewax (`bytewax.testing.TestingSource` over the lines, batches of 5,000,
  `orjson.loads` in a map step, `fold_window` with an `EventClock` and a
  `TumblingWindower`, p95 by `numpy.quantile` of the window's latencies);
* `detector.replay.replay` of the same file (everything the detector does:
  decode with validation, windows, sketches, baselines, log templates,
  judge, records).

With `--quix`, also on the embedded broker: the config_fault scenario
produced into 4-partition topics (as `bench_live.py` does), then, on the
`requests` topic, a bare aiokafka consumer + `orjson.loads` (baseline) and
a Quix Streams application (JSON deserializer, event time from `ts`, a
10 s tumbling window with 5 s grace reducing per service key to count,
errors and latencies per endpoint, p95 at the window's end; changelog
topics off), each timed from its first message to its last.

Needs the `peers` extra (`pip install '.[peers]'`).
Run: `python benchmarks/peers.py [--quick] [--quix] [--json]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import best_of, demo_file, machine  # noqa: E402

from detector.config import load_pipeline  # noqa: E402
from detector.replay import replay  # noqa: E402

WINDOW = timedelta(seconds=10)
PARTITIONS_NOTE = "4 partitions"
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)


def bytewax_windows(lines: list[bytes]) -> list:
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    out: list = []
    flow = Dataflow("peer_requests")
    docs = op.map("loads", op.input("in", flow, TestingSource(lines, batch_size=5_000)), orjson.loads)
    reqs = op.filter("requests", docs, lambda d: d.get("type") == "request")
    keyed = op.key_on("by_series", reqs, lambda d: f"{d['service']}\x1f{d['endpoint']}")
    clock = win.EventClock(lambda d: datetime.fromtimestamp(d["ts"], timezone.utc),
                           wait_for_system_duration=timedelta(seconds=5))

    def fold(acc, d):
        acc[0] += 1
        acc[1] += d["status"] >= 500
        acc[2].append(d["latency_ms"])
        return acc

    def merge(a, b):
        return [a[0] + b[0], a[1] + b[1], a[2] + b[2]]

    agg = win.fold_window("agg", keyed, clock, win.TumblingWindower(length=WINDOW, align_to=EPOCH),
                          lambda: [0, 0, []], fold, merge)
    summary = op.map("summary", agg.down,
                     lambda kv: (kv[0], kv[1][0], kv[1][1][0], kv[1][1][1], float(np.quantile(kv[1][1][2], 0.95))))
    op.output("out", summary, TestingSink(out))
    run_main(flow)
    return out


def quix_windows(bootstrap: str, topic: str, expected: int) -> tuple[float, int]:
    """Events/s of a Quix Streams tumbling-window app over `topic` (first to last message), rows out."""
    import time

    from quixstreams import Application

    app = Application(broker_address=bootstrap, consumer_group="peer-quix", auto_offset_reset="earliest",
                      use_changelog_topics=False, auto_create_topics=False, state_dir=tempfile.mkdtemp(),
                      loglevel="ERROR", consumer_extra_config={"session.timeout.ms": 6000})
    src = app.topic(topic, value_deserializer="json",
                    timestamp_extractor=lambda v, _headers, _ts, _type: int(v["ts"] * 1000))
    seen = [0, 0.0, 0.0]

    def mark(_v) -> None:
        now = time.perf_counter()
        if not seen[0]:
            seen[1] = now
        seen[0] += 1
        seen[2] = now

    def fold(acc: dict, v: dict) -> dict:
        a = acc.get(v["endpoint"])
        if a is None:
            a = acc[v["endpoint"]] = [0, 0, []]
        a[0] += 1
        a[1] += v["status"] >= 500
        a[2].append(v["latency_ms"])
        return acc

    sdf = app.dataframe(src)
    sdf = sdf.update(mark)
    sdf = sdf.tumbling_window(timedelta(seconds=10), grace_ms=timedelta(seconds=5)).reduce(fold, lambda v: fold({}, v))
    sdf = sdf.final().apply(lambda w: {k: (c, e, float(np.quantile(lat, 0.95))) for k, (c, e, lat) in w["value"].items()})
    rows = app.run(sdf, timeout=5.0)
    if seen[0] != expected:
        raise RuntimeError(f"Quix Streams read {seen[0]} of {expected} messages")
    return seen[0] / (seen[2] - seen[1]), len(rows)


def broker_peers() -> dict:
    import asyncio

    from bench_live import PARTITIONS, bare
    from detector.config import Topics
    from detector.runtime.embedded import EmbeddedBroker
    from detector.simulate.main import resolve_scenario
    from detector.simulate.output import produce_kafka
    from detector.simulate.scenario import load_scenario
    from detector.simulate.traffic import Simulator

    sim = Simulator(load_scenario(resolve_scenario("config_fault")))
    topic = Topics().requests
    with EmbeddedBroker() as broker:
        counts = asyncio.run(produce_kafka(sim.chunks(), broker.bootstrap, sim.service_names,
                                           create_partitions=PARTITIONS))
        n = counts.by_kind["request"]
        baseline = asyncio.run(bare(broker.bootstrap, [topic], n))
        rate, rows = quix_windows(broker.bootstrap, topic, n)  # the main thread: Quix sets signal handlers
    return {"requests": n, "bare_events_per_s": baseline, "quix_events_per_s": rate, "quix_rows": rows,
            "ratio": rate / baseline}


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600 s of demo event time, best of 2")
    ap.add_argument("--duration-s", type=float, help="seconds of demo event time (default 1,200; 600 with --quick)")
    ap.add_argument("--repeats", type=int, help="timed runs per figure, best kept (default 3; 2 with --quick)")
    ap.add_argument("--quix", action="store_true", help="also Quix Streams on the embedded broker")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    duration_s = args.duration_s or (600.0 if args.quick else 1_200.0)
    repeats = args.repeats or (2 if args.quick else 3)
    pipeline = load_pipeline()
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        path = demo_file(Path(tmp) / "demo.jsonl", duration_s)
        n = len(read_lines(path))
        windows = bytewax_windows(read_lines(path))
        best = best_of({
            "loads": lambda: [orjson.loads(x) for x in read_lines(path)],
            "bytewax": lambda: bytewax_windows(read_lines(path)),
            "detector": lambda: replay([path], pipeline, lambda r: None),
        }, repeats)
    r = {"machine": machine(), "events": n, "duration_s": duration_s, "repeats": repeats,
         "bytewax_series_windows": len(windows),
         "events_per_s": {k: n / t for k, t in best.items()},
         "ratio": {k: best["loads"] / t for k, t in best.items()}}
    if args.quix:
        r["quix"] = broker_peers()
    if args.json:
        print(orjson.dumps(r, option=orjson.OPT_INDENT_2).decode())
        return r
    print(f"peers on the demo's first {duration_s:.0f} s ({n:,} events), best of {repeats}")
    print(f"machine: {r['machine']}; Bytewax produced {len(windows):,} (series, window) rows")
    for k in ("loads", "bytewax", "detector"):
        print(f"  {k:<10} {r['events_per_s'][k]:>12,.0f} ev/s {r['ratio'][k]:>6.2f}")
    if "quix" in r:
        q = r["quix"]
        print(f"embedded broker, config_fault, requests topic ({q['requests']:,} messages, {PARTITIONS_NOTE}):")
        print(f"  {'aiokafka + orjson.loads':<24} {q['bare_events_per_s']:>12,.0f} ev/s   1.00")
        print(f"  {'Quix Streams':<24} {q['quix_events_per_s']:>12,.0f} ev/s {q['ratio']:>6.2f}  "
              f"({q['quix_rows']:,} window rows)")
    return r


if __name__ == "__main__":
    main()
