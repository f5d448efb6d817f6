"""`detector tune`: replay the history once, then write rules, patterns, delivery, tuned pipeline, report."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from detector.config import load_pipeline, parse_pipeline
from detector.errors import UsageError
from detector.outfiles import check_input
from detector.tune import html
from detector.tune.effectiveness import delivery_report, rules_report
from detector.tune.history import load_history
from detector.tune.outcomes import Bar, outcomes, replay_records
from detector.tune.patterns import find_patterns
from detector.tune.policy import Choice, score, tune


def _signals(records: list[dict]) -> dict[str, str]:
    """deploy_id -> what its signals looked like, in one line (for missed incidents)."""
    by: dict[str, Counter] = {}
    reason: dict[str, str] = {}
    for r in records:
        dep = r.get("deploy_id") or (r.get("detail") or {}).get("suspected_deploy_id")
        if not dep:
            continue
        if r["type"] == "verdict":
            reason[dep] = (r.get("reasons") or [""])[0]
        else:
            shared = "" if r.get("deploy_id") else " (shared)"
            by.setdefault(dep, Counter())[f"{r['signal']}{shared}"] += 1
    out = {}
    for dep in set(by) | set(reason):
        anomalies = ", ".join(f"{n} {s}" for s, n in sorted(by.get(dep, Counter()).items())) or "no anomaly"
        out[dep] = f"{anomalies}; verdict: {reason.get(dep, 'none')}"
    return out


def run_tune(args) -> int:
    t0 = time.perf_counter()
    for path in [*args.input, *args.incidents]:
        check_input(path)
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g}: must be between 0 and 1")
    try:
        tz = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone {args.timezone}: not a time zone name (e.g. UTC, Europe/Berlin)") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pipeline = load_pipeline(args.pipeline)
    topic_incidents: list[str] = []
    if args.bootstrap_servers:
        if args.input:
            raise UsageError("--input and --bootstrap-servers: give one history, a file or the topics")
        if not (args.since and args.until):
            raise UsageError("--bootstrap-servers needs --since and --until (the event-time range to read)")
        from detector.tune.kafka_history import fetch_history, parse_time

        events, incs = fetch_history(pipeline, args.bootstrap_servers, parse_time("--since", args.since),
                                     parse_time("--until", args.until), out / "cache", args.match_window_s,
                                     quiet=args.quiet)
        args.input, topic_incidents = [str(events)], [str(incs)]
    elif not args.input:
        raise UsageError("no history: give --input FILE or --bootstrap-servers with --since/--until")
    elif args.since or args.until:
        raise UsageError("--since/--until select a range of the topics; they need --bootstrap-servers")
    history = load_history([*args.input, *topic_incidents], args.incidents, args.match_window_s)
    if not history.deploys:
        raise UsageError(f"{', '.join(args.input)}: no deploy events with phase started; nothing to tune")
    records, cached = replay_records(args.input, pipeline, out / "cache", quiet=args.quiet)
    outs = outcomes(records)
    failed = set(history.deploy_of.values())
    incidents_per_deploy = Counter(history.deploy_of.values())
    rules = rules_report(pipeline, history, outs)
    patterns = find_patterns(history.deploys, failed, tz, args.alpha)
    delivery = delivery_report(history, outs)
    t1 = time.perf_counter()
    bar = Bar("leave one incident out", 1, enabled=None if not args.quiet else False)
    tuning = tune(pipeline, [d.deploy_id for d in history.deploys], dict(incidents_per_deploy), outs, bar)
    bar.done()
    rejudge_s = time.perf_counter() - t1
    toml = tuning.pop("toml")
    tuning["rejudge_s"] = round(rejudge_s, 4)
    if tuning["diff"] and not args.no_verify:
        # the re-judge works from recorded firings; one real replay with tuned.toml says what it misses
        tuned_records, _ = replay_records(args.input, parse_pipeline(toml, "tuned.toml"), out / "cache",
                                          quiet=args.quiet)
        order = [d.deploy_id for d in history.deploys]
        tuning["replayed_with_tuned_toml"] = score(order, dict(incidents_per_deploy), outcomes(tuned_records),
                                                   {r.name: Choice() for r in pipeline.rules})
    _write_json(out / "rules.json", rules)
    _write_json(out / "patterns.json", patterns)
    _write_json(out / "delivery.json", delivery)
    _write_json(out / "tuning.json", tuning)
    (out / "tuned.toml").write_text(toml, encoding="utf-8")
    (out / "tuned.diff").write_text("\n".join(tuning["diff"]) + "\n" if tuning["diff"] else "", encoding="utf-8")
    (out / "report.html").write_text(html.render(rules, patterns, delivery, tuning, _signals(records)),
                                     encoding="utf-8")
    if not args.quiet:
        o = delivery["overall"]
        print(f"{o['deploys']} deploys, {o['incidents']} incidents ({len(history.unmatched)} unmatched), "
              f"{len(rules['missed_incidents'])} missed, {len(patterns['patterns'])} patterns, "
              f"{len(tuning['diff'])} threshold changes; replay {'cached' if cached else 'run'}, "
              f"{time.perf_counter() - t0:.1f} s -> {out}", file=sys.stderr)
    return 0


def _write_json(path: Path, obj) -> None:
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
