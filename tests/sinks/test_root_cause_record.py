"""The `root_cause` record on the way out: its wire form, sinks that page leave it alone, and the
status page shows it over its verdict's root cause."""

from __future__ import annotations

import orjson

from detector.config import load_pipeline
from detector.records import RootCause, encode
from detector.report.live import StatusPages
from detector.sinks import AlertmanagerSink, PagerDutySink, WebhookSink

from sinkkit import EVENT_TS, client, verdict


def _rc() -> RootCause:
    return RootCause(ts=EVENT_TS + 20, service="checkout", deploy_id="d-981", root_cause="code",
                     evidence=("new log template: TypeError: <*> in pay_handler line <NUM>",))


def test_the_record_is_the_contracts_root_cause():
    """Type, deterministic id derived from the verdict's, verdict id, category and evidence, as the contract shows."""
    d = orjson.loads(encode(_rc()))
    assert d == {"type": "root_cause", "id": "v-d-981-rc", "verdict_id": "v-d-981", "ts": EVENT_TS + 20,
                 "service": "checkout", "deploy_id": "d-981",
                 "root_cause": {"category": "code",
                                "evidence": ["new log template: TypeError: <*> in pay_handler line <NUM>"]}}
    assert d["verdict_id"] == verdict().id


def test_sinks_that_page_or_alert_do_not_fire_on_it():
    """Alertmanager, PagerDuty and the webhook queue nothing for a root_cause record (the verdict paged)."""
    sinks = [AlertmanagerSink(url="http://127.0.0.1:9/", client=client()),
             PagerDutySink(routing_key="k" * 32, client=client()),
             WebhookSink(url="http://127.0.0.1:9/hook", client=client())]
    for sink in sinks:
        assert sink.items_for(_rc()) == [], type(sink).__name__


def test_the_status_page_takes_the_completed_root_cause():
    """The live page shows the verdict with the root cause the record completed; the decision stays."""
    pages = StatusPages(load_pipeline())
    pages.record(verdict())
    pages.record(_rc())
    v = pages.verdicts["d-981"]
    assert v["decision"] == "rollback" and v["root_cause"]["category"] == "code"
    assert len(pages.anomalies) == 0
