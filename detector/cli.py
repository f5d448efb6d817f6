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
        blank = f", {result.skipped:,} blank lines skipped" if result.skipped else ""
        print(f"{result.events:,} events ({result.rejected:,} rejected, {result.late:,} late{blank}) -> "
              f"{result.anomalies:,} anomalies, {result.verdicts:,} verdicts in {result.seconds:.1f} s "
              f"({result.events / max(result.seconds, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0


def _templates(args: argparse.Namespace) -> int:
    from detector.logs.report import run_templates

    return run_templates(args.input, args.out, load_pipeline(args.pipeline), since=args.since)


def _simulate(args: argparse.Namespace) -> int:
    from detector.simulate.main import run

    return run(args)


def _tune(args: argparse.Namespace) -> int:
    from detector.tune.main import run_tune

    return run_tune(args)


def _run(args: argparse.Namespace) -> int:
    from detector.runtime.entry import run_live

    return run_live(args)


def _report(args: argparse.Namespace) -> int:
    from detector.report.build import run_report

    r = run_report(args.input, args.alerts, args.out, load_pipeline(args.pipeline), args.summaries)
    how = "summaries read back" if r.reused else "events summarised"
    print(f"{r.pages} pages ({r.deploys} deploys) in {r.out_dir}: {r.events:,} {how} into "
          f"{r.windows:,} windows in {r.summarise_s:.1f} s, pages drawn in {r.render_s:.2f} s", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description="Is the new version working as well as the old one?")
    parser.add_argument("--version", action="version", version=f"detector {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    rp = sub.add_parser("replay", help="run the detector over JSONL files at full speed",
                        description="Replay history (JSONL files of contract events) through the detector at full "
                                    "speed: the same anomalies and verdicts as the live run that saw the same events.")
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

    tp = sub.add_parser("templates", help="the log templates of a JSONL input, one CSV row per log line")
    tp.add_argument("--input", required=True, help="JSONL file of contract events; its log events are mined")
    tp.add_argument("--out", required=True, help="CSV file: line,service,template_id,template")
    tp.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    tp.add_argument("--since", metavar="TS", help="also print the templates first seen after TS (Unix seconds or "
                                                  "RFC 3339) with their line counts: what a release added")
    tp.set_defaults(func=_templates)

    sp = sub.add_parser("simulate", help="generate production-like traffic with good and bad deploys")
    try:
        from detector.simulate.main import add_arguments
    except ImportError:  # pragma: no cover - the simulator ships with the package
        add_arguments = None
    if add_arguments is not None:
        add_arguments(sp)
    sp.set_defaults(func=_simulate)

    tu = sub.add_parser("tune", help="learn from your own history: rule effectiveness, patterns, tuned thresholds",
                        description="Replay a history once and write rules.json, patterns.json, delivery.json, "
                                    "tuned.toml (+ tuned.diff, tuning.json) and report.html to --out.")
    from detector.tune.args import add_arguments as add_tune_arguments

    add_tune_arguments(tu)
    tu.set_defaults(func=_tune)

    run = sub.add_parser("run", help="live detection on Kafka (sidecar)",
                         description="Run the detector live next to Kafka: read the input topics as a consumer "
                                     "group, judge every deploy, and publish anomalies and verdicts to the alerts "
                                     "topic and the configured sinks.")
    run.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                     help="HOST:PORT[,HOST:PORT] (default: $KAFKA_BOOTSTRAP_SERVERS)")
    run.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    run.add_argument("--group-id", help="consumer group (default: kafka.group_id of the pipeline)")
    run.add_argument("--http-port", type=int, help="port of /healthz /readyz /metrics (0: any free port, -1: off)")
    run.add_argument("--alertmanager-url", help="post paging verdicts and critical anomalies to this Alertmanager")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="HTML pages of every deploy: before/after charts, verdicts, evidence",
                         description="Write a self-contained HTML report (index.html and deploys/<id>.html) from "
                                     "the events and the alerts a replay or a live run produced.")
    rep.add_argument("--input", required=True, help="JSONL file of contract events")
    rep.add_argument("--alerts", required=True, help="JSONL file of anomalies and verdicts (replay --output)")
    rep.add_argument("--out", required=True, help="folder for the pages")
    rep.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    rep.add_argument("--summaries", metavar="FILE",
                     help="keep the window summaries here (.npz) and reuse them while --input is unchanged, so a "
                          "rebuild skips the pass over the events")
    rep.set_defaults(func=_report)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("deploy-detector")
    except Exception:  # running from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from detector.baselines import BaselineFormatError
    from detector.errors import RuntimeFailure, UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, BaselineFormatError) as e:
        print(f"detector: {e}", file=sys.stderr)
        return 2
    except (UsageError, RuntimeFailure) as e:
        print(f"detector {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"detector {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
