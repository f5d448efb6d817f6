"""Rule effectiveness, matching, lead times and threshold tuning on a history with known answers.

The records are what a replay writes (anomaly records carry the rule in
detail.rule); the history has one rule that catches every incident, one that
never fires, one that fires (with a page) only on deploys without incidents.
"""

from __future__ import annotations

import tomllib

from detector.ingest.columns import DeployEvent, IncidentEvent
from detector.config import load_pipeline, parse_pipeline
from detector.tune.effectiveness import delivery_report, lead_times, rules_report
from detector.tune.history import History, match, merge_incidents
from detector.tune.outcomes import outcomes
from detector.tune.policy import tune

T0 = 1_795_680_000.0


def _anomaly(dep, rule, ts, action, effect=10.0):
    return {"type": "anomaly", "deploy_id": dep, "ts": ts, "signal": "error_rate",
            "detail": {"rule": rule, "action": action, "effect": effect, "dry_run": False}}


def _verdict(dep, decision, ts):
    return {"type": "verdict", "deploy_id": dep, "decision": decision, "ts": ts, "reasons": []}


def _world(n: int = 30):
    """Deploy i every hour; every 3rd fails (incident 15 min later, no deploy_id). 'errors-everywhere'
    fires 60 s after every failing deploy; 'traffic-lost' (a page) fires on every 5th benign deploy."""
    deploys, incidents, records = [], [], []
    for i in range(n):
        ts = T0 + 3600 * i
        dep = f"d{i}"
        deploys.append(DeployEvent(pos=i, ts=ts, service="svc", deploy_id=dep, version=f"v{i}",
                                   author="ann" if i % 2 else "bob", labels=(("team", "pay"),)))
        if i % 3 == 0:
            incidents.append(IncidentEvent(pos=i, ts=ts + 900, service="svc", incident_id=f"inc{i}"))
            incidents.append(IncidentEvent(pos=i, ts=ts + 2000, service="svc", incident_id=f"inc{i}",
                                           status="resolved"))
            records += [_anomaly(dep, "errors-everywhere", ts + 60, "rollback"), _verdict(dep, "rollback", ts + 60)]
        elif i % 5 == 0:
            records += [_anomaly(dep, "traffic-lost", ts + 120, "page", effect=0.6), _verdict(dep, "page", ts + 120)]
        else:
            records.append(_verdict(dep, "confirmed", ts + 1800))
    # one incident on a deploy the detector confirmed, one long after any deploy, one of an unknown service
    incidents.append(IncidentEvent(pos=99, ts=T0 + 3600 * 1 + 600, service="svc", incident_id="missed"))
    incidents.append(IncidentEvent(pos=100, ts=T0 + 3600 * n + 5 * 86400, service="svc", incident_id="late"))
    incidents.append(IncidentEvent(pos=101, ts=T0 + 100, service="other", incident_id="nobody"))
    h = History(deploys=deploys, incidents=merge_incidents(incidents), first_ts=T0, last_ts=T0 + 3600 * n)
    match(h, 86400)
    return h, records


def test_incidents_are_merged_and_matched_to_the_latest_deploy_within_the_window():
    h, _ = _world()
    assert h.deploy_of["inc3"] == "d3" and h.deploy_of["missed"] == "d1"
    assert {i.incident_id for i in h.unmatched} == {"late", "nobody"}
    inc3 = next(i for i in h.incidents if i.incident_id == "inc3")
    assert inc3.ts == T0 + 3 * 3600 + 900 and inc3.resolved_ts == T0 + 3 * 3600 + 2000


def test_rules_report_known_answers():
    h, records = _world()
    rep = rules_report(load_pipeline(), h, outcomes(records))
    by = {r["name"]: r for r in rep["rules"]}
    assert by["errors-everywhere"]["caught"] == 10 and by["errors-everywhere"]["false_alarms"] == 0
    assert by["errors-everywhere"]["median_s_to_fire"] == 60.0
    assert len(by["errors-everywhere"]["caught_first"]) == 10
    assert by["traffic-lost"]["caught"] == 0 and by["traffic-lost"]["false_alarms"] == 4
    assert by["errors-sustained"]["never_fired"] and not by["errors-everywhere"]["never_fired"]
    assert rep["missed_incidents"] == [{"incident_id": "missed", "deploy_id": "d1", "service": "svc",
                                        "decision": "confirmed", "anomalies_seen": False}]
    assert {u["incident_id"] for u in rep["unmatched_incidents"]} == {"late", "nobody"}


def test_lead_times_and_delivery_figures():
    h, records = _world()
    outs = outcomes(records)
    leads = {x["incident_id"]: x for x in lead_times(h, outs)}
    assert leads["inc3"]["when"] == "before" and leads["inc3"]["lead_s"] == 840.0
    assert leads["missed"]["when"] == "never"
    d = delivery_report(h, outs)
    svc = d["services"]["svc"]
    assert svc["deploys"] == 30 and svc["change_failure_rate"] == round(11 / 30, 4)
    assert svc["median_time_to_restore_s"] == 1100.0 and svc["unresolved_incidents"] == 1
    assert d["teams"]["pay"]["deploys"] == 30


def test_tuning_removes_false_pages_and_keeps_every_catch_out_of_sample():
    h, records = _world()
    outs = outcomes(records)
    per_deploy = {}
    for dep in h.deploy_of.values():
        per_deploy[dep] = per_deploy.get(dep, 0) + 1
    res = tune(load_pipeline(), [d.deploy_id for d in h.deploys], per_deploy, outs)
    for split in ("in_sample", "out_of_sample"):
        assert res[split]["default"]["false_rollback_or_page"] > 0
        assert res[split]["tuned"]["false_rollback_or_page"] == 0
        assert res[split]["tuned"]["caught"] == res[split]["default"]["caught"]
    loo = res["leave_one_incident_out"]
    assert loo["folds"] == 11  # one per deploy with an incident: the ten caught ones and d1 (missed)
    for split in ("in_sample", "out_of_sample"):
        assert loo[split]["default"]["deploys"] == loo[split]["tuned"]["deploys"] == 30   # each held out once
        assert loo[split]["default"]["false_rollback_or_page"] == 4
        assert loo[split]["tuned"]["false_rollback_or_page"] == 0
        assert loo[split]["tuned"]["caught"] == loo[split]["default"]["caught"] == 10
    assert any(line.startswith("rules.traffic-lost.") for line in res["diff"])
    assert not any(line.startswith("rules.errors-everywhere.") for line in res["diff"])
    tuned = parse_pipeline(res["toml"], "tuned.toml")
    rule = next(r for r in tuned.rules if r.name == "traffic-lost")
    assert rule.min_effect > 0.6 or rule.action == "ticket"
    assert tomllib.loads(res["toml"])


def test_report_page_shows_rules_missed_incidents_and_tuning_without_external_resources():
    from zoneinfo import ZoneInfo

    from detector.tune import html
    from detector.tune.patterns import find_patterns

    h, records = _world()
    outs = outcomes(records)
    per_deploy = {}
    for dep in h.deploy_of.values():
        per_deploy[dep] = per_deploy.get(dep, 0) + 1
    rules = rules_report(load_pipeline(), h, outs)
    page = html.render(rules, find_patterns(h.deploys, set(h.deploy_of.values()), ZoneInfo("UTC")),
                       delivery_report(h, outs), tune(load_pipeline(), [d.deploy_id for d in h.deploys], per_deploy,
                                                      outs),
                       {"d1": "no anomaly; verdict: no rule held"})
    assert page.count("<svg") == 5
    assert "<td>missed</td><td>d1</td><td>svc</td><td>confirmed</td><td>no anomaly; verdict: no rule held</td>" in page
    assert "rules.traffic-lost." in page and "errors-everywhere" in page
    assert "src=" not in page and "href=" not in page and "<script" not in page
