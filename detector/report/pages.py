"""HTML pages: the index of deploys and one page per deploy, self-contained.

No external resource of any kind (style inline, charts inline SVG), so a
report opens from the file system and the live page works without network.
Every string that came from events (services, versions, ids, reasons, log
templates, check messages) is escaped with `esc` before it is written.
"""

from __future__ import annotations

from datetime import datetime, timezone

from detector.config import Pipeline
from detector.report.charts import DECISION_COLOUR, error_sparkline, reference_version, render_deploy_charts, \
    window_range
from detector.report.model import DeployView
from detector.report.summaries import Summaries
from detector.report.svg import Event, esc, timeline
from detector.report.text import measure

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#212529;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px} .sub{color:#495057;margin:0 0 14px}
table{border-collapse:collapse;margin:6px 0 12px} td,th{padding:4px 10px;border-bottom:1px solid #dee2e6;
text-align:left;vertical-align:middle} th{background:#f1f3f5;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.chart,.timeline{display:block;margin:8px 0 16px;background:#fff;border:1px solid #e9ecef}
.title{font-weight:600;font-size:13px} .tick{font-size:10.5px;fill:#495057} .legend{font-size:11px;fill:#343a40}
.note{font-size:10.5px} .grid{stroke:#e9ecef;stroke-width:1} code{background:#f1f3f5;padding:1px 4px}
.kv td:first-child{color:#495057} ul{margin:4px 0 10px} .muted{color:#868e96} a{color:#1864ab}
"""


def page_file(deploy_id: str) -> str:
    """The file name of a deploy's page (ids come from events: no path separators or dot-dot)."""
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in deploy_id).strip(".")
    return f"{keep or 'deploy'}.html"


def fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    if abs(s) < 90:
        return f"{s:.0f} s"
    if abs(s) < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def badge(state: str) -> str:
    return f'<span class="badge" style="background:{DECISION_COLOUR.get(state, "#495057")}">{esc(state)}</span>'


def page(title: str, body: str, refresh_s: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def index_page(views: list[DeployView], shared: list[dict], s: Summaries, p: Pipeline, title: str,
               subtitle: str, href_of=lambda d: f"deploys/{page_file(d.deploy_id)}", refresh_s: int | None = None) -> str:
    rows = []
    for d in views:
        rows.append(
            f'<tr id="deploy-{esc(d.deploy_id)}"><td><a href="{esc(href_of(d))}">{esc(d.deploy_id)}</a></td>'
            f"<td>{esc(fmt_ts(d.ts))}</td><td>{esc(d.service)}</td><td>{esc(d.version)}</td>"
            f"<td>{esc(d.strategy or '-')}</td><td>{badge(d.state)}</td><td>{esc(d.root_cause)}</td>"
            f"<td>{esc(_ttv(d))}</td><td>{error_sparkline(d, s, p)}</td></tr>")
    times = [d.ts for d in views] + [float(a["ts"]) for a in shared]
    x0 = min([s.first_start] + times) if s.first_start is not None else min(times, default=0.0)
    x1 = max([s.last_end or x0] + times + [float(d.verdict["ts"]) for d in views if d.verdict])
    events = [Event(d.ts, 0, f"deploy {d.deploy_id}: {d.service} {d.version} ({d.strategy or 'strategy unknown'})",
                    "#212529", href_of(d)) for d in views]
    events += [Event(float(a["ts"]), 1, f"{a['severity']} {a['signal']} anomaly of {a['service']} "
                                        f"without a deploy: {a['observed']:.4g} vs {a['expected']:.4g} expected",
                     "#f08c00" if a["severity"] != "info" else "#adb5bd") for a in shared]
    events += [Event(float(d.verdict["ts"]), 2, f"verdict {d.deploy_id}: {d.state}",
                     DECISION_COLOUR.get(d.state, "#000"), href_of(d)) for d in views if d.verdict]
    shared_rows = "".join(
        f"<tr><td>{esc(fmt_ts(a['ts']))}</td><td>{esc(a['service'])}</td><td>{esc(a['signal'])}</td>"
        f"<td>{esc(a['severity'])}</td><td>{esc(_observed(a))}</td></tr>"
        for a in shared if a["severity"] != "info")
    body = (f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
            f"<h2>Deploys</h2><table><tr><th>deploy</th><th>deployed (event time)</th><th>service</th>"
            f"<th>version</th><th>strategy</th><th>decision</th><th>root cause</th><th>time to verdict</th>"
            f"<th>error rate (before, then new version)</th></tr>{''.join(rows)}</table>"
            f"<h2>Timeline</h2>{timeline(events, x0, x1)}"
            f"<h2>Anomalies without a deploy</h2>"
            + (f"<table><tr><th>time</th><th>service</th><th>signal</th><th>severity</th><th>observed</th></tr>"
               f"{shared_rows}</table>" if shared_rows else '<p class="muted">none</p>'))
    return page(title, body, refresh_s)


def _ttv(d: DeployView) -> str:
    if d.verdict is not None:
        return fmt_s(d.time_to_verdict_s)
    if d.verifying and d.elapsed_s is not None:
        return f"verifying for {fmt_s(d.elapsed_s)}"
    return "-"


def _observed(a: dict) -> str:
    return measure(a)


def deploy_page(d: DeployView, s: Summaries, p: Pipeline, back_href: str = "../index.html",
                refresh_s: int | None = None) -> str:
    ref = reference_version(d, s, p.verification.baseline_s)
    span = d.span(p.verification.period_s)
    facts = [("service", d.service), ("new version", d.version), ("reference", ref or "none found"),
             ("strategy", d.strategy or "-"), ("change", d.change_kind or "-"), ("commit", d.commit or "-"),
             ("author", d.author or "-"), ("deployed (event time)", fmt_ts(d.ts)),
             ("verification span", f"{fmt_ts(span[0])} to {fmt_ts(span[1])}"),
             ("root cause", d.root_cause), ("time to verdict", _ttv(d))]
    kv = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in facts)
    parts = [f'<p><a href="{esc(back_href)}">all deploys</a></p>',
             f"<h1>{esc(d.deploy_id)}: {esc(d.service)} {esc(d.version)} {badge(d.state)}</h1>",
             f'<table class="kv">{kv}</table>']
    if d.verdict is not None:
        reasons = d.verdict.get("reasons") or []
        evidence = (d.verdict.get("root_cause") or {}).get("evidence") or []
        parts.append("<h2>Reasons</h2>" + _list(reasons, "no rule held"))
        parts.append(f"<h2>Root cause: {esc(d.root_cause)}</h2>" + _list(evidence, "no evidence"))
    elif d.verifying:
        parts.append(f"<h2>Verifying for {esc(fmt_s(d.elapsed_s))} of {esc(fmt_s(p.verification.period_s))}"
                     "</h2>" + _list(d.evidence_so_far, "no rule has held so far"))
    parts.append("<h2>Before and after</h2>"
                 f'<p class="sub">The new version against {esc(ref or "its reference")} per '
                 f"{p.windows.width_s:g} s window; shaded: the verification span; vertical lines: the deploy, "
                 "the moments rules held and the verdict; dashed horizontal lines: the reference's level before "
                 "the deploy and rule thresholds; blue band: the seasonal expectation when learnt.</p>")
    parts.extend(render_deploy_charts(d, s, p))
    if d.anomalies:
        rows = "".join(
            f"<tr><td>{esc(fmt_ts(a['ts']))}</td><td>{esc(a['signal'])}</td><td>{esc(a['severity'])}</td>"
            f"<td>{esc(a.get('endpoint') or 'all endpoints')}</td><td>{esc(_observed(a))}</td>"
            f"<td>{esc((a.get('detail') or {}).get('rule') or (a.get('detail') or {}).get('template') or '')}</td>"
            f"</tr>" for a in d.anomalies)
        parts.append("<h2>Anomalies of this deploy</h2><table><tr><th>time</th><th>signal</th><th>severity</th>"
                     f"<th>where</th><th>observed</th><th>rule or template</th></tr>{rows}</table>")
    t0, t1 = window_range(d, p, s)
    tpls = s.template_lines(d.service, d.ts - p.windows.width_s, t1, new_since=d.ts - p.windows.width_s)
    if tpls:
        rows = "".join(
            f"<tr><td><code>{esc(t['text'])}</code></td><td>{esc(t['kind'])}</td><td>{esc(t['level'])}</td>"
            f"<td>{esc(fmt_s(t['first_seen_ts'] - d.ts))}</td><td>{t['lines']:,}</td>"
            f"<td>{esc(', '.join(f'{v}: {n:,}' for v, n in t['by_version'].items()))}</td></tr>" for t in tpls)
        parts.append("<h2>New log templates since the deploy</h2><table><tr><th>template</th><th>kind</th>"
                     "<th>level</th><th>first seen after deploy</th><th>lines</th><th>by version</th></tr>"
                     f"{rows}</table>")
    else:
        parts.append('<h2>New log templates since the deploy</h2><p class="muted">none</p>')
    if d.checks:
        rows = "".join(
            f"<tr><td>{esc(fmt_ts(c['ts']))}</td><td>{esc(c.get('name', ''))}</td>"
            f"<td>{_passed(c.get('passed'))}</td>"
            f"<td>{esc(c.get('version') or '-')}</td><td>{esc(_ms(c.get('duration_ms')))}</td>"
            f"<td>{esc(c.get('message') or '')}</td><td>{esc(c.get('url') or '')}</td></tr>" for c in d.checks)
        parts.append("<h2>Smoke checks</h2><table><tr><th>time</th><th>check</th><th>result</th><th>version</th>"
                     f"<th>duration</th><th>message</th><th>target</th></tr>{rows}</table>")
    return page(f"{d.deploy_id} {d.service} {d.version}: {d.state}", "".join(parts), refresh_s)


def _passed(ok) -> str:
    colour = DECISION_COLOUR["confirmed" if ok else "rollback"]
    return f'<span class="badge" style="background:{colour}">{"passed" if ok else "failed"}</span>'


def _ms(v) -> str:
    return "-" if v is None else f"{float(v):.0f} ms"


def _list(items: list, empty: str) -> str:
    if not items:
        return f'<p class="muted">{esc(empty)}</p>'
    return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>"
