"""The before/after charts of one deploy, from window summaries.

The new version is drawn against its reference: the stable version (the
deploy's previous version, else the version that served most traffic in the
baseline before the deploy) over the same windows; before the deploy that
version is the whole service, so the "before" picture is the same line. The
level of the reference over the baseline is a dashed line, the seasonal
expectation of the service a band. Rule thresholds are drawn where a rule's
effect is a level on the chart's axis: error-rate points above the
reference's level, a latency ratio, a drop in transactions per request, the
traffic-loss fraction of the expected volume.
"""

from __future__ import annotations

import math

import numpy as np

from detector.config import Pipeline
from detector.report.model import DeployView
from detector.report.summaries import ALL, Summaries
from detector.report.svg import PALETTE, Band, Chart, HLine, Marker, Line, render, sparkline

DECISION_COLOUR = {"rollback": "#c92a2a", "page": "#e8590c", "ticket": "#f08c00", "confirmed": "#2b8a3e",
                   "inconclusive": "#868e96", "superseded": "#5c7cfa", "verifying": "#1c7ed6",
                   "no verdict": "#adb5bd"}


def _action(r) -> str:
    """What a rule does, as the pages say it; per-endpoint rules are drawn at the service's level."""
    text = r.action + (f" ({r.critical_action} on critical endpoints)" if r.critical_action else "")
    return text + (", per endpoint" if r.scope == "endpoint" else "")


def reference_version(d: DeployView, s: Summaries, baseline_s: float) -> str | None:
    if d.previous_version and d.previous_version != d.version:
        return d.previous_version
    before = s.versions(d.service, d.ts - baseline_s, d.ts)
    before.pop(d.version, None)
    return next(iter(before), None)


def window_range(d: DeployView, p: Pipeline, s: Summaries | None = None) -> tuple[float, float]:
    """Time range of a deploy's charts: the verification span and at least 5 minutes after the
    deploy, with as much before it (up to the baseline) so that before and after weigh alike;
    never past the last window summarised (a verification the input ended in the middle of)."""
    span0, span1 = d.span(p.verification.period_s)
    after = max(span1, span0, d.ts + min(p.verification.period_s, 300.0)) + 2 * p.windows.width_s
    if s is not None and s.last_end is not None and d.verdict is None:
        after = max(min(after, s.last_end + p.windows.width_s), d.ts + 2 * p.windows.width_s)
    before = min(p.verification.baseline_s, max(300.0, after - d.ts))
    return d.ts - before, after


def _rate(num: np.ndarray, den: np.ndarray, scale: float = 1.0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, scale * num / np.maximum(den, 1), np.nan)


def _on_grid(rows: dict[str, np.ndarray], grid: np.ndarray, key: str) -> np.ndarray:
    """Values of `key` at each window start of `grid` (NaN where the series had no row)."""
    out = np.full(len(grid), np.nan)
    if len(rows["start"]):
        pos = np.searchsorted(grid, rows["start"])
        ok = (pos < len(grid)) & (grid[np.minimum(pos, len(grid) - 1)] == rows["start"])
        out[pos[ok]] = rows[key][ok]
    return out


def _before_level(rows: dict, grid: np.ndarray, num: str, den: str | None, t0: float, t1: float,
                  scale: float = 1.0) -> float:
    m = (rows["start"] >= t0) & (rows["start"] < t1)
    if den is None:
        vals = rows[num][m]
        vals = vals[np.isfinite(vals)]
        return float(np.median(vals)) if len(vals) else math.nan
    d = rows[den][m].sum()
    return scale * float(rows[num][m].sum()) / d if d > 0 else math.nan


def deploy_charts(d: DeployView, s: Summaries, p: Pipeline) -> list[Chart]:
    t0, t1 = window_range(d, p, s)
    w = p.windows.width_s
    grid = np.arange(math.floor(t0 / w) * w, t1, w)
    xs = grid + w  # a window is drawn at its end: the moment its numbers are known
    ref_name = reference_version(d, s, p.verification.baseline_s)
    new = s.series(d.service, d.version, t0, t1)
    ref = s.series(d.service, ref_name, t0, t1) if ref_name else s.series(d.service, None, t0, t0)
    tot = s.series(d.service, ALL, t0, t1)
    exp = s.expectation(d.service, t0, t1)
    span = d.span(p.verification.period_s)
    markers = [Marker(d.ts, f"deploy {d.deploy_id}")]
    if d.verdict is not None:
        markers.append(Marker(float(d.verdict["ts"]), f"verdict: {d.state}", DECISION_COLOUR.get(d.state, "#000")))
    held: dict[str, list[Marker]] = {}
    for a in d.anomalies:
        rule = (a.get("detail") or {}).get("rule")
        label = f"rule '{rule}' held" if rule else f"{a['signal']} anomaly"
        held.setdefault(a["signal"], []).append(Marker(float(a["ts"]), label, PALETTE["rule"]))
    span_note = (span[0], span[1], "verification span")
    b0, b1 = d.ts - p.verification.baseline_s, d.ts
    ref_label = f"{ref_name} (reference)" if ref_name else "no reference version"
    new_label = f"{d.version} (new)"

    def rows_grid(rows, key):
        return _on_grid(rows, grid, key)

    def exp_grid(key):
        return _on_grid(exp, grid, key)

    rules = {r.name: r for r in p.rules if not r.dry_run}
    charts = []

    # error rate
    new_err = _rate(rows_grid(new, "errors"), rows_grid(new, "requests"), 100)
    ref_err = _rate(rows_grid(ref, "errors"), rows_grid(ref, "requests"), 100)
    c = Chart("Error rate (5xx) per 10 s window", "% of requests", t0, t1, span=span_note,
              markers=markers + held.get("error_rate", []),
              lines=[Line(new_label, xs, new_err, PALETTE["new"]), Line(ref_label, xs, ref_err, PALETTE["ref"])])
    level = _before_level(ref, grid, "errors", "requests", b0, b1, 100)
    if math.isfinite(level):
        c.hlines.append(HLine(level, f"reference before: {level:.2f}%", PALETTE["ref"]))
        for r in rules.values():
            if r.signal == "error_rate" and r.scope == "service":
                c.hlines.append(HLine(level + r.min_effect, f"{r.name}: +{r.min_effect:g} points -> {_action(r)}"))
    em, es = exp_grid("err_mean"), exp_grid("err_std")
    if np.isfinite(em).any():
        c.bands.append(Band("service, expected (seasonal, ±2σ)", xs, 100 * np.maximum(em - 2 * es, 0),
                            100 * (em + 2 * es)))
    charts.append(c)

    # latency
    c = Chart("Latency p50 / p95 / p99 per window", "ms", t0, t1, span=span_note,
              markers=markers + held.get("latency", []), note="dotted: p50, solid: p95, dashed: p99")
    for q, dash in (("p95", ""), ("p50", "2 2"), ("p99", "6 2")):
        c.lines.append(Line(f"{d.version} {q}", xs, rows_grid(new, q), PALETTE["new"], dash=dash,
                            legend=new_label if q == "p95" else ""))
        c.lines.append(Line(f"{ref_name or 'reference'} {q}", xs, rows_grid(ref, q), PALETTE["ref"], dash=dash,
                            legend=ref_label if q == "p95" else ""))
    level = _before_level(ref, grid, "p95", None, b0, b1)
    for r in rules.values():
        if r.signal == "latency" and math.isfinite(level) and abs(r.quantile - 0.95) < 1e-9:
            c.hlines.append(HLine(level * r.min_effect, f"{r.name}: p95 x{r.min_effect:g} of before -> {_action(r)}"))
            break
    pm, ps = exp_grid("p95_mean"), exp_grid("p95_std")
    if np.isfinite(pm).any():
        c.bands.append(Band("service p95, expected (±2σ)", xs, np.maximum(pm - 2 * ps, 0), pm + 2 * ps))
    charts.append(c)

    # volume
    c = Chart("Requests per window", "requests / 10 s", t0, t1, span=span_note,
              markers=markers + held.get("volume", []),
              lines=[Line(new_label, xs, rows_grid(new, "requests"), PALETTE["new"]),
                     Line(ref_label, xs, rows_grid(ref, "requests"), PALETTE["ref"]),
                     Line("service total", xs, rows_grid(tot, "requests"), PALETTE["total"], dash="4 3")])
    vm, vs = exp_grid("vol_mean"), exp_grid("vol_std")
    if np.isfinite(vm).any():
        c.bands.append(Band("service, expected this time of day (±2σ)", xs, np.maximum(vm - 2 * vs, 0), vm + 2 * vs))
        for r in rules.values():
            if r.signal == "volume":
                frac = 1 - r.min_effect if r.min_effect < 1 else 0.5
                c.lines.append(Line(f"{r.name}: {frac:.0%} of expected -> {_action(r)}", xs, frac * vm,
                                    PALETTE["threshold"], dash="6 3", width=1.2))
                break
    charts.append(c)

    # transactions
    new_tx = _rate(rows_grid(new, "txns"), rows_grid(new, "requests"), 100)
    ref_tx = _rate(rows_grid(ref, "txns"), rows_grid(ref, "requests"), 100)
    c = Chart("Completed transactions per 100 requests", "per 100 requests", t0, t1, span=span_note,
              markers=markers + held.get("transactions", []),
              lines=[Line(new_label, xs, new_tx, PALETTE["new"]), Line(ref_label, xs, ref_tx, PALETTE["ref"])])
    level = _before_level(ref, grid, "txns", "requests", b0, b1, 100)
    if math.isfinite(level) and level > 0:
        for r in rules.values():
            if r.signal == "transactions":
                c.hlines.append(HLine(level * (1 - r.min_effect),
                                      f"{r.name}: {r.min_effect:.0%} fewer than before -> {_action(r)}"))
                break
    charts.append(c)
    return charts


def render_deploy_charts(d: DeployView, s: Summaries, p: Pipeline) -> list[str]:
    return [render(c) for c in deploy_charts(d, s, p)]


def error_sparkline(d: DeployView, s: Summaries, p: Pipeline) -> str:
    """Error rate of the service before the deploy and of the new version after it."""
    t0, t1 = window_range(d, p, s)
    w = p.windows.width_s
    grid = np.arange(math.floor(t0 / w) * w, t1, w)
    tot, new = s.series(d.service, ALL, t0, d.ts), s.series(d.service, d.version, d.ts, t1)
    before = _rate(_on_grid(tot, grid, "errors"), _on_grid(tot, grid, "requests"), 100)
    after = _rate(_on_grid(new, grid, "errors"), _on_grid(new, grid, "requests"), 100)
    ys = np.where(grid + w <= d.ts, before, after)
    return sparkline(grid + w, ys, d.ts, DECISION_COLOUR.get(d.state, "#495057"),
                     f"error rate of {d.service}: before the deploy, then of {d.version}")
