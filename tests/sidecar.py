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

import orjson
from aiokafka import AIOKafkaConsumer

from detector.config import Pipeline, Topics, load_pipeline, to_toml
from detector.simulate.main import resolve_scenario
from detector.simulate.output import produce_kafka, write_jsonl
from detector.simulate.scenario import load_scenario
from detector.simulate.traffic import Simulator
from detector.simulate.truth import build_truth

PARTITIONS = 4


def pipeline_for_test(prefix: str, period_s: float, **kafka) -> Pipeline:
    p = load_pipeline()
    topics = Topics(**{f.name: f"{prefix}.{getattr(p.topics, f.name)}" for f in dataclasses.fields(Topics)})
    k = dataclasses.replace(p.kafka, group_id=f"{prefix}.detector", session_timeout_ms=2000,
                            heartbeat_interval_ms=500, checkpoint_interval_s=1.0, op_timeout_s=10.0,
                            http_port=0, partitions=PARTITIONS, **kafka)
    ver = dataclasses.replace(p.verification, period_s=period_s)
    return dataclasses.replace(p, topics=topics, kafka=k, verification=ver)


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


async def produce_scenario(sc, bootstrap: str, pipeline: Pipeline, speed: float | None = None) -> None:
    t = pipeline.topics
    sim = Simulator(sc)
    await produce_kafka(sim.chunks(), bootstrap, sim.service_names,
                        topics={"request": t.requests, "log": t.logs, "metric": t.metrics, "deploy": t.deploys,
                                "check": t.checks},
                        speed=speed, create_partitions=PARTITIONS)


class SidecarProcess:
    """`detector run` in a child process, its stderr (JSON logs) kept in a file."""

    def __init__(self, bootstrap: str, pipeline_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**os.environ, "DETECTOR_LOG_LEVEL": "info"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "run", "--bootstrap-servers", bootstrap,
             "--pipeline", str(pipeline_path)], stdout=self._log, stderr=self._log, env=env)

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


async def read_topic(bootstrap: str, topic: str, done, timeout_s: float = 120.0) -> list:
    """Every message of `topic` from the beginning until `done(messages)` holds."""
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
