"""The `root_cause` record on the way out: its wire form, what each sink does with it (the webhook forwards
it, PagerDuty and the rollback hook leave it alone; Alertmanager: tests/sinks/test_alertmanager.py), and
the status page shows it over its verdict's root cause."""

from __future__ import annotations

from pathlib import Path

import orjson

from detector.config import load_pipeline
from detector.records import RootCause, encode
from detector.report.live import StatusPages
from detector.sinks import AlertmanagerSink, PagerDutySink, RollbackHook, WebhookSink

from sinkkit import EVENT_TS, Recorder, client, verdict


def _rc(deploy_id: str = "d-981", service: str = "checkout") -> RootCause:
    return RootCause(ts=EVENT_TS + 20, service=service, deploy_id=deploy_id, root_cause="code",
                     evidence=("new log template: TypeError: <*> in pay_handler line <NUM>",))


def test_the_record_is_the_contracts_root_cause():
    """Type, deterministic id derived from the verdict's, verdict id, category and evidence, as the contract shows."""
    d = orjson.loads(encode(_rc()))
    assert d == {"type": "root_cause", "id": "v-d-981-rc", "verdict_id": "v-d-981", "ts": EVENT_TS + 20,
                 "service": "checkout", "deploy_id": "d-981",
                 "root_cause": {"category": "code",
                                "evidence": ["new log template: TypeError: <*> in pay_handler line <NUM>"]}}
    assert d["verdict_id"] == verdict().id


async def test_pagerduty_and_the_rollback_hook_leave_it_alone(server: Recorder, tmp_path: Path,
                                                             rollback_cmd: tuple[str, Path]) -> None:
    """PagerDuty sends nothing for it (the Events API has no note on a dedup_key; see pagerduty.py), and the
    rollback hook never acts on it, not even when no verdict preceded it."""
    pd = PagerDutySink(routing_key="k" * 32, client=client(), url=server.url + "/v2/enqueue")
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "state.json")
    for sink in (pd, hook):
        await sink.start()
        sink.submit(verdict())
        sink.submit(_rc())
        sink.submit(_rc(deploy_id="d-7"))
        assert await sink.flush(10)
        await sink.close(1)
    assert [r.json()["event_action"] for r in server.requests] == ["trigger"]
    assert pd.stats.submitted == 1
    assert [o["verdict_id"] for o in hook.take_outcomes()] == ["v-d-981"]
    assert len(log_file.read_text().splitlines()) == 1


async def test_the_webhook_forwards_it_as_the_contract_record(server: Recorder) -> None:
    """After its verdict, and for a verdict it never saw (sent before a restart), the record goes out unchanged
    under `record`; for a verdict it saw and did not send (decision not listed) it does not."""
    sink = WebhookSink(url=server.url + "/hook", client=client(), decisions=("rollback", "page"))
    await sink.start()
    sink.submit(verdict())
    sink.submit(_rc())
    sink.submit(verdict("d-5", "ticket", service="search"))
    sink.submit(_rc(deploy_id="d-5", service="search"))
    sink.submit(_rc(deploy_id="d-7", service="orders"))
    assert await sink.flush(5)
    await sink.close(1)
    bodies = [r.json() for r in server.requests]
    assert [(b["event_action"], b["dedup_key"]) for b in bodies] == [
        ("trigger", "v-d-981"), ("root_cause", "v-d-981"), ("root_cause", "v-d-7")]
    assert bodies[1]["record"] == orjson.loads(encode(_rc()))
    assert bodies[1]["schema"] == "deploy-detector.webhook.v1" and bodies[1]["service"] == "checkout"
    assert server.requests[1].headers["idempotency-key"] == "v-d-981:root_cause"


def test_alertmanager_posts_nothing_for_a_verdict_it_does_not_hold():
    """A root_cause record whose verdict has no firing alert here changes no alert."""
    sink = AlertmanagerSink(url="http://127.0.0.1:9/", client=client())
    sink._apply(_rc(), 0.0)
    assert sink.firing == [] and sink._resolved == []


def test_the_status_page_takes_the_completed_root_cause():
    """The live page shows the verdict with the root cause the record completed; the decision stays."""
    pages = StatusPages(load_pipeline())
    pages.record(verdict())
    pages.record(_rc())
    v = pages.verdicts["d-981"]
    assert v["decision"] == "rollback" and v["root_cause"]["category"] == "code"
    assert len(pages.anomalies) == 0


def test_alertmanager_keeps_the_completed_root_cause_when_the_verdict_comes_again():
    """The same verdict submitted again after its root_cause record (a re-read after a rebalance) does not
    turn the alert's root cause back to the verdict's first guess."""
    sink = AlertmanagerSink(url="http://127.0.0.1:9/", client=client())
    sink._apply(verdict(), 0.0)
    sink._apply(_rc(), 1.0)
    sink._apply(verdict(), 2.0)
    [alert] = sink._alerts.values()
    assert alert.annotations["root_cause"] == "code" and alert.annotations["root_cause_record_id"] == "v-d-981-rc"
    assert alert.changed
