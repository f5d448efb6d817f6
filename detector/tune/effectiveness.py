"""rules.json and delivery.json: which rules catch what, and the delivery figures teams track."""

from __future__ import annotations

import statistics
from collections import defaultdict

from detector.ingest.columns import DeployEvent
from detector.config import Pipeline
from detector.tune.history import History
from detector.tune.outcomes import Outcome

ACTING = ("rollback", "page", "ticket")


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def rules_report(pipeline: Pipeline, h: History, outs: dict[str, Outcome]) -> dict:
    failed = {dep for dep in h.deploy_of.values()}
    starts = {d.deploy_id: d.ts for d in h.deploys}
    rows = {r.name: {"name": r.name, "signal": r.signal, "action": r.action, "dry_run": r.dry_run,
                     "caught": 0, "false_alarms": 0, "delays": [], "earliest": []} for r in pipeline.rules}
    for dep, o in outs.items():
        if dep not in starts:
            continue
        for f in o.firings.values():
            row = rows.get(f.rule)
            if row is None:
                continue  # a rule of another pipeline (a stale cache cannot happen: the key holds the pipeline)
            row["caught" if dep in failed else "false_alarms"] += 1
            row["delays"].append(f.ts - starts[dep])
    for inc in h.incidents:
        dep = h.deploy_of.get(inc.incident_id)
        o = outs.get(dep) if dep else None
        if o is None or not o.firings:
            continue
        first = min(f.ts for f in o.firings.values())
        at_first = [f.rule for f in o.firings.values() if f.ts == first]
        if len(at_first) == 1 and at_first[0] in rows:
            rows[at_first[0]]["earliest"].append(inc.incident_id)
    out = []
    for row in rows.values():
        delays = row.pop("delays")
        row["never_fired"] = row["caught"] + row["false_alarms"] == 0
        row["median_s_to_fire"] = _median(delays)
        row["caught_first"] = row.pop("earliest")
        out.append(row)
    missed = []
    for inc in h.incidents:
        dep = h.deploy_of.get(inc.incident_id)
        if dep is None:
            continue
        o = outs.get(dep)
        decision = o.decision if o else None
        if decision in ("confirmed", "inconclusive", None):
            missed.append({"incident_id": inc.incident_id, "deploy_id": dep, "service": inc.service,
                           "decision": decision or "no verdict",
                           "anomalies_seen": o.first_anomaly_ts is not None if o else False})
    return {"rules": out, "missed_incidents": missed,
            "unmatched_incidents": [{"incident_id": i.incident_id, "service": i.service, "ts": i.ts}
                                    for i in h.unmatched]}


def lead_times(h: History, outs: dict[str, Outcome]) -> list[dict]:
    """Per matched incident: when the detector spoke for its deploy (an acting verdict, else the
    first anomaly) relative to the incident opening; positive = before."""
    rows = []
    for inc in h.incidents:
        dep = h.deploy_of.get(inc.incident_id)
        if dep is None:
            continue
        o = outs.get(dep)
        signal_ts, what = None, None
        if o is not None and o.decision in ACTING:
            signal_ts, what = o.verdict_ts, f"verdict {o.decision}"
        elif o is not None and o.first_anomaly_ts is not None:
            signal_ts, what = o.first_anomaly_ts, "first anomaly"
        if signal_ts is None:
            rows.append({"incident_id": inc.incident_id, "deploy_id": dep, "when": "never", "lead_s": None,
                         "signal": None})
        else:
            lead = inc.ts - signal_ts
            rows.append({"incident_id": inc.incident_id, "deploy_id": dep, "when": "before" if lead > 0 else "after",
                         "lead_s": round(lead, 3), "signal": what})
    return rows


def _group_figures(deploys: list[DeployEvent], h: History, leads: dict[str, dict], days: float) -> dict:
    ids = {d.deploy_id for d in deploys}
    incs = [i for i in h.incidents if h.deploy_of.get(i.incident_id) in ids]
    failed = {h.deploy_of[i.incident_id] for i in incs}
    restore = [i.resolved_ts - i.ts for i in incs if i.resolved_ts is not None and i.resolved_ts >= i.ts]
    lt = [leads[i.incident_id] for i in incs]
    return {
        "deploys": len(deploys),
        "deploys_per_day": round(len(deploys) / days, 3),
        "change_failure_rate": round(len(failed) / len(deploys), 4) if deploys else None,
        "incidents": len(incs),
        "median_time_to_restore_s": _median(restore),
        "unresolved_incidents": sum(1 for i in incs if i.resolved_ts is None),
        "detector_before_incident": sum(1 for x in lt if x["when"] == "before"),
        "detector_after_incident": sum(1 for x in lt if x["when"] == "after"),
        "detector_never": sum(1 for x in lt if x["when"] == "never"),
        "median_lead_s": _median([x["lead_s"] for x in lt if x["lead_s"] is not None]),
    }


def delivery_report(h: History, outs: dict[str, Outcome], team_label: str = "team") -> dict:
    days = max((h.last_ts - h.first_ts) / 86400.0, 1 / 24)
    leads = {x["incident_id"]: x for x in lead_times(h, outs)}
    by_service, by_team = defaultdict(list), defaultdict(list)
    for d in h.deploys:
        by_service[d.service].append(d)
        team = dict(d.labels).get(team_label)
        if team:
            by_team[team].append(d)
    return {
        "history_days": round(days, 3),
        "overall": _group_figures(h.deploys, h, leads, days),
        "services": {s: _group_figures(ds, h, leads, days) for s, ds in sorted(by_service.items())},
        "teams": {t: _group_figures(ds, h, leads, days) for t, ds in sorted(by_team.items())},
        "team_label": team_label,
        "lead_times": list(leads.values()),
    }
