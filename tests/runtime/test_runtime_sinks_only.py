"""`sinks.alerts_topic = false` leaves the other sinks as the records' only copy: the pipeline must name one,
and a checkpoint waits until they attempted every record it covers (else it is postponed, nothing committed)."""

from __future__ import annotations

import dataclasses
import pytest
from recorder import recording_server

from detector.config import ConfigError, load_pipeline, parse_pipeline
from detector.core import Core
from detector.records import Verdict
from detector.runtime.app import Sidecar
from detector.runtime.partitions import PartitionState


@pytest.mark.parametrize("extra", ["", 'rollback_command = "true"', 'webhook_url = ""'])
def test_the_alerts_topic_off_without_another_sink_fails_naming_file_and_key(extra):
    """Records would go nowhere: the error names the file, the key and the sinks that would do."""
    with pytest.raises(ConfigError, match=r"pipelines/mine\.toml: sinks\.alerts_topic must be true when no other "
                                          r"sink is set.*sinks\.webhook_url"):
        parse_pipeline(f"[sinks]\nalerts_topic = false\n{extra}\n", "pipelines/mine.toml")


@pytest.mark.parametrize("extra", ['webhook_url = "http://hooks.internal/x"',
                                   'alertmanager_url = "http://127.0.0.1:9093"',
                                   'pagerduty_routing_key = "R0UT1NGKEY0000000000000000000042"'])
def test_the_alerts_topic_off_with_another_sink_loads(extra):
    assert parse_pipeline(f"[sinks]\nalerts_topic = false\n{extra}\n", "m.toml").sinks.alerts_topic is False


@pytest.fixture
def hanging_webhook():
    """A webhook that holds every request until `release` is set."""
    with recording_server() as rec:
        rec.hanging.set()
        yield rec.url + "/hook", rec.released


async def test_a_checkpoint_waits_for_the_sinks_when_they_hold_the_only_copy(hanging_webhook):
    """A verdict the webhook has not answered yet: the checkpoint is postponed (no snapshot, the partition
    stays dirty) within one checkpoint interval; once the webhook answers, nothing holds it back."""
    url, release = hanging_webhook
    base = load_pipeline()
    pipeline = dataclasses.replace(
        base, sinks=dataclasses.replace(base.sinks, alerts_topic=False, webhook_url=url, timeout_s=30.0),
        kafka=dataclasses.replace(base.kafka, checkpoint_interval_s=1.0))
    sidecar = Sidecar(pipeline, "127.0.0.1:1", http_port=-1)  # no broker: the postponed path never needs one
    sidecar.parts[0] = st = PartitionState(Core(pipeline), {"requests": 10}, dirty=True)
    await sidecar.sinks.start()
    try:
        await sidecar._emit(Verdict(ts=1764140520.0, service="checkout", deploy_id="d-1", version="v2",
                                    decision="rollback", reasons=("errors",), root_cause="config",
                                    evidence=(), anomalies=(), started=1764140400.0, ended=1764140520.0))
        assert sidecar.out.unacked == []  # nothing was produced: the alerts topic is off
        assert await sidecar._checkpoint(0) is False
        assert st.dirty and sidecar.summary["checkpoints"] == 0
        release.set()
        assert await sidecar._sinks_delivered() is True
        assert sidecar.sinks.stats()["webhook"]["sent"] == 1
    finally:
        await sidecar.sinks.close(2)
