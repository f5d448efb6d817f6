"""The quiet multi-day workload: production-like history of six services at low rates, with deploys.

Built from `baseline_day.toml` (the demo's four services) plus two smaller
services, thinned to `RATE_SCALE` of demo volumes, over `hours` of event
time, with a deploy every 2.5 hours after the first 4 (good ones but the
third, a config fault that should be rolled back). About 12 events/s in all
(1,397,133 events in 32 hours): a 10 s window holds ~120 events, so the
per-window work, not the per-event work, decides the replay's speed.

The file is generated once per (hours, seed, scenario) into a cache
directory (`detector-bench/` in the system temporary directory unless
`DETECTOR_BENCH_CACHE` names another) and reused by later runs; generating
32 hours takes a few seconds and 265 MiB.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import tomllib
from pathlib import Path

import orjson

from harness import ROOT, SEED

from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import parse_scenario

SERVICES = 6
HOURS = 32.0
RATE_SCALE = 0.033  # of demo volumes: ~12 events/s over the six services

_EXTRA_SERVICES = [
    {"name": "accounts", "version": "v1.9.0", "instances": 3, "db": "accounts", "db_latency_ms": 3.0,
     "endpoints": [
         {"name": "POST /login", "rps": 14, "error_rate": 0.002, "latency_median_ms": 60, "latency_p99_ms": 400},
         {"name": "GET /me", "rps": 20, "error_rate": 0.001, "latency_median_ms": 15, "latency_p99_ms": 90}]},
    {"name": "shipping", "version": "v4.0.1", "instances": 2, "db": "orders", "db_latency_ms": 4.0,
     "endpoints": [
         {"name": "GET /quotes", "rps": 9, "error_rate": 0.002, "latency_median_ms": 80, "latency_p99_ms": 500},
         {"name": "POST /labels", "rps": 3, "error_rate": 0.003, "latency_median_ms": 150,
          "latency_p99_ms": 900}]},
]


def _deploys(hours: float, services: list[str]) -> list[dict]:
    """A deploy every 2.5 hours after the first 4, round robin over the services; the third one is bad."""
    out = []
    at_s, k = 4 * 3600.0, 0
    while at_s < hours * 3600.0 - 1800.0:
        svc = services[k % len(services)]
        d = {"id": f"q-{k + 1:03d}", "service": svc, "version": f"v-next-{k + 1}", "at_s": at_s,
             "strategy": "rolling", "rollout_s": 180, "change_kind": "code", "author": "sam.ito",
             "expect": "confirmed"}
        if k == 2:
            d.update(change_kind="config", expect="rollback", expect_root_cause="config",
                     faults=[{"kind": "error_increase", "error_rate": 0.12, "onset_s": 10}])
        out.append(d)
        at_s += 2.5 * 3600.0
        k += 1
    return out


def scenario_doc(hours: float = HOURS, seed: int = SEED) -> dict:
    doc = tomllib.loads((ROOT / "benchmarks" / "scenarios" / "baseline_day.toml").read_text())
    doc.update(name="quiet_history", seed=seed, duration_s=hours * 3600.0, verification_s=600)
    doc["traffic"]["rate_scale"] = RATE_SCALE
    doc["services"] = doc["services"] + _EXTRA_SERVICES
    doc["deploys"] = _deploys(hours, [s["name"] for s in doc["services"]])
    return doc


def cache_dir() -> Path:
    return Path(os.environ.get("DETECTOR_BENCH_CACHE") or Path(tempfile.gettempdir()) / "detector-bench")


def quiet_file(hours: float = HOURS, seed: int = SEED) -> Path:
    """The workload's JSONL file, generated on first use (deterministic: same hours and seed, same bytes)."""
    doc = scenario_doc(hours, seed)
    key = hashlib.sha256(orjson.dumps(doc, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    path = cache_dir() / f"quiet-{hours:g}h-{key}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        simulate_to_file(parse_scenario(doc, "quiet_history (benchmarks/quiet.py)"), tmp)
        tmp.replace(path)
    return path
