"""`detector simulate`: command-line wiring of the traffic simulator.

Reads a scenario, applies overrides, sends the events to a JSONL file or to
Kafka, and writes the ground truth. No logic of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib import resources
from pathlib import Path

from detector.runtime.topics import DEFAULT_PARTITIONS
from detector.simulate.output import DEFAULT_TOPICS, produce_kafka, write_jsonl
from detector.simulate.scenario import ScenarioError, load_scenario
from detector.simulate.traffic import Simulator
from detector.simulate.truth import build_truth, truth_path_for, write_truth

# The shipped scenarios: benchmarks/scenarios/ in a source tree (detector/data/ links to it),
# package data in any install.
SCENARIO_DIR = Path(str(resources.files("detector") / "data" / "scenarios"))


def resolve_scenario(name_or_path: str) -> Path:
    """A path as given, or a bare name of a shipped scenario ('demo' -> benchmarks/scenarios/demo.toml)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix or "/" in name_or_path:
        return p
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(f.stem for f in SCENARIO_DIR.glob("*.toml")))
    raise ScenarioError(f"no scenario file or shipped scenario named {name_or_path!r}; shipped: {names}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        help="scenario TOML file, or the name of a shipped one (demo, baseline_day, config_fault, ...)",
    )
    dest = parser.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", metavar="FILE", help="write events as JSONL to FILE ('-' for stdout)")
    dest.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="produce events to Kafka at HOST:PORT")
    parser.add_argument(
        "--truth",
        metavar="FILE",
        help="write the ground truth here (default: beside --out, events.jsonl -> events.truth.json; "
        "not written for stdout or Kafka unless given)",
    )
    parser.add_argument(
        "--incidents",
        metavar="FILE",
        help="also write one incident event per deploy with an injected fault (JSONL), for detector tune",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed (same seed + scenario = same bytes)")
    parser.add_argument("--duration-s", type=float, help="override the scenario's duration in seconds of event time")
    parser.add_argument(
        "--rate-scale", type=float, help="override the scenario's traffic.rate_scale (multiplies every rps)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="pace output at N x real time by event time (default: as fast as possible)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help=f"create missing Kafka topics with this many partitions (default: {DEFAULT_PARTITIONS}; 0: create none)",
    )
    for kind, default in DEFAULT_TOPICS.items():
        parser.add_argument(
            f"--topic-{kind}s",
            default=default,
            metavar="TOPIC",
            help=f"Kafka topic for {kind} events (default: {default})",
        )


def run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(
            resolve_scenario(args.scenario), seed=args.seed, duration_s=args.duration_s, rate_scale=args.rate_scale
        )
    except ScenarioError as e:
        print(f"detector simulate: {e}", file=sys.stderr)
        return 2
    if args.partitions < 0:
        print(f"detector simulate: --partitions must be >= 0 (got {args.partitions})", file=sys.stderr)
        return 2
    if args.speed is not None and not args.speed > 0:
        print(f"detector simulate: --speed must be > 0 (got {args.speed}); omit it for full speed", file=sys.stderr)
        return 2
    sim = Simulator(scenario)
    started = time.monotonic()
    if args.out is not None:
        counts = write_jsonl(sim.chunks(), args.out, speed=args.speed)
        where = "stdout" if args.out == "-" else args.out
        truth_path = args.truth or (None if args.out == "-" else truth_path_for(args.out))
    else:
        topics = {kind: getattr(args, f"topic_{kind}s") for kind in DEFAULT_TOPICS}
        try:
            counts = asyncio.run(
                produce_kafka(
                    sim.chunks(),
                    args.bootstrap_servers,
                    sim.service_names,
                    topics=topics,
                    speed=args.speed,
                    create_partitions=args.partitions or None,
                )
            )
        except Exception as e:  # the broker's errors are many; all mean the same to a user here
            print(f"detector simulate: producing to Kafka at {args.bootstrap_servers} failed: {e!r}", file=sys.stderr)
            return 1
        where = f"kafka {args.bootstrap_servers}"
        truth_path = args.truth
    elapsed_s = time.monotonic() - started
    truth = build_truth(scenario, sim.timeline, counts.by_kind)
    if truth_path is not None:
        write_truth(truth_path, truth)
    if args.incidents:
        from detector.simulate.incidents import write_incidents

        write_incidents(args.incidents, truth)
    rate = counts.total / elapsed_s if elapsed_s > 0 else float("inf")
    parts = ", ".join(f"{n} {k}" for k, n in counts.by_kind.items())
    print(
        f"simulated {scenario.name} ({scenario.duration_s:g} s of event time, seed {scenario.seed}) -> {where}: "
        f"{counts.total} events ({parts}) in {elapsed_s:.1f} s, {rate:,.0f} events/s"
        + (f"; truth in {truth_path}" if truth_path else ""),
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="detector simulate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
