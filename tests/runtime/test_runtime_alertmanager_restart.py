"""`detector run` with a real Alertmanager across a SIGKILL: the alert a killed sidecar posted for a verdict
takes the verdict's root cause completed after the restart, in place."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from alertmanagerproc import get_alerts, require_alertmanager, running_alertmanager
from sidecar import (SidecarProcess, pipeline_for_test, produce_scenario, scenario_events, split_scenario,
                     write_pipeline)

pytestmark = pytest.mark.kafka

# A canary rolled back at +1020 s with root cause `unknown`; the exception template that explains it
# completes the root cause (`code`) in a root_cause record at +1040 s.
SCENARIO = "late_exception_after_rollback"
DEPLOY_ID = "d-late-exc"
CUT_S = 1033  # the first sidecar reads up to here: the verdict is judged before the kill, its root_cause after
CONFIG = """
route:
  receiver: nobody
receivers:
  - name: nobody
"""


def _verdict_alert(am_url: str) -> dict | None:
    return next((a for a in get_alerts(am_url) if a["labels"].get("deploy_id") == DEPLOY_ID
                 and a["labels"]["alertname"] == "DeployRollback"), None)


def _until(what: str, check, timeout_s: float, sidecar: SidecarProcess):
    """What `check()` returns once it holds (the sidecar must stay up meanwhile)."""
    sidecar.wait_until(what, check, timeout_s)
    return check()


def test_a_root_cause_after_a_restart_completes_the_alert_posted_before_it(tmp_path, kafka_bootstrap,
                                                                           topic_prefix):
    """Verdict posted, checkpoint written, sidecar SIGKILLed and started again, the rest of the stream
    read: the restarted sidecar does not judge the verdict again (the checkpoint covers it), yet the
    alert in Alertmanager (same labels, fingerprint, start) carries the completed root cause."""
    require_alertmanager()
    truth, _services, sc = scenario_events(SCENARIO, tmp_path / "events.jsonl")
    head, tail = split_scenario(sc, CUT_S / sc.duration_s)
    base = pipeline_for_test(topic_prefix, truth["verification_s"])
    with running_alertmanager(CONFIG, tmp_path) as am_url:
        pipeline = dataclasses.replace(base, sinks=dataclasses.replace(
            base.sinks, alertmanager_url=am_url, alertmanager_state_path=str(tmp_path / "am-state.json"),
            rollback_state_path=str(tmp_path / "rollback-state.json")))
        path = write_pipeline(tmp_path, pipeline)

        first = SidecarProcess(kafka_bootstrap, path, tmp_path / "first.log")
        try:
            first.wait_for_log("partition started cold", 30)
            asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline, chunks=head))
            before = _until("the rollback's alert in Alertmanager", lambda: _verdict_alert(am_url), 120, first)
            assert before["annotations"]["root_cause"] == "unknown", "the root cause must complete after the cut"
            # The checkpoint that covers the verdict: with a 1 s interval, a count that stays put for 3 s
            # means no partition is left dirty.
            last, since = first.metric("detector_checkpoints_total"), time.monotonic()
            while time.monotonic() - since < 3.0:
                time.sleep(0.5)
                now = first.metric("detector_checkpoints_total")
                if now != last:
                    last, since = now, time.monotonic()
            assert last > 0
            first.kill()
        finally:
            first.close()

        second = SidecarProcess(kafka_bootstrap, path, tmp_path / "second.log")
        try:
            restored = second.wait_for_log("alerts_restored", 60)
            assert restored["firing"] == 1 and restored["expired"] == 0
            second.wait_for_log("partition restored", 60)
            asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline, chunks=tail))
            after = _until("the completed root cause in Alertmanager",
                           lambda: (a := _verdict_alert(am_url)) and a["annotations"]["root_cause"] == "code" and a,
                           120, second)
            completed = second.wait_for_log("alert_root_cause_completed", 10)
            assert completed["deploy_id"] == DEPLOY_ID
            judged_again = [r for r in second.log_lines() if r.get("event") == "verdict"]
        finally:
            second.close()
    assert not judged_again, "the restarted sidecar judged the verdict again: the checkpoint did not cover it"
    assert after["labels"] == before["labels"] and after["fingerprint"] == before["fingerprint"]
    assert after["startsAt"] == before["startsAt"] and after["status"]["state"] == "active"
    notes = after["annotations"]
    assert notes["root_cause_record_id"] == f"v-{DEPLOY_ID}-rc" and notes["record_id"] == f"v-{DEPLOY_ID}"
    assert "KeyError" in notes["root_cause_evidence"]
    assert "root cause: code" in notes["description"]
