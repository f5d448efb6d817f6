"""End-to-end live throughput: broker -> `detector run` -> alerts, next to bare consumption.

Starts the embedded broker, produces a simulated scenario into the input
topics (4 partitions), then measures in the same run:

1. baseline: an aiokafka consumer group reading every input topic from the
   beginning and `orjson.loads`-ing every value, until all are read;
2. the sidecar (`detector.runtime.app.Sidecar`, in-process, its own group):
   from start until it has read every message (lag back to zero), with its
   checkpoints, alerts and dead letters included.

Prints events/s of both and the ratio (target >= 0.6), and the sidecar's lag
after the run (must be zero), the CPU seconds of the process while the sidecar
read (of it, garbage collection: wall time of the collector's passes), and
what the live fleet topic carried: bytes of
summaries (values and keys) per million input events. With `--fleet`, the
sidecar also runs with `[fleet] enabled = false` (its own group, same run), so
the fleet's cost in throughput is a ratio of the two.

    python benchmarks/bench_live.py [--quick] [--scenario NAME] [--rate-scale X] [--fleet]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import platform
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.config import Topics, load_pipeline  # noqa: E402
from detector.runtime.embedded import EmbeddedBroker  # noqa: E402
from detector.runtime.app import Sidecar  # noqa: E402
from detector.runtime.logsetup import configure  # noqa: E402
from detector.simulate.main import resolve_scenario  # noqa: E402
from detector.simulate.output import produce_kafka  # noqa: E402
from detector.simulate.scenario import load_scenario  # noqa: E402
from detector.simulate.traffic import Simulator  # noqa: E402

PARTITIONS = 4


async def bare(bootstrap: str, topics: list[str], total: int) -> float:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id="bench-bare",
                                auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=2000,
                                heartbeat_interval_ms=500, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        n = 0
        t0 = None
        loads = orjson.loads
        while n < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for msgs in batch.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    loads(m.value)
                n += len(msgs)
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def sidecar_rate(bootstrap: str, pipeline, total: int, group_id: str = "bench-detector"
                       ) -> tuple[float, int, dict]:
    sc = Sidecar(pipeline, bootstrap, group_id=group_id, http_port=-1)
    task = asyncio.create_task(sc.run())
    t0 = None
    gc_s = [0.0, 0.0]  # collections' time in the measured interval, start of the current one

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_s[1] = time.perf_counter()
        elif t0 is not None:
            gc_s[0] += time.perf_counter() - gc_s[1]

    gc.callbacks.append(on_gc)
    try:
        while True:
            await asyncio.sleep(0.05)
            read = sc._events
            if t0 is None and read > 0:
                t0, cpu0 = time.perf_counter(), time.process_time()
            if read >= total:
                break
            if task.done():
                raise RuntimeError(f"sidecar stopped early: {task.result()}")
        elapsed = time.perf_counter() - t0
        cpu, gc_wall = time.process_time() - cpu0, gc_s[0]
        lag = 0
        for p, st in sc.parts.items():
            for topic, offset in st.offsets.items():
                hw = sc.consumer.highwater(TopicPartition(topic, p))
                lag += max(0, (hw or 0) - offset)
        stats = {"records_out": sum(s.core.stats.anomalies + s.core.stats.verdicts for s in sc.parts.values()),
                 "late": sum(s.core.late_events for s in sc.parts.values()), "cpu_s": cpu, "gc_s": gc_wall}
        if sc.fleet is not None:
            await asyncio.sleep(1.0)  # the summaries of the last windows closed
            async with sc._lock:
                await sc.fleet.flush()
            stats.update(fleet_messages=sc.fleet.stats["published"],
                         fleet_bytes=sc.fleet.stats["published_bytes"] + sc.fleet.stats["published_keys_bytes"])
        return read / elapsed, lag, stats
    finally:
        gc.callbacks.remove(on_gc)
        sc.stopping.set()
        await asyncio.wait_for(task, 60)


async def run(scenario: str, rate_scale: float | None, fleet_off_too: bool = False) -> dict:
    configure("error")
    sc = load_scenario(resolve_scenario(scenario), rate_scale=rate_scale)
    base = load_pipeline()
    with EmbeddedBroker() as broker:
        topics = Topics()
        pipeline = dataclasses.replace(
            base, topics=topics,
            kafka=dataclasses.replace(base.kafka, partitions=PARTITIONS, session_timeout_ms=2000,
                                      heartbeat_interval_ms=500, checkpoint_interval_s=5.0))
        sim = Simulator(sc)
        t0 = time.perf_counter()
        counts = await produce_kafka(sim.chunks(), broker.bootstrap, sim.service_names, create_partitions=PARTITIONS)
        produce_s = time.perf_counter() - t0
        inputs = [topics.requests, topics.logs, topics.metrics, topics.deploys]
        baseline = await bare(broker.bootstrap, inputs, counts.total)
        rate, lag, stats = await sidecar_rate(broker.bootstrap, pipeline, counts.total)
        if fleet_off_too:
            off = dataclasses.replace(pipeline, fleet=dataclasses.replace(pipeline.fleet, enabled=False))
            stats["fleet_off_events_per_s"] = (await sidecar_rate(broker.bootstrap, off, counts.total,
                                                                  "bench-detector-fleet-off"))[0]
    return {"events": counts.total, "produce_s": produce_s, "bare_events_per_s": baseline,
            "detector_events_per_s": rate, "ratio": rate / baseline, "lag_after": lag, **stats}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller scenario")
    ap.add_argument("--scenario", default="config_fault")
    ap.add_argument("--rate-scale", type=float, default=None)
    ap.add_argument("--fleet", action="store_true", help="also run the sidecar with the fleet view off")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rate_scale = args.rate_scale if args.rate_scale is not None else (0.3 if args.quick else None)
    res = asyncio.run(run(args.scenario, rate_scale, args.fleet))
    if args.json:
        print(orjson.dumps(res).decode())
        return res
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"scenario {args.scenario} (rate scale {rate_scale or 1}): {res['events']:,} events on "
          f"{PARTITIONS} partitions of the embedded broker")
    print(f"{'':28}{'events/s':>14}")
    print(f"{'bare consume + orjson.loads':28}{res['bare_events_per_s']:>14,.0f}")
    print(f"{'detector run (end to end)':28}{res['detector_events_per_s']:>14,.0f}")
    met = "met" if res["ratio"] >= 0.6 else "NOT MET"
    print(f"ratio {res['ratio']:.2f} (target >= 0.6: {met}); lag after the run: {res['lag_after']} "
          f"(must be 0); records out {res['records_out']}, late events {res['late']}")
    print(f"detector run: {res['cpu_s']:.2f} s CPU of this process in the measured interval "
          f"({res['cpu_s'] / res['events'] * 1e6:.1f} us per event), of it {res['gc_s']:.2f} s garbage collection")
    if "fleet_bytes" in res:
        per_m = res["fleet_bytes"] / res["events"] * 1e6
        print(f"fleet topic: {res['fleet_messages']:,} summaries, {res['fleet_bytes']:,} bytes "
              f"({per_m / 1e6:.2f} MB per million input events)")
    if "fleet_off_events_per_s" in res:
        print(f"{'detector run, fleet off':28}{res['fleet_off_events_per_s']:>14,.0f}  "
              f"(fleet on / off: {res['detector_events_per_s'] / res['fleet_off_events_per_s']:.2f})")
    return res


if __name__ == "__main__":
    main()
