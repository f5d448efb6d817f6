"""The scenario suite: simulated deploys, bad and benign, through `detector replay`.

Each shipped scenario states the verdict (and where one is right, the root
cause) its deploys deserve under the shipped pipeline; the detector must
reach it. Several traffic levels of the same fault must reach it too.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from detector.config import load_pipeline
from detector.simulate.scoring import replay_scenario, score

SCENARIOS = ["config_fault", "code_fault_canary", "txn_drop", "rare_endpoint", "benign_surge", "infra_slowdown",
             "retry_storm", "morning_ramp", "pod_restart_blip", "low_traffic", "superseded", "log_only_code",
             "traffic_loss", "smoke_caught", "demo",
             "rare_endpoint_broken", "quiet_service_failing", "busy_endpoint_small", "canary_endpoint_errors",
             "shared_db_three_services", "fast_rollout_benign", "new_exception_everywhere",
             "late_exception_after_rollback"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("scenarios")


def _check(truth, records):
    s = score(truth, records)
    for r in s.results:
        assert r.got == r.expected, f"{r.deploy_id}: expected {r.expected}, got {r.got}"
        if r.expected_root_cause:
            assert r.got_root_cause == r.expected_root_cause, \
                f"{r.deploy_id}: expected root cause {r.expected_root_cause}, got {r.got_root_cause}"
    verdicts = Counter(rec["deploy_id"] for rec in records if rec["type"] == "verdict")
    assert all(n == 1 for n in verdicts.values()), verdicts
    assert set(verdicts) == {d["deploy_id"] for d in truth["deploys"]}
    return s


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_deploy_gets_the_verdict_its_scenario_expects(name, workdir):
    """Bad deploys are caught with the right decision and root cause; benign ones are not alarmed."""
    truth, records, _ = replay_scenario(name, workdir)
    _check(truth, records)


@pytest.mark.parametrize("name, rate_scale", [("config_fault", 0.25), ("config_fault", 3.0),
                                              ("code_fault_canary", 0.5), ("infra_slowdown", 2.0),
                                              ("pod_restart_blip", 0.3)])
def test_verdicts_hold_at_other_traffic_levels(name, rate_scale, workdir):
    """The same fault (or the same benign disturbance) gets the same verdict at lower and higher traffic."""
    truth, records, _ = replay_scenario(name, workdir, rate_scale=rate_scale)
    _check(truth, records)


def test_anomalies_blamed_on_shared_infrastructure_carry_no_deploy(workdir):
    """During a shared database slowdown, anomalies go out without a deploy id and with the evidence."""
    _truth, records, _ = replay_scenario("infra_slowdown", workdir)
    blamed = [r for r in records if r["type"] == "anomaly" and r["detail"].get("shared")]
    assert blamed, "the slowdown should be visible as anomalies"
    assert all(r["deploy_id"] is None for r in blamed)
    verdict = next(r for r in records if r["type"] == "verdict")
    assert verdict["root_cause"]["category"] == "data_or_infra"


def test_a_dry_run_rule_is_reported_but_never_acted_on(workdir):
    """With the rollback rule in dry-run mode its anomaly is still reported, marked, and decides nothing:
    the new log template's ticket goes out after its hold, and the page rule holding later escalates it."""
    base = load_pipeline()
    rules = tuple(dataclasses.replace(r, dry_run=True) if r.action == "rollback" or r.critical_action == "rollback"
                  else r for r in base.rules)
    truth, records, _ = replay_scenario("config_fault", workdir, pipeline=dataclasses.replace(base, rules=rules))
    dry = [r for r in records if r["type"] == "anomaly" and r["detail"].get("dry_run")]
    assert dry and all(r["severity"] == "info" for r in dry)
    verdict = next(r for r in records if r["type"] == "verdict")
    assert verdict["decision"] == "ticket"
    escalations = [r for r in records if r["type"] == "anomaly" and "escalates" in r["detail"]]
    assert [(e["detail"]["escalates"], e["detail"]["action"], e["severity"]) for e in escalations] == \
        [(verdict["id"], "page", "critical")]
    assert escalations[0]["ts"] > verdict["ts"]


def test_replaying_the_same_input_twice_gives_byte_identical_output(workdir, tmp_path):
    """`detector replay` is deterministic: same events, same bytes out."""
    _truth, _records, events = replay_scenario("code_fault_canary", workdir)
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}.jsonl"
        subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--input", str(events), "--output", str(out),
                        "--quiet"], check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b'"type":"verdict"') >= 1
    assert Path(events).stat().st_size > 0


def test_a_deploy_event_arriving_late_gets_the_same_verdict(workdir, tmp_path):
    """Event time, not arrival, decides: a deploy event delivered a minute late changes no record."""
    import orjson

    from detector.simulate.scoring import pipeline_for
    from detector.records import encode
    from detector.replay import replay

    truth, records, events = replay_scenario("config_fault", workdir)
    lines = events.read_bytes().splitlines()
    idx = next(i for i, ln in enumerate(lines) if b'"type":"deploy"' in ln)
    deploy_ts = orjson.loads(lines[idx])["ts"]
    later = next(i for i, ln in enumerate(lines) if orjson.loads(ln)["ts"] > deploy_ts + 60)
    moved = lines[:idx] + lines[idx + 1:later] + [lines[idx]] + lines[later:]
    late_file = tmp_path / "late.jsonl"
    late_file.write_bytes(b"\n".join(moved) + b"\n")
    late_records = []
    replay([late_file], pipeline_for(truth), lambda r: late_records.append(orjson.loads(encode(r))))
    assert [r for r in late_records if r["type"] == "verdict"] == [r for r in records if r["type"] == "verdict"]
    assert sorted(r["id"] for r in late_records) == sorted(r["id"] for r in records)


def test_baselines_learnt_on_history_warm_start_a_new_core(workdir, tmp_path):
    """A replay saves its baselines; a core started with [baselines] warm_start expects traffic at once."""
    import dataclasses

    import numpy as np

    from detector.config import load_pipeline
    from detector.core import Core
    from detector.replay import replay

    _truth, _records, events = replay_scenario("morning_ramp", workdir)
    saved = tmp_path / "baselines.npz"
    replay([events], load_pipeline(), lambda r: None, save_baselines=saved)
    base = load_pipeline()
    warm = Core(dataclasses.replace(base, baselines=dataclasses.replace(base.baselines, warm_start=str(saved))))
    cold = Core(base)
    sid_w = warm.interner.intern("search", key=True)
    sid_c = cold.interner.intern("search", key=True)
    ts = [1795681200.0 + 10 * i for i in range(3)]
    _mean, _var, ready = warm.seasonal.expected_volume(sid_w, ts)
    assert ready and np.isfinite(_mean) and _mean > 0
    assert not cold.seasonal.expected_volume(sid_c, ts)[2]


def test_smoke_checks_catch_a_deploy_before_any_traffic_signal_could(workdir, tmp_path):
    """smoke_caught: the smoke rule rolls back within a minute of the deploy, sooner than the shortest traffic
    rule's span; the same events without their check results get no rollback at all."""
    import orjson

    from detector.simulate.scoring import pipeline_for
    from detector.records import encode
    from detector.replay import replay

    truth, records, events = replay_scenario("smoke_caught", workdir)
    deploy = next(d for d in truth["deploys"] if d["deploy_id"] == "d-smoke-1")
    verdict = next(r for r in records if r["type"] == "verdict" and r["deploy_id"] == "d-smoke-1")
    traffic_rules = [r.duration_s for r in load_pipeline().rules if r.signal not in ("smoke",)]
    assert verdict["decision"] == "rollback"
    assert verdict["ts"] - deploy["started_ts"] < min(traffic_rules)
    assert "smoke check 'refund-smoke' failed" in verdict["reasons"][0]
    without = tmp_path / "no-checks.jsonl"
    without.write_bytes(b"".join(ln for ln in events.read_bytes().splitlines(keepends=True)
                                 if b'"type":"check"' not in ln))
    out = []
    replay([without], pipeline_for(truth), lambda r: out.append(orjson.loads(encode(r))))
    blind = next(r for r in out if r["type"] == "verdict" and r["deploy_id"] == "d-smoke-1")
    # Traffic alone gives a ticket, no sooner than the shortest rule's span (it waits for the
    # ticket's hold only while a page or rollback rule is in sight).
    assert blind["decision"] == "ticket" and blind["ts"] - deploy["started_ts"] >= min(traffic_rules)
