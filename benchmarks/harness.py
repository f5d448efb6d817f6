"""What every benchmark script shares: one core, the machine line, best-of timing, demo input."""

from __future__ import annotations

import gc
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

# One core: keep numpy's BLAS pools from spreading over the machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.simulate.main import resolve_scenario  # noqa: E402
from detector.simulate.output import simulate_to_file  # noqa: E402
from detector.simulate.scenario import load_scenario  # noqa: E402

SEED = 7


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}, orjson {orjson.__version__}")


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Smallest wall time of each function over `repeats` rounds, in seconds.

    Each round runs every function once, in turn, so a burst of load from
    elsewhere on a shared machine hits the baseline and the measured code
    alike and their ratio stays honest. Garbage is collected before each call.
    """
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def demo_file(path: Path, duration_s: float, rate_scale: float | None = None) -> Path:
    """The demo scenario's first `duration_s` seconds of event time, written to `path` (JSONL)."""
    scenario = load_scenario(resolve_scenario("demo"), seed=SEED, duration_s=duration_s, rate_scale=rate_scale)
    simulate_to_file(scenario, path)
    return path


def demo_lines(duration_s: float, rate_scale: float | None = None) -> list[bytes]:
    """The demo scenario's first `duration_s` seconds of event time, one JSON document per line."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        return demo_file(Path(tmp) / "demo.jsonl", duration_s, rate_scale).read_bytes().splitlines()
