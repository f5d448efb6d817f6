"""Run every `benchmarks/bench_*.py` in turn, each in its own process, and print their output.

A fresh process per script keeps one benchmark's imports, caches and heap
from skewing the next one's figures. Children get one BLAS/OpenMP thread
each, so every figure is a one-core figure. `--quick` is passed on to the
scripts that accept it (they list it in their `--help`); the others run
with their defaults. The exit status is non-zero when any script failed or
timed out; a target that is not met is reported by the script itself and
does not fail the run (figures on a shared machine are noisy).
Run: `python benchmarks/run_all.py [--quick] [--only NAME] [--timeout-s S]` (`make bench`).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def scripts(only: str | None) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if only in p.stem]
    return found


def accepts_quick(script: Path, env: dict[str, str]) -> bool:
    helped = subprocess.run([sys.executable, str(script), "--help"], env=env, capture_output=True, text=True,
                            timeout=120)
    return helped.returncode == 0 and "--quick" in helped.stdout


def numpy_version() -> str:
    try:
        import numpy
    except ImportError:
        return "not installed"
    return numpy.__version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script that accepts it")
    ap.add_argument("--only", metavar="NAME", help="run only scripts whose name contains NAME (e.g. core)")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="stop a script that runs longer than this")
    args = ap.parse_args(argv)

    todo = scripts(args.only)
    if not todo:
        print(f"no benchmarks/bench_*.py matches --only={args.only!r}; "
              f"available: {', '.join(p.stem for p in scripts(None))}", file=sys.stderr)
        return 2
    env = {**os.environ, **ONE_THREAD}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}, numpy {numpy_version()}")
    print(f"running {len(todo)} benchmarks{' (quick)' if args.quick else ''}", flush=True)

    summary: list[tuple[str, str, float]] = []
    for script in todo:
        cmd = [sys.executable, str(script)]
        if args.quick and accepts_quick(script, env):
            cmd.append("--quick")
        print(f"\n=== {script.name} {' '.join(cmd[2:])}".rstrip(), flush=True)
        t0 = time.perf_counter()
        try:
            # Output goes straight to our stdout, so a long benchmark shows progress as it prints.
            status = "ok" if subprocess.run(cmd, env=env, timeout=args.timeout_s).returncode == 0 else "FAILED"
        except subprocess.TimeoutExpired:
            status = f"TIMED OUT after {args.timeout_s:.0f} s"
        summary.append((script.name, status, time.perf_counter() - t0))

    print("\n=== summary")
    for name, status, seconds in summary:
        print(f"  {name:<20} {seconds:7.1f} s  {status}")
    failed = [name for name, status, _ in summary if status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}; rerun one with `python benchmarks/run_all.py --only NAME` to see why",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
