"""`detector` command line: argument parsing only; the work lives in app modules."""

from __future__ import annotations

import argparse
import os
import sys

from detector.config import ConfigError, load_pipeline


def _replay(args: argparse.Namespace) -> int:
    from detector.replay import run_replay

    pipeline = load_pipeline(args.pipeline)
    result = run_replay(args.input, args.output, pipeline, dlq=args.dlq, quiet=args.quiet,
                        partitions=args.partitions, alertmanager_url=args.alertmanager_url,
                        save_baselines=args.save_baselines, scores=args.scores)
    if not args.quiet:
        print(f"{result.events:,} events ({result.rejected:,} rejected, {result.late:,} late) -> "
              f"{result.anomalies:,} anomalies, {result.verdicts:,} verdicts in {result.seconds:.1f} s "
              f"({result.events / max(result.seconds, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from detector.simulate.main import run

    return run(args)


def _run(args: argparse.Namespace) -> int:
    from detector.runtime.app import run_live

    return run_live(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Is the new version working as well as the old one?")
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="run the detector over JSONL files at full speed")
    rp.add_argument("--input", action="append", required=True, help="JSONL file of contract events (repeatable)")
    rp.add_argument("--output", required=True, help="JSONL file for anomalies and verdicts")
    rp.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    rp.add_argument("--dlq", help="JSONL file for rejected input lines with their reasons")
    rp.add_argument("--alertmanager-url", help="also post paging verdicts and critical anomalies to this Alertmanager")
    rp.add_argument("--save-baselines", metavar="FILE",
                    help="write the baselines learnt from the input here (e.g. models/baselines.npz), for "
                         "[baselines] warm_start of a new sidecar")
    rp.add_argument("--scores", metavar="FILE",
                    help="write one JSONL row per metric series-window with its anomaly score (-log10 p), "
                         "to choose [metrics] score_threshold from history")
    rp.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    rp.add_argument("--partitions", type=int, default=1,
                    help="route services to N cores like Kafka's partitioner does to N partitions, so the output "
                         "equals a live run over N-partition topics (default 1: one core sees every service)")
    rp.set_defaults(func=_replay)

    sp = sub.add_parser("simulate", help="generate production-like traffic with good and bad deploys")
    try:
        from detector.simulate.main import add_arguments
    except ImportError:  # pragma: no cover - the simulator ships with the package
        add_arguments = None
    if add_arguments is not None:
        add_arguments(sp)
    sp.set_defaults(func=_simulate)

    run = sub.add_parser("run", help="live detection on Kafka (sidecar)")
    run.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                     help="HOST:PORT[,HOST:PORT] (default: $KAFKA_BOOTSTRAP_SERVERS)")
    run.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    run.add_argument("--group-id", help="consumer group (default: kafka.group_id of the pipeline)")
    run.add_argument("--http-port", type=int, help="port of /healthz /readyz /metrics (0: any free port, -1: off)")
    run.add_argument("--alertmanager-url", help="post paging verdicts and critical anomalies to this Alertmanager")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"detector: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
