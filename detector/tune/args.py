"""Command-line arguments of `detector tune` (light: parsing must not import the tuning code)."""

from __future__ import annotations

DEFAULT_MATCH_WINDOW_S = 24 * 3600.0  # an incident opened more than a day after the last deploy is not the deploy's


def add_arguments(p) -> None:
    p.add_argument("--input", action="append", default=[],
                   help="JSONL history of contract events (repeatable); or read the topics with --bootstrap-servers")
    p.add_argument("--bootstrap-servers", help="read the history from the pipeline's input topics and its incidents "
                                               "topic (no consumer group, nothing committed); needs --since/--until")
    p.add_argument("--since", help="start of the event-time range read from Kafka (Unix seconds or RFC 3339)")
    p.add_argument("--until", help="end of the event-time range read from Kafka (Unix seconds or RFC 3339)")
    p.add_argument("--incidents", action="append", default=[],
                   help="JSONL file of incident events (repeatable; incidents in --input count too)")
    p.add_argument("--out", required=True, help="folder for rules.json, patterns.json, delivery.json, tuned.toml, "
                                                "tuned.diff, report.html (and cache/)")
    p.add_argument("--pipeline", help="pipeline TOML file (default: pipelines/default.toml)")
    p.add_argument("--match-window-s", type=float, default=DEFAULT_MATCH_WINDOW_S,
                   help="an incident without deploy_id belongs to its service's latest deploy started at most "
                        "this long before it opened (default: 86400)")
    p.add_argument("--timezone", default="UTC", help="time zone of weekday and hour band (default: UTC)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the patterns (default 0.05)")
    p.add_argument("--no-verify", action="store_true",
                   help="do not replay the history with tuned.toml to check the re-judged figures")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
