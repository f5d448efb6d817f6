"""Helpers for tests that run `detector run` against a real broker."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from detector.config import Pipeline, Topics, load_pipeline, to_toml
from detector.simulate.main import resolve_scenario
from detector.simulate.output import produce_kafka, write_jsonl
from detector.simulate.scenario import load_scenario
from detector.simulate.traffic import Chunk, Simulator
from detector.simulate.truth import build_truth

PARTITIONS = 4


def pipeline_for_test(prefix: str, period_s: float, **kafka) -> Pipeline:
    p = load_pipeline()
    topics = Topics(**{f.name: f"{prefix}.{getattr(p.topics, f.name)}" for f in dataclasses.fields(Topics)})
    k = dataclasses.replace(p.kafka, group_id=f"{prefix}.detector", session_timeout_ms=2000,
                            heartbeat_interval_ms=500, checkpoint_interval_s=1.0, op_timeout_s=10.0,
                            http_port=0, partitions=PARTITIONS, **kafka)
    ver = dataclasses.replace(p.verification, period_s=period_s)
    # the fleet topic too: summaries of another test's run must not complete this one's windows
    fleet = dataclasses.replace(p.fleet, topic=f"{prefix}.{p.fleet.topic}")
    return dataclasses.replace(p, topics=topics, kafka=k, verification=ver, fleet=fleet)


def write_pipeline(tmp_path: Path, pipeline: Pipeline) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(to_toml(pipeline))
    return path


def scenario_events(name: str, out: Path, rate_scale: float | None = None) -> tuple[dict, list[str], object]:
    """Write a scenario's events to `out` (JSONL); return (truth, service names, scenario)."""
    sc = load_scenario(resolve_scenario(name), rate_scale=rate_scale)
    sim = Simulator(sc)
    counts = write_jsonl(sim.chunks(), out)
    return build_truth(sc, sim.timeline, counts.by_kind), sim.service_names, sc


async def produce_scenario(sc, bootstrap: str, pipeline: Pipeline, speed: float | None = None,
                           chunks=None) -> None:
    """Produce the scenario (or just `chunks` of it, see `split_scenario`) keyed by service."""
    t = pipeline.topics
    sim = Simulator(sc)
    await produce_kafka(sim.chunks() if chunks is None else chunks, bootstrap, sim.service_names,
                        topics={"request": t.requests, "log": t.logs, "metric": t.metrics, "deploy": t.deploys,
                                "check": t.checks},
                        speed=speed, create_partitions=PARTITIONS)


def split_scenario(sc, fraction: float) -> tuple[list, list]:
    """The scenario's chunks cut in two at `fraction` of its duration (by arrival time)."""
    cut = sc.start_ts + fraction * sc.duration_s
    head, tail = [], []
    for c in Simulator(sc).chunks():
        i = int(np.searchsorted(c.emit_ts, cut, side="left"))
        for part, lo, hi in ((head, 0, i), (tail, i, len(c))):
            if hi > lo:
                part.append(Chunk(c.emit_ts[lo:hi], c.kind[lo:hi], c.service[lo:hi], c.values[lo:hi]))
    return head, tail


class SidecarProcess:
    """`detector run` in a child process, its stderr (JSON logs) kept in a file."""

    def __init__(self, bootstrap: str, pipeline_path: Path, log_path: Path, *, own_group: bool = False) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**os.environ, "DETECTOR_LOG_LEVEL": "info"}
        # own_group: a process group of its own, so a test can signal it as a terminal's Ctrl-C does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "run", "--bootstrap-servers", bootstrap,
             "--pipeline", str(pipeline_path)], stdout=self._log, stderr=self._log, env=env,
            start_new_session=own_group)

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                out.append({"raw": line.decode(errors="replace")})
        return out

    def wait_for_log(self, event: str, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for rec in self.log_lines():
                if rec.get("event") == event:
                    return rec
            if self.proc.poll() is not None:
                raise AssertionError(f"detector exited early ({self.proc.returncode}): {self.log_lines()[-5:]}")
            time.sleep(0.1)
        raise AssertionError(f"no '{event}' log line within {timeout_s} s: {self.log_lines()[-5:]}")

    def http(self, path: str) -> tuple[int, str]:
        """(status, body) of GET `path` on the sidecar's health endpoint."""
        import urllib.error
        import urllib.request

        url = self.wait_for_log("health endpoint", 30)["url"]
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of the Prometheus metric `name` (0 when absent)."""
        total = 0.0
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_until(self, what: str, check, timeout_s: float) -> float:
        """Poll `check()` until it holds; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if check():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise AssertionError(f"detector exited ({self.proc.returncode}) waiting for {what}: "
                                     f"{self.log_lines()[-5:]}")
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout_s} s; last log lines {self.log_lines()[-5:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 10.0) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        return code, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


async def read_topic(bootstrap: str, topic: str, done, timeout_s: float = 120.0, settle_s: float = 0.0) -> list:
    """Every message of `topic` from the beginning until `done(messages)` holds, and then
    whatever else arrives within `settle_s` (to catch duplicates)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                out.extend(msgs)
            if done(out):
                end = time.monotonic() + settle_s
                while time.monotonic() < end:
                    for msgs in (await consumer.getmany(timeout_ms=300)).values():
                        out.extend(msgs)
                return out
        raise AssertionError(f"{topic}: condition not met within {timeout_s} s ({len(out)} messages)")
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def verdicts(messages) -> dict[str, list[dict]]:
    """Verdict records by id (a list: duplicates after a restart are kept to compare)."""
    out: dict[str, list[dict]] = {}
    for m in messages:
        rec = orjson.loads(m.value)
        if rec["type"] == "verdict":
            out.setdefault(rec["id"], []).append(rec)
    return out
