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
import contextlib
import dataclasses
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from detector.config import load_pipeline
from detector.runtime.embedded import EmbeddedBroker
from detector.simulate.scoring import score, table
from detector.report.build import run_report
from detector.report.text import console_lines, markdown
from detector.runtime.app import Sidecar
from detector.runtime.logsetup import configure
from detector.simulate.main import resolve_scenario
from detector.simulate.output import produce_kafka, write_jsonl
from detector.simulate.scenario import load_scenario
from detector.simulate.traffic import Simulator
from detector.simulate.truth import build_truth, truth_path_for, write_truth

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


class _Interrupted(Exception):
    pass


def _write_events(sc, path: Path, cancel: threading.Event) -> dict:
    """The scenario's events and truth files; stops between chunks when `cancel` is set."""
    sim = Simulator(sc)

    def chunks():
        for chunk in sim.chunks():
            if cancel.is_set():
                raise _Interrupted
            yield chunk

    counts = write_jsonl(chunks(), path)
    truth = build_truth(sc, sim.timeline, counts.by_kind)
    write_truth(truth_path_for(path), truth)
    return truth


class _Stop:
    """Ctrl-C / SIGTERM: the first asks for an orderly stop, the second skips the waiting."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.cancel = threading.Event()  # for the event-writing thread

    def __call__(self, signame: str) -> None:
        if not self.requested.is_set():
            print(f"\ndemo: {signame}: stopping; the report so far follows (again to skip waiting)", flush=True)
            self.requested.set()
            self.cancel.set()
        else:
            print(f"demo: {signame} again: stopping without waiting for the sidecar's final checkpoint", flush=True)
            self.hurry.set()

    async def wait(self, aw, timeout_s: float | None = None):
        """Await `aw` unless a stop is requested first; returns (done, result)."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.requested.wait())
        try:
            await asyncio.wait({task, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return True, task.result()
        return False, task


async def _finish(task: asyncio.Task, timeout_s: float) -> None:
    """Cancel `task` if it has not ended within `timeout_s`, and wait for it to end."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def run_demo(speed: float, out_dir: Path, scenario_name: str) -> int:
    configure("warning")
    stop = _Stop()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        return await _demo(speed, out_dir, scenario_name, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _demo(speed: float, out_dir: Path, scenario_name: str, stop: _Stop) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    sc = load_scenario(resolve_scenario(scenario_name))
    events = out_dir / "demo-events.jsonl"
    writing = asyncio.ensure_future(asyncio.to_thread(_write_events, sc, events, stop.cancel))
    try:
        truth = await writing
    except _Interrupted:
        print("demo: interrupted while writing the scenario's events; nothing was streamed, no report")
        return 130
    base = load_pipeline()
    pipeline = dataclasses.replace(
        base, verification=dataclasses.replace(base.verification, period_s=float(truth["verification_s"])),
        kafka=dataclasses.replace(base.kafka, session_timeout_ms=3000, heartbeat_interval_ms=1000, http_port=0,
                                  checkpoint_interval_s=5.0, shutdown_timeout_s=3.0))
    expected = {d["deploy_id"] for d in truth["deploys"]}
    tty = sys.stdout.isatty()
    print(f"demo: {len(truth['deploys'])} deploys of {len(sc.services)} services over "
          f"{sc.duration_s / 60:.0f} minutes of traffic, streamed at {speed:g}x (about "
          f"{sc.duration_s / speed:.0f} s); [sim HH:MM:SS] is the simulated event time (UTC)")
    records: list[dict] = []
    sent = [0]
    t0 = time.monotonic()
    if stop.requested.is_set():
        return _interrupted_report(truth, records, events, out_dir, sent[0], 0.0)
    async with EmbeddedBroker() as broker:
        print(f"demo: embedded broker on {broker.bootstrap} (pid {broker.pid})", flush=True)
        sidecar = Sidecar(pipeline, broker.bootstrap, group_id="demo")
        watch_stop = asyncio.Event()
        run_task = asyncio.create_task(sidecar.run())
        watch_task = None
        try:
            while not sidecar.started and not run_task.done() and not stop.requested.is_set():
                await asyncio.sleep(0.1)
            if stop.requested.is_set():
                raise _Interrupted
            watch_task = asyncio.create_task(_watch(broker.bootstrap, pipeline.topics.alerts, records, tty,
                                                    watch_stop))
            sim = Simulator(sc)

            def counted():
                for chunk in sim.chunks():
                    if stop.cancel.is_set():
                        return  # the producer then flushes what it has and closes
                    sent[0] += len(chunk)
                    yield chunk

            t0 = time.monotonic()
            done, produce = await stop.wait(produce_kafka(counted(), broker.bootstrap, sim.service_names,
                                                          speed=speed, create_partitions=pipeline.kafka.partitions))
            if done and not stop.requested.is_set():
                print(f"demo: streamed {produce.total:,} events in {time.monotonic() - t0:.0f} s; "
                      "waiting for the last verdicts")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not stop.requested.is_set() and not expected <= {
                        r["deploy_id"] for r in records if r["type"] == "verdict"}:
                    await asyncio.sleep(0.5)
            elif not done:
                await _finish(produce, 0.1 if stop.hurry.is_set() else 5.0)
        except _Interrupted:
            pass
        finally:
            # Order matters: the sidecar and the watcher stop while the broker is still up.
            sidecar.stopping.set()
            if stop.hurry.is_set():
                sidecar.hurry.set()
            hurry = asyncio.ensure_future(stop.hurry.wait())
            await asyncio.wait({run_task, hurry}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            hurry.cancel()
            sidecar.hurry.set()
            await _finish(run_task, 8.0)
            watch_stop.set()
            if watch_task is not None:
                await _finish(watch_task, 5.0)
    if stop.requested.is_set():
        return _interrupted_report(truth, records, events, out_dir, sent[0], time.monotonic() - t0)
    _write_outputs(truth, records, events, out_dir, pipeline=pipeline)
    missing = expected - {r["deploy_id"] for r in records if r["type"] == "verdict"}
    if missing:
        print(f"demo: no verdict for {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


def _write_outputs(truth: dict, records: list[dict], events: Path, out_dir: Path, note: str = "",
                   pipeline=None) -> Path:
    alerts = out_dir / "demo-alerts.jsonl"
    alerts.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))
    html = None
    if pipeline is not None:  # the charts (an interrupted demo keeps to the markdown)
        html = str(run_report(str(events), str(alerts), str(out_dir / "report"), pipeline).out_dir / "index.html")
    report = out_dir / "demo-report.md"
    report.write_text(_report(truth, records, events, note, html))
    print(f"demo: report in {report}" + (f", charts in {html}" if html else "") + f", alerts in {alerts}")
    return report


def _interrupted_report(truth: dict, records: list[dict], events: Path, out_dir: Path, sent: int,
                        streamed_s: float) -> int:
    verdicts = [r for r in records if r["type"] == "verdict"]
    total = _total(truth)
    note = (f"Interrupted after {streamed_s:.0f} s of streaming: about {sent:,} of {total:,} events sent; "
            f"{len(verdicts)} of {len(truth['deploys'])} verdicts and "
            f"{len(records) - len(verdicts)} anomalies had arrived.")
    print(f"demo: interrupted: {note[len('Interrupted '):]}")
    _write_outputs(truth, records, events, out_dir, note)
    return 130


def _total(truth: dict) -> int:
    return sum((truth.get("counts") or {}).values())


def _report(truth: dict, records: list[dict], events: Path, note: str = "", html_index: str | None = None) -> str:
    s = score(truth, records)
    script = ROOT / "benchmarks" / "threshold_rollback.sh"
    # The script must not see a second Ctrl-C meant for the demo: its own session.
    run = subprocess.run(["bash", str(script), str(events)], capture_output=True, start_new_session=True)
    b = score(truth, [orjson.loads(x) for x in run.stdout.splitlines() if x.strip()]) if run.returncode == 0 \
        else None
    against = table([("detector", s), ("threshold script", b)]) if b is not None else \
        f"(the threshold script failed: {run.stderr.decode(errors='replace').strip()[-300:]})"
    text = markdown(truth, records, s, against, html_index)
    if note:
        head, rest = text.split("\n", 1)
        text = f"{head}\n\n**{note}**\n{rest}"
    return text + "\n"


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
