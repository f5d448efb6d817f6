"""`detector run` through broker outages: a frozen broker, a broker that refuses connections,
and a second instance joining and leaving mid-stream. The same process carries on by itself,
loses nothing, emits each verdict once, and its verdicts equal `detector replay`'s.

These tests own their broker (they freeze it), so they always start an embedded one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson
import pytest
from realparts import missing
from sidecar import (PARTITIONS, SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events,
                     split_scenario, verdicts, write_pipeline)
from tcpproxy import TcpProxy

from detector.records import encode
from detector.replay import replay

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SCENARIO = "config_fault"
RATE = 0.5
# The pause of the issue: longer than aiokafka's request timeout (40 s), the sidecar's
# outer operation timeout (10 s here) and the group session (2 s here), so every
# request in flight hangs, times out, reconnects to a broker that still does not
# answer, and the group membership expires.
FREEZE_S = 60.0
# A refused connection fails at once, so the trap is the backoff and the expired
# session, not a hang: 30 s covers the backoff reaching its 16-30 s steps and
# fifteen sessions.
REFUSE_S = 30.0


def _embedded(port: int = 0, advertised_port: int | None = None):
    from detector.runtime.embedded import EmbeddedBroker, EmbeddedBrokerError, resolve_broker_binary

    try:
        resolve_broker_binary()
    except EmbeddedBrokerError as exc:
        missing(f"these tests freeze their own embedded broker: {exc}")
    return EmbeddedBroker(port, advertised_port=advertised_port)


@pytest.fixture
def outage(tmp_path, topic_prefix):
    truth, _services, sc = scenario_events(SCENARIO, tmp_path / "events.jsonl", rate_scale=RATE)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    path = write_pipeline(tmp_path, pipeline)
    procs: list[SidecarProcess] = []
    env: dict = {"truth": truth, "sc": sc, "pipeline": pipeline, "tmp": tmp_path}

    def start(bootstrap: str, name: str = "a") -> SidecarProcess:
        p = SidecarProcess(bootstrap, path, tmp_path / f"detector-{name}.log")
        procs.append(p)
        return p

    env["start"] = start
    yield env
    for p in procs:
        p.close()


def _replay_verdicts(env) -> dict[str, dict]:
    out = {}

    def emit(rec):
        d = orjson.loads(encode(rec))
        if d["type"] == "verdict":
            out[d["id"]] = d

    replay([env["tmp"] / "events.jsonl"], env["pipeline"], emit, partitions=PARTITIONS)
    return out


def _check_verdicts(env, bootstrap: str, timeout_s: float = 150.0) -> None:
    """Every verdict of the replay arrives, equal to it, exactly once."""
    expected = _replay_verdicts(env)
    assert expected, "the scenario must produce verdicts for this test to mean anything"
    msgs = asyncio.run(read_topic(bootstrap, env["pipeline"].topics.alerts,
                                  lambda m: set(verdicts(m)) >= set(expected), timeout_s, settle_s=3.0))
    live = verdicts(msgs)
    assert set(live) == set(expected)
    for vid, copies in live.items():
        assert len(copies) == 1, f"verdict {vid} emitted {len(copies)} times"
        assert copies[0] == expected[vid], (copies[0], expected[vid])


def _ready(det: SidecarProcess) -> bool:
    return det.http("/readyz")[0] == 200


def test_a_frozen_broker_is_waited_out_and_nothing_is_lost(outage):
    """SIGSTOP the broker for 60 s while the sidecar reads: /readyz turns 503, and after SIGCONT the
    same process carries on, every verdict arrives once and equals replay's."""
    with _embedded() as broker:
        det = outage["start"](broker.bootstrap)
        det.wait_for_log("partition started cold", 30)
        head, tail = split_scenario(outage["sc"], 0.4)
        asyncio.run(produce_scenario(outage["sc"], broker.bootstrap, outage["pipeline"], chunks=head))
        det.wait_until("first events read", lambda: det.metric("detector_events_in_total") > 0, 60)
        t0 = time.monotonic()
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            det.wait_until("/readyz says not ready", lambda: not _ready(det), 20)
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - t0)))
            assert not _ready(det)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        det.wait_until("/readyz says ready again", lambda: _ready(det), 60)
        asyncio.run(produce_scenario(outage["sc"], broker.bootstrap, outage["pipeline"], chunks=tail))
        _check_verdicts(outage, broker.bootstrap)
        assert det.proc.poll() is None, "the sidecar must carry on by itself, not exit"
        assert any(r.get("event") == "broker unreachable" for r in det.log_lines())


def test_a_broker_refusing_connections_is_waited_out_and_nothing_is_lost(outage):
    """Every connection refused for 30 s mid-stream (a stopped broker): /readyz turns 503, and when the port
    answers again the same process carries on, every verdict arrives once and equals replay's."""
    from detector.runtime.embedded import _free_loopback_port

    port = _free_loopback_port()
    with TcpProxy(port) as proxy, _embedded(port, advertised_port=proxy.port) as broker:
        det = outage["start"](broker.bootstrap)  # the proxy's address: every client connection goes through it
        det.wait_for_log("partition started cold", 30)
        head, tail = split_scenario(outage["sc"], 0.4)
        asyncio.run(produce_scenario(outage["sc"], broker.bootstrap, outage["pipeline"], chunks=head))
        det.wait_until("first events read", lambda: det.metric("detector_events_in_total") > 0, 60)
        t0 = time.monotonic()
        proxy.refuse()
        try:
            det.wait_until("/readyz says not ready", lambda: not _ready(det), 20)
            time.sleep(max(0.0, REFUSE_S - (time.monotonic() - t0)))
            assert not _ready(det)
        finally:
            proxy.accept()
        det.wait_until("/readyz says ready again", lambda: _ready(det), 60)
        asyncio.run(produce_scenario(outage["sc"], broker.bootstrap, outage["pipeline"], chunks=tail))
        _check_verdicts(outage, broker.bootstrap)
        assert det.proc.poll() is None, "the sidecar must carry on by itself, not exit"


def test_a_second_instance_joining_and_leaving_mid_stream_loses_and_repeats_nothing(outage):
    """A second sidecar joins while the first is busy (rebalance with batches in flight), takes
    partitions over, then leaves with SIGTERM: the first takes them back from checkpoints, and
    every verdict arrives once and equals replay's."""
    with _embedded() as broker:
        a = outage["start"](broker.bootstrap, "a")
        a.wait_for_log("partition started cold", 30)

        async def stream_while_joining_and_leaving() -> None:
            task = asyncio.create_task(produce_scenario(outage["sc"], broker.bootstrap, outage["pipeline"],
                                                        speed=100))
            await asyncio.sleep(2.0)
            b = outage["start"](broker.bootstrap, "b")
            await asyncio.to_thread(b.wait_for_log, "partition restored", 60)  # from a's checkpoint on revoke
            await asyncio.to_thread(a.wait_for_log, "partition released", 30)
            await asyncio.sleep(2.0)
            code, _ = await asyncio.to_thread(b.terminate, 15)
            assert code == 0
            await task

        asyncio.run(stream_while_joining_and_leaving())
        a.wait_for_log("partition restored", 60)
        _check_verdicts(outage, broker.bootstrap)
        assert a.proc.poll() is None
