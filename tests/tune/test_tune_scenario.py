"""A simulated history with known answers, through `detector simulate --incidents` and `detector tune`.

Four services, 46 deploys ten minutes apart, round robin (each service
deploys every 40 minutes, after its 30-minute verification, and sees 12
versions: under `limits.max_versions_per_service`, beyond which new
versions fold into "other" and are no longer compared). Config changes by one author fail
4 times in 6 (every endpoint starts failing 30 % of requests), everything
else 2 times in 40. Known answers: errors-everywhere catches every incident
and fires on nothing else, smoke-failed never fires (no checks), the author
is a pattern, and no incident is missed or unmatched.
"""

from __future__ import annotations

import json

from detector.cli import main

FAILING_MALLORY = {3, 10, 17, 24}
MALLORY = FAILING_MALLORY | {31, 38}
FAILING_OTHERS = {5, 27}  # no failing deploy follows a failing one of its service (the "before" would be broken)


def _scenario() -> str:
    parts = ['name = "tune_family"\nseed = 5\nstart = 2026-11-23T08:00:00Z\nduration_s = 28500\n'
             'verification_s = 300\nmetric_interval_s = 30\n\n[traffic]\ndiurnal_amplitude = 0.1\n\n'
             ]
    for k in range(4):
        parts.append(f'[[services]]\nname = "shop{k}"\nversion = "v0"\ninstances = 2\ndb = "db{k}"\n'
                     '  [[services.endpoints]]\n  name = "GET /items"\n  rps = 2\n  error_rate = 0.002\n'
                     '  latency_median_ms = 30\n  latency_p99_ms = 200\n'
                     '  [[services.endpoints]]\n  name = "POST /cart"\n  rps = 1\n  error_rate = 0.002\n'
                     '  latency_median_ms = 60\n  latency_p99_ms = 400\n\n')
    for i in range(46):
        bad = i in FAILING_MALLORY or i in FAILING_OTHERS
        parts.append(f'\n[[deploys]]\nid = "d-{i}"\nservice = "shop{i % 4}"\nversion = "v{i // 4 + 1}"\n'
                     f'at_s = {900 + 600 * i}\nstrategy = "blue_green"\n'
                     f'change_kind = "{"config" if i in MALLORY else "code"}"\n'
                     f'author = "{"mallory" if i in MALLORY else f"dev{i % 4}"}"\n'
                     f'expect = "{"rollback" if bad else "confirmed"}"\n')
        if bad:
            parts.append('  [[deploys.faults]]\n  kind = "error_increase"\n  error_rate = 0.3\n  onset_s = 5\n')
    return "".join(parts)


def test_tune_finds_the_known_answers_of_a_simulated_history(tmp_path):
    scenario = tmp_path / "family.toml"
    scenario.write_text(_scenario())
    events, incidents, out = tmp_path / "h.jsonl", tmp_path / "inc.jsonl", tmp_path / "out"
    assert main(["simulate", str(scenario), "--out", str(events), "--incidents", str(incidents)]) == 0
    assert len(incidents.read_text().splitlines()) == 6
    assert main(["tune", "--input", str(events), "--incidents", str(incidents), "--out", str(out), "--quiet"]) == 0
    rules = {r["name"]: r for r in json.loads((out / "rules.json").read_text())["rules"]}
    assert rules["errors-everywhere"]["caught"] == 6 and rules["errors-everywhere"]["false_alarms"] == 0
    assert rules["smoke-failed"]["never_fired"]
    report = json.loads((out / "rules.json").read_text())
    assert report["missed_incidents"] == [] and report["unmatched_incidents"] == []
    patterns = json.loads((out / "patterns.json").read_text())["patterns"]
    assert {(p["dimension"], p["value"]) for p in patterns} & {("author", "mallory"), ("author_change_kind",
                                                                                       "mallory/config")}
