"""`make demo`: the whole loop on an embedded broker, in accelerated time.

Starts the embedded Kafka-protocol broker, streams the demo scenario (several
services, good and bad deploys, a shared database slowdown, a traffic surge)
into it at N times real time, runs the sidecar live on it, prints anomalies
and verdicts as they arrive, then writes a report comparing each verdict with
the scenario's ground truth and with the 5 %-in-5-minutes threshold script.
Everything stops on the way out: no broker or task is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from detector.config import load_pipeline
from detector.embedded import EmbeddedBroker
from detector.evaluate import score, table
from detector.report.build import run_report
from detector.report.text import console_lines, markdown
from detector.runtime.app import Sidecar
from detector.runtime.logsetup import configure
from detector.simulate.main import resolve_scenario
from detector.simulate.output import produce_kafka, simulate_to_file
from detector.simulate.scenario import load_scenario
from detector.simulate.traffic import Simulator

ROOT = Path(__file__).resolve().parent.parent
BOLD, RED, YELLOW, GREEN, DIM, RESET = "\033[1m", "\033[31m", "\033[33m", "\033[32m", "\033[2m", "\033[0m"
COLOUR = {"rollback": RED, "page": RED, "ticket": YELLOW, "confirmed": GREEN, "inconclusive": DIM,
          "superseded": DIM}


def show(rec: dict, tty: bool) -> None:
    paint = {"head": BOLD, "dim": DIM, **COLOUR}
    for segments in console_lines(rec):
        print("".join(f"{paint[style]}{text}{RESET}" if tty and paint.get(style) else text
                      for style, text in segments))


async def _watch(bootstrap: str, topic: str, records: list[dict], tty: bool, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seen: set[str] = set()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                for m in msgs:
                    rec = orjson.loads(m.value)
                    if rec.get("id") in seen:
                        continue  # re-emitted after a restart: same id, already shown
                    seen.add(rec.get("id"))
                    records.append(rec)
                    show(rec, tty)
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


async def run_demo(speed: float, out_dir: Path, scenario_name: str) -> int:
    configure("warning")
    out_dir.mkdir(parents=True, exist_ok=True)
    sc = load_scenario(resolve_scenario(scenario_name))
    events = out_dir / "demo-events.jsonl"
    truth = simulate_to_file(sc, events)
    base = load_pipeline()
    pipeline = dataclasses.replace(
        base, verification=dataclasses.replace(base.verification, period_s=float(truth["verification_s"])),
        kafka=dataclasses.replace(base.kafka, session_timeout_ms=3000, heartbeat_interval_ms=1000, http_port=0,
                                  checkpoint_interval_s=5.0))
    expected = {d["deploy_id"] for d in truth["deploys"]}
    tty = sys.stdout.isatty()
    print(f"demo: {len(truth['deploys'])} deploys of {len(sc.services)} services over "
          f"{sc.duration_s / 60:.0f} minutes of traffic, streamed at {speed:g}x (about "
          f"{sc.duration_s / speed:.0f} s); [sim HH:MM:SS] is the simulated event time (UTC)")
    records: list[dict] = []
    with EmbeddedBroker() as broker:
        print(f"demo: embedded broker on {broker.bootstrap}")
        sidecar = Sidecar(pipeline, broker.bootstrap, group_id="demo")
        watch_stop = asyncio.Event()
        run_task = asyncio.create_task(sidecar.run())
        while not sidecar.started and not run_task.done():
            await asyncio.sleep(0.1)
        watch_task = asyncio.create_task(_watch(broker.bootstrap, pipeline.topics.alerts, records, tty, watch_stop))
        t0 = time.monotonic()
        sim = Simulator(sc)
        counts = await produce_kafka(sim.chunks(), broker.bootstrap, sim.service_names, speed=speed,
                                     create_partitions=pipeline.kafka.partitions)
        print(f"demo: streamed {counts.total:,} events in {time.monotonic() - t0:.0f} s; waiting for the last verdicts")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expected <= {r["deploy_id"] for r in records
                                                               if r["type"] == "verdict"}:
            await asyncio.sleep(0.5)
        sidecar.stopping.set()
        await asyncio.wait_for(run_task, 30)
        watch_stop.set()
        await asyncio.wait_for(watch_task, 15)
    alerts = out_dir / "demo-alerts.jsonl"
    alerts.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))
    html = run_report(str(events), str(alerts), str(out_dir / "report"), pipeline).out_dir / "index.html"
    report = out_dir / "demo-report.md"
    report.write_text(_report(truth, records, events, str(html)))
    print(f"demo: report in {report}, charts in {html}, alerts in {alerts}")
    missing = expected - {r["deploy_id"] for r in records if r["type"] == "verdict"}
    if missing:
        print(f"demo: no verdict for {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


def _report(truth: dict, records: list[dict], events: Path, html_index: str | None = None) -> str:
    s = score(truth, records)
    script = ROOT / "benchmarks" / "threshold_rollback.sh"
    baseline = subprocess.run(["bash", str(script), str(events)], capture_output=True, check=True).stdout
    b = score(truth, [orjson.loads(x) for x in baseline.splitlines() if x.strip()])
    return markdown(truth, records, s, table([("detector", s), ("threshold script", b)]), html_index) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=40.0, help="times real time (default 40)")
    ap.add_argument("--out", default=str(ROOT / "out"), help="folder for the report and the alerts (default out/)")
    ap.add_argument("--scenario", default="demo", help="scenario name or file (default demo)")
    args = ap.parse_args(argv)
    try:
        return asyncio.run(run_demo(args.speed, Path(args.out), args.scenario))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
