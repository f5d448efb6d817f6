"""Text forms for terminals: measures with their units, console lines, the markdown report."""

from __future__ import annotations

from datetime import datetime, timezone

KIND_NAMES = {"request": "requests", "log": "log lines", "metric": "metric samples", "deploy": "deploy events",
              "check": "smoke checks", "incident": "incidents"}


def span_s(a: dict) -> float:
    w = a.get("window") or {}
    try:
        return float(w["end"]) - float(w["start"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def measure(a: dict) -> str:
    """An anomaly's observed and expected values with their units ("7 lines vs 0.0066 expected per 10 s window")."""
    sig, obs, exp = a["signal"], float(a["observed"]), float(a["expected"])
    per = f"{span_s(a):g} s" if span_s(a) else "window"
    detail = a.get("detail") or {}
    if sig == "error_rate":
        return f"error rate {100 * obs:.2f}% vs {100 * exp:.2f}% expected over {per}"
    if sig == "latency":
        q = detail.get("quantile")
        name = f"p{100 * float(q):g}" if q is not None else "latency"
        return f"{name} {obs:,.0f} ms vs {exp:,.0f} ms expected over {per}"
    if sig == "transactions":
        return f"{obs:.3g} vs {exp:.3g} completed transactions per request expected over {per}"
    if sig == "volume":
        return f"{obs:,.0f} requests vs {exp:,.0f} expected per {per}"
    if sig in ("log_novelty", "log_errors"):
        return f"{obs:,.0f} lines vs {exp:.2g} expected per {per} window"
    if sig == "metric":
        return f"{detail.get('metric', 'metric')} mean {obs:.4g} vs {exp:.4g} expected per {per} window"
    return f"{obs:.4g} vs {exp:.4g} expected"


def clock(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%H:%M:%S")


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def counts_line(counts: dict) -> str:
    """{"request": 134601, ...} -> "134,601 requests, 21,900 log lines, ..." with the total first."""
    total = sum(int(v) for v in counts.values())
    parts = [f"{int(v):,} {KIND_NAMES.get(k, k)}" for k, v in counts.items() if int(v)]
    return f"{total:,} events ({', '.join(parts)})"


def console_lines(rec: dict) -> list[list[tuple[str, str]]]:
    """Lines for one record, each a list of (style, text) segments; style is "head", "dim", "plain" or a
    decision. Times are the events' own: simulated event time in the demo, hence "sim"."""
    if rec["type"] == "verdict":
        d = rec["decision"]
        lines = [[("head", f"[sim {clock(rec['ts'])}] VERDICT {rec['service']} {rec['deploy_id']} "
                           f"({rec['version']}): "), (d, d.upper()),
                  ("plain", f"  root cause: {rec['root_cause']['category']}")]]
        lines += [[("plain", f"      - {reason}")] for reason in rec["reasons"][:3]]
        lines += [[("dim", f"      * {ev}")] for ev in rec["root_cause"]["evidence"][:3]]
        return lines
    if rec["type"] == "anomaly" and rec["severity"] != "info":
        where = rec["endpoint"] or (rec.get("detail") or {}).get("metric") or "all endpoints"
        dep = rec["deploy_id"] or "no deploy (shared cause)"
        return [[("dim", f"[sim {clock(rec['ts'])}] anomaly {rec['severity']:<8} {rec['service']}/{where} "
                         f"{rec['signal']}: {measure(rec)} -> {dep}")]]
    return []


def markdown(truth: dict, records: list[dict], scored, baseline_table: str, html_index: str | None = None) -> str:
    """The demo's markdown report: verdicts against the ground truth, with times and evidence."""
    verdict_of = {r["deploy_id"]: r for r in records if r["type"] == "verdict"}
    deploy_ts = {d["deploy_id"]: d.get("started_ts") for d in truth["deploys"]}
    lines = [f"# Demo report: scenario {truth['scenario']}", "",
             f"{counts_line(truth['counts'])}; verification period {truth['verification_s']:g} s. "
             "Times are the simulated events' own (UTC).", ""]
    if html_index:
        lines += [f"Charts for every deploy: `{html_index}`.", ""]
    lines += ["| deploy | service | strategy | expected | verdict | root cause (expected) | time to verdict | deployed |",
              "|---|---|---|---|---|---|---|---|"]
    for r, d in zip(scored.results, truth["deploys"]):
        ttv = "-" if r.time_to_verdict_s is None else f"{r.time_to_verdict_s:.0f} s"
        when = clock(deploy_ts[r.deploy_id]) if deploy_ts.get(r.deploy_id) is not None else "-"
        lines.append(f"| {r.deploy_id} | {r.service} | {d['strategy']} | {r.expected} | {r.got} | "
                     f"{r.got_root_cause} ({r.expected_root_cause or '-'}) | {ttv} | {when} |")
    lines += ["", "## Against the threshold script", "", baseline_table, "", "## Verdicts and their evidence", ""]
    for dep, v in verdict_of.items():
        lines.append(f"### {dep}: {v['decision']} (root cause {v['root_cause']['category']})")
        lines.append("")
        lines.append(f"{v['service']} {v['version']}, verified {clock(v['verification']['started'])} to "
                     f"{clock(v['verification']['ended'])}, verdict at {clock(v['ts'])}.")
        lines.append("")
        for reason in v["reasons"]:
            lines.append(f"- {reason}")
        for ev in v["root_cause"]["evidence"]:
            lines.append(f"- evidence: {ev}")
        anomalies = [a for a in records if a["type"] == "anomaly" and a.get("deploy_id") == dep]
        for a in anomalies[:5]:
            lines.append(f"- anomaly at {clock(a['ts'])}: {a['signal']} {measure(a)}")
        lines.append("")
    shared = [a for a in records if a["type"] == "anomaly" and not a.get("deploy_id") and a["severity"] != "info"]
    if shared:
        lines += ["## Anomalies without a deploy", ""]
        lines += [f"- {clock(a['ts'])} {a['service']} {a['signal']}: {measure(a)}" for a in shared]
        lines.append("")
    return "\n".join(lines)
