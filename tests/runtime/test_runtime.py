"""`detector run` on a real broker: same verdicts as replay, scale-out, crashes, poison, shutdown."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from sidecar import (PARTITIONS, SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events,
                     verdicts, write_pipeline)

from detector.records import encode
from detector.replay import replay

pytestmark = pytest.mark.kafka

SCENARIO = "config_fault"  # two services, one bad deploy; verdict well before the stream ends
RATE = 0.5


@pytest.fixture
def setup(tmp_path, kafka_bootstrap, topic_prefix):
    truth, _services, sc = scenario_events(SCENARIO, tmp_path / "events.jsonl", rate_scale=RATE)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    path = write_pipeline(tmp_path, pipeline)
    procs: list[SidecarProcess] = []

    def start(name: str = "a") -> SidecarProcess:
        p = SidecarProcess(kafka_bootstrap, path, tmp_path / f"detector-{name}.log")
        procs.append(p)
        return p

    yield {"truth": truth, "sc": sc, "pipeline": pipeline, "start": start, "tmp": tmp_path,
           "bootstrap": kafka_bootstrap}
    for p in procs:
        p.close()


def _replay_verdicts(setup) -> dict[str, dict]:
    out = {}

    def emit(rec):
        d = orjson.loads(encode(rec))
        if d["type"] == "verdict":
            out[d["id"]] = d

    replay([setup["tmp"] / "events.jsonl"], setup["pipeline"], emit, partitions=PARTITIONS)
    return out


def _stream_and_kill(setup, victim: SidecarProcess, after_s: float) -> None:
    """Stream the scenario paced, SIGKILL `victim` `after_s` seconds in, finish streaming."""
    async def run():
        task = asyncio.create_task(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"], speed=150))
        await asyncio.sleep(after_s)
        victim.kill()
        await task

    asyncio.run(run())


def _same(live: dict[str, list[dict]], expected: dict[str, dict]) -> None:
    assert set(live) == set(expected)
    for vid, copies in live.items():
        for c in copies:  # duplicates after a restart must be the same verdict
            assert c == expected[vid], (c, expected[vid])


def test_live_run_gives_the_same_verdicts_as_replay(setup):
    """Streaming the scenario through Kafka and `detector run` yields exactly replay's verdicts, each once."""
    det = setup["start"]()
    det.wait_for_log("partition started cold", 30)
    asyncio.run(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"]))
    expected = _replay_verdicts(setup)
    msgs = asyncio.run(read_topic(setup["bootstrap"], setup["pipeline"].topics.alerts,
                                  lambda m: len(verdicts(m)) >= len(expected), 120))
    live = verdicts(msgs)
    _same(live, expected)
    assert all(len(c) == 1 for c in live.values())


def test_two_instances_split_partitions_and_produce_every_verdict_once(setup):
    """Two sidecars in one group share the partitions; together they emit each verdict exactly once."""
    a, b = setup["start"]("a"), setup["start"]("b")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        owned = {}
        for name, p in (("a", a), ("b", b)):
            owned[name] = {r["partition"] for r in p.log_lines() if r.get("event", "").startswith("partition ")
                           and r.get("event") != "partition released"} - \
                {r["partition"] for r in p.log_lines() if r.get("event") == "partition released"}
        if owned["a"] and owned["b"] and len(owned["a"] | owned["b"]) == PARTITIONS:
            break
        time.sleep(0.5)
    assert owned["a"] and owned["b"] and not owned["a"] & owned["b"], owned
    asyncio.run(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"]))
    expected = _replay_verdicts(setup)
    msgs = asyncio.run(read_topic(setup["bootstrap"], setup["pipeline"].topics.alerts,
                                  lambda m: len(verdicts(m)) >= len(expected), 120))
    live = verdicts(msgs)
    _same(live, expected)


def test_a_killed_instance_is_taken_over_and_no_verdict_is_lost(setup):
    """SIGKILL one of two sidecars mid-stream: the survivor restores its partitions from checkpoints."""
    a, b = setup["start"]("a"), setup["start"]("b")
    a.wait_for_log("partition started cold", 30)
    b.wait_for_log("partition started cold", 30)
    _stream_and_kill(setup, a, 5)
    expected = _replay_verdicts(setup)
    msgs = asyncio.run(read_topic(setup["bootstrap"], setup["pipeline"].topics.alerts,
                                  lambda m: set(verdicts(m)) >= set(expected), 150))
    _same(verdicts(msgs), expected)


def test_a_restart_after_sigkill_re_emits_nothing_new_and_misses_nothing(setup):
    """Kill -9 then restart: the restored sidecar repeats only ids it had produced, and finishes the job."""
    first = setup["start"]("first")
    first.wait_for_log("partition started cold", 30)
    _stream_and_kill(setup, first, 4)
    second = setup["start"]("second")
    second.wait_for_log("partition restored", 60)
    expected = _replay_verdicts(setup)
    msgs = asyncio.run(read_topic(setup["bootstrap"], setup["pipeline"].topics.alerts,
                                  lambda m: set(verdicts(m)) >= set(expected), 150))
    _same(verdicts(msgs), expected)
    anomaly_ids = [orjson.loads(m.value)["id"] for m in msgs if orjson.loads(m.value)["type"] == "anomaly"]
    replayed = []
    replay([setup["tmp"] / "events.jsonl"], setup["pipeline"],
           lambda r: replayed.append(r.id), partitions=PARTITIONS)
    assert set(anomaly_ids) <= set(replayed)


def test_poison_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on(setup):
    """Bad messages land in the DLQ with the original value and their headers; good ones are processed."""
    from aiokafka import AIOKafkaProducer

    det = setup["start"]()
    det.wait_for_log("partition started cold", 30)
    t = setup["pipeline"].topics
    poison = [b"not json", b'{"type":"request","ts":1,"service":"x"}', b'{"type":"nope"}']

    async def send():
        prod = AIOKafkaProducer(bootstrap_servers=setup["bootstrap"], enable_idempotence=False)
        await prod.start()
        try:
            for v in poison:
                await prod.send_and_wait(t.requests, v, key=b"payments")
        finally:
            await prod.stop()
        await produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"])

    asyncio.run(send())
    dlq = asyncio.run(read_topic(setup["bootstrap"], t.dlq, lambda m: len(m) >= len(poison), 60))
    assert sorted(m.value for m in dlq) == sorted(poison)
    for m in dlq:
        h = dict(m.headers)
        assert h["source.topic"] == t.requests.encode()
        assert int(h["source.offset"]) >= 0 and h["source.partition"].isdigit()
        assert h["error"]
    reasons = {dict(m.headers)["error"].decode() for m in dlq}
    assert any("not valid JSON" in r for r in reasons) and any("unknown type" in r for r in reasons)
    expected = _replay_verdicts(setup)
    asyncio.run(read_topic(setup["bootstrap"], t.alerts, lambda m: set(verdicts(m)) >= set(expected), 120))


def test_sigterm_drains_checkpoints_and_exits_cleanly_within_ten_seconds(setup):
    """SIGTERM: final checkpoint and commit, exit code 0, well within 10 s."""
    det = setup["start"]()
    det.wait_for_log("partition started cold", 30)
    asyncio.run(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"], speed=400))
    code, took_s = det.terminate(10)
    assert code == 0 and took_s < 10
    events = [r.get("event") for r in det.log_lines()]
    assert "stopping: final checkpoint and commit" in events and "stopped" in events


def test_health_ready_and_metrics_endpoints_answer(setup):
    """/healthz and /readyz answer 200 once running; /metrics speaks Prometheus text with the core's figures."""
    import urllib.request

    det = setup["start"]()
    url = det.wait_for_log("health endpoint", 30)["url"]
    det.wait_for_log("partition started cold", 30)
    asyncio.run(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"], speed=400))
    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
        assert r.status == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        if "detector_checkpoints_total" in text and 'detector_events_in_total{topic=' in text:
            break
        time.sleep(1)
    for name in ("detector_events_in_total", "detector_consumer_lag", "detector_windows_open", "detector_series",
                 "detector_checkpoint_age_seconds", "detector_records_out_total", "detector_late_events"):
        assert name in text, name
