"""report.html: one self-contained page with inline SVG bar charts.

Inline SVG rather than matplotlib PNGs: no plotting dependency, text stays
searchable and sharp at any zoom, and the page stays small.
"""

from __future__ import annotations

from html import escape


def _bars(title: str, rows: list[tuple[str, list[float]]], series: list[str], unit: str = "",
          intervals: list[tuple[float, float]] | None = None) -> str:
    """Horizontal grouped bars; `intervals` (one per row, first series) drawn as whiskers."""
    colours = ["#2b6cb0", "#c53030", "#718096"]
    top = max([v for _, vs in rows for v in vs] + [hi for _, hi in (intervals or [])] + [1e-9])
    bar_h, gap, label_w, width = 12, 8, 210, 360
    h = len(rows) * (bar_h * len(series) + gap) + 40
    out = [f'<h3>{escape(title)}</h3><svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 90}" '
           f'height="{h}" font-family="sans-serif" font-size="11">']
    for i, name in enumerate(series):
        out.append(f'<rect x="{label_w + i * 130}" y="2" width="10" height="10" fill="{colours[i]}"/>'
                   f'<text x="{label_w + i * 130 + 14}" y="11">{escape(name)}</text>')
    y = 24
    for j, (label, values) in enumerate(rows):
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h}" text-anchor="end">{escape(label)}</text>')
        for i, v in enumerate(values):
            w = width * v / top
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" fill="{colours[i]}"/>'
                       f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 2}">{v:g}{unit}</text>')
            if intervals and i == 0:
                lo, hi = intervals[j]
                x0, x1, ym = label_w + width * lo / top, label_w + width * hi / top, y + bar_h / 2
                out.append(f'<line x1="{x0:.1f}" y1="{ym}" x2="{x1:.1f}" y2="{ym}" stroke="#000"/>')
            y += bar_h
        y += gap
    out.append("</svg>")
    return "".join(out)


def _table(rows: list[dict], keys: list[str]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(k, '')))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(rules: dict, patterns: dict, delivery: dict, tuning: dict, signals: dict[str, str]) -> str:
    """`signals`: deploy_id -> a one-line description of what its signals looked like."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>detector tune</title><style>"
             "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>",
             "<h1>What the history says about the detector</h1>"]
    o = delivery["overall"]
    parts.append(f"<p>{o['deploys']} deploys over {delivery['history_days']:g} days, {o['incidents']} incidents; "
                 f"the detector spoke before {o['detector_before_incident']}, after {o['detector_after_incident']}, "
                 f"never for {o['detector_never']}.</p>")
    rs = rules["rules"]
    parts.append(_bars("Per rule: firings on deploys with an incident (caught) and without (false alarms)",
                       [(r["name"], [r["caught"], r["false_alarms"]]) for r in rs], ["caught", "false alarms"]))
    fired = [r for r in rs if r["median_s_to_fire"] is not None]
    parts.append(_bars("Median time from deploy to firing", [(r["name"], [r["median_s_to_fire"]]) for r in fired],
                       ["seconds"], " s"))
    leads = [x for x in delivery["lead_times"] if x["lead_s"] is not None]
    parts.append(_bars("Detector lead time per incident (positive: before the incident opened)",
                       [(x["incident_id"], [max(x["lead_s"], 0.0)]) for x in leads], ["seconds before"], " s"))
    everything = patterns["patterns"] + patterns["not_enough_evidence"]
    for dim in ("weekday", "change_kind"):
        rows = [r for r in everything if r["dimension"] == dim]
        parts.append(_bars(f"Incident rate by {dim} (95 % Wilson interval)",
                           [(f"{r['value']} ({r['incidents']}/{r['deploys']})", [round(r["rate"], 3)]) for r in rows],
                           ["rate"], intervals=[tuple(r["ci95"]) for r in rows]))
    parts.append("<h3>Patterns (Holm-corrected Fisher tests)</h3>")
    parts.append(_table(patterns["patterns"], ["dimension", "value", "deploys", "incidents", "rate", "rest_rate",
                                               "p_holm"]))
    parts.append("<h3>Missed incidents (the deploy was confirmed or inconclusive)</h3>")
    parts.append(_table([{**m, "signals": signals.get(m["deploy_id"], "")} for m in rules["missed_incidents"]],
                        ["incident_id", "deploy_id", "service", "decision", "signals"]))
    parts.append("<h3>Tuning (in sample: earliest 2/3 of deploys; out of sample: the rest)</h3>")
    parts.append(_table([{"split": s, "policy": p, **tuning[s][p]} for s in ("in_sample", "out_of_sample")
                         for p in ("default", "tuned")],
                        ["split", "policy", "deploys", "incidents", "caught", "caught_rollback_or_page",
                         "false_rollback_or_page", "false_tickets"]))
    loo = tuning.get("leave_one_incident_out") or {}
    if loo.get("folds"):
        parts.append(f"<h3>Leave one incident out ({loo['folds']} folds; in sample: fitted and scored on every "
                     f"deploy; out of sample: each fold's held-out deploys, pooled)</h3>")
        parts.append(_table([{"split": s, "policy": p, **loo[s][p]} for s in ("in_sample", "out_of_sample")
                             for p in ("default", "tuned")],
                            ["split", "policy", "deploys", "incidents", "caught", "caught_rollback_or_page",
                             "false_rollback_or_page", "false_tickets"]))
    parts.append("<pre>" + escape("\n".join(tuning["diff"]) or "no change") + "</pre></body></html>")
    return "\n".join(parts)
