"""What the fleet view costs: summary bytes per million input events, the view's memory, replay time.

The input is the demo scenario (fixed seed), replayed with `--partitions N`
(default 8) so that every partition publishes its window summaries, encoded as
the fleet topic carries them. Figures, same file, same run:

* summary bytes per million input events, and as a share of the input's bytes;
* messages (one per partition and closed window, empty ones included) and the
  mean size of a message and of one service's summary;
* the fleet view rebuilt from every message with the pipeline's
  `fleet.windows_kept`: windows and service summaries held, traced bytes
  (tracemalloc) per service-window: memory is services x windows kept;
* replay wall time with the fleet view on and off (best of `--repeats`).

Run: `python benchmarks/bench_fleet.py [--quick] [--partitions 8] [--json]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import best_of, demo_file, machine  # noqa: E402

from detector.config import load_pipeline  # noqa: E402
from detector.fleet.summary import decode  # noqa: E402
from detector.fleet.view import FleetView  # noqa: E402
from detector.replay import replay  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a shorter demo (30 min of event time instead of 2 h)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    duration = 1800 if args.quick else 7200
    pipeline = load_pipeline()
    off = dataclasses.replace(pipeline, fleet=dataclasses.replace(pipeline.fleet, enabled=False))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        path = demo_file(Path(tmp) / "demo.jsonl", duration)
        input_bytes = path.stat().st_size
        messages: list[bytes] = []
        res = replay([path], pipeline, lambda r: None, partitions=args.partitions, fleet_messages=messages.append)
        events = res.events
        times = best_of({
            "fleet off": lambda: replay([path], off, lambda r: None, partitions=args.partitions),
            "fleet on": lambda: replay([path], pipeline, lambda r: None, partitions=args.partitions),
        }, args.repeats)
    summaries = [decode(m) for m in messages]
    n_services = sum(len(s.services) for s in summaries)
    fleet_bytes = sum(len(m) for m in messages)
    sketch_bytes = 0  # what the latency sketches take of the messages
    for m in messages:
        d = orjson.loads(m)
        for svc in d["s"]:
            sketch_bytes += len(orjson.dumps(svc["lb"])) + len(orjson.dumps(svc["lc"]))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view = FleetView(args.partitions, pipeline.fleet.windows_kept)
    for m in messages:
        view.add(decode(m))
    held_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    windows, held = view.size()
    out = {
        "events": events, "input_bytes": input_bytes, "partitions": args.partitions,
        "messages": len(messages), "fleet_bytes": fleet_bytes,
        "fleet_bytes_per_million_events": round(fleet_bytes / events * 1e6),
        "fleet_share_of_input": fleet_bytes / input_bytes,
        "bytes_per_message": fleet_bytes / max(1, len(messages)),
        "service_summaries": n_services, "sketch_share": sketch_bytes / max(1, fleet_bytes),
        "view_windows": windows, "view_service_summaries": held, "view_bytes": held_bytes,
        "view_bytes_per_service_window": held_bytes / max(1, held),
        "replay_s_fleet_off": times["fleet off"], "replay_s_fleet_on": times["fleet on"],
    }
    if args.json:
        print(orjson.dumps(out).decode())
        return
    print(machine())
    print(f"demo, {duration // 60} min of event time: {events:,} events, {input_bytes / 1e6:.1f} MB; "
          f"--partitions {args.partitions}")
    print("| figure | value |\n|---|---|")
    print(f"| summary bytes per million input events | {out['fleet_bytes_per_million_events']:,} |")
    print(f"| summary bytes / input bytes | {out['fleet_share_of_input']:.2%} |")
    print(f"| messages (partition x window) | {len(messages):,}, {out['bytes_per_message']:.0f} B each |")
    print(f"| service summaries | {n_services:,}, {fleet_bytes / max(1, n_services):.0f} B each on the wire |")
    print(f"| latency sketches' share of the bytes | {out['sketch_share']:.0%} |")
    print(f"| view held (fleet.windows_kept = {pipeline.fleet.windows_kept}) | {windows} windows, {held:,} service "
          f"summaries, {held_bytes / 1e6:.2f} MB, {out['view_bytes_per_service_window']:.0f} B per service-window |")
    print(f"| replay, fleet off / on | {times['fleet off']:.2f} s / {times['fleet on']:.2f} s "
          f"({times['fleet on'] / times['fleet off']:.2f}x) |")


if __name__ == "__main__":
    main()
