"""`detector tune --bootstrap-servers`: a range of the topics gives the same outputs as the same events in a file."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sidecar import pipeline_for_test, scenario_events, write_pipeline

from detector.cli import main
from detector.runtime.topics import ensure_topics
from detector.simulate.incidents import incidents_from_truth

pytestmark = pytest.mark.kafka

OUTPUTS = ("rules.json", "patterns.json", "delivery.json", "tuned.toml", "tuned.diff")


async def _produce(bootstrap: str, rows: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, value, key in rows]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _groups(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return [g[0] for g in await admin.list_consumer_groups()]
    finally:
        await admin.close()


def _ts(line: bytes) -> float:
    return float(orjson.loads(line)["ts"])


def test_a_topic_range_tunes_like_the_same_events_in_a_file(tmp_path, kafka_bootstrap, topic_prefix):
    """Events before --since and after --until (and incidents past the match window) are left out, every
    other event of every input topic and of the incidents topic is read once, and no group is joined."""
    truth, _, _ = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    path = write_pipeline(tmp_path, pipeline)
    t = pipeline.topics
    lines = [ln for ln in (tmp_path / "events.jsonl").read_bytes().splitlines() if ln.strip()]
    first, last = _ts(lines[0]), max(_ts(ln) for ln in lines)
    since, until = first + 60, last - 60          # the range cuts both ends of the history
    incidents = [orjson.dumps(i) for i in incidents_from_truth(truth)]
    assert incidents
    stray = orjson.dumps({"type": "incident", "ts": until + 2 * 86400, "service": "payments",
                          "incident_id": "much-later"})
    topic_of = {"request": t.requests, "log": t.logs, "metric": t.metrics, "deploy": t.deploys, "check": t.checks}
    rows = [(topic_of[orjson.loads(ln)["type"]], ln, orjson.loads(ln)["service"].encode()) for ln in lines]
    rows += [(t.incidents, v, b"payments") for v in [*incidents, stray]]
    asyncio.run(ensure_topics(kafka_bootstrap, {name: 4 for name in [*topic_of.values(), t.incidents]}, 4))
    asyncio.run(_produce(kafka_bootstrap, rows))

    ref_events = tmp_path / "ref-events.jsonl"
    ref_events.write_bytes(b"".join(v + b"\n" for v in sorted(
        (ln for ln in lines if since <= _ts(ln) <= until), key=lambda v: (_ts(v), v))))
    ref_incidents = tmp_path / "ref-incidents.jsonl"
    ref_incidents.write_bytes(b"".join(v + b"\n" for v in sorted(incidents, key=lambda v: (_ts(v), v))))
    from_file, from_kafka = tmp_path / "file", tmp_path / "kafka"
    common = ["--pipeline", str(path), "--no-verify", "--quiet"]
    assert main(["tune", "--input", str(ref_events), "--incidents", str(ref_incidents), "--out", str(from_file),
                 *common]) == 0
    assert main(["tune", "--bootstrap-servers", kafka_bootstrap, "--since", str(since), "--until", str(until),
                 "--out", str(from_kafka), *common]) == 0

    assert (from_kafka / "cache" / "history-events.jsonl").read_bytes() == ref_events.read_bytes()
    for name in OUTPUTS:
        assert (from_kafka / name).read_text() == (from_file / name).read_text(), name
    rules = json.loads((from_kafka / "rules.json").read_text())
    assert sum(r["caught"] for r in rules["rules"]) >= 1   # the config fault's incident reached its deploy
    assert rules["unmatched_incidents"] == []              # the stray incident was outside the range
    assert not any(g.startswith(topic_prefix) for g in asyncio.run(_groups(kafka_bootstrap)))


def test_a_missing_incidents_topic_is_no_error_and_is_not_created(tmp_path, kafka_bootstrap, topic_prefix):
    truth, _, _ = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.2)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    path = write_pipeline(tmp_path, pipeline)
    t = pipeline.topics
    lines = [ln for ln in (tmp_path / "events.jsonl").read_bytes().splitlines() if ln.strip()]
    deploys = [ln for ln in lines if orjson.loads(ln)["type"] == "deploy"]
    asyncio.run(ensure_topics(kafka_bootstrap, {t.deploys: 2}, 2))
    asyncio.run(_produce(kafka_bootstrap, [(t.deploys, v, b"k") for v in deploys]))
    out = tmp_path / "out"
    assert main(["tune", "--bootstrap-servers", kafka_bootstrap, "--since", "0", "--until", "4000000000",
                 "--out", str(out), "--pipeline", str(path), "--no-verify", "--quiet"]) == 0
    delivery = json.loads((out / "delivery.json").read_text())
    assert delivery["overall"]["deploys"] == len({orjson.loads(v)["deploy_id"] for v in deploys})

    async def topics() -> set[str]:
        c = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await c.start()
        try:
            return await c.topics()
        finally:
            await c.stop()

    assert t.incidents not in asyncio.run(topics())


def test_kafka_range_arguments_are_checked(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["tune", "--bootstrap-servers", "localhost:1", "--out", out]) == 2
    assert "needs --since and --until" in capsys.readouterr().err
    assert main(["tune", "--bootstrap-servers", "localhost:1", "--since", "yesterday", "--until", "5",
                 "--out", out]) == 2
    assert "--since 'yesterday': expected Unix seconds or an RFC 3339 time" in capsys.readouterr().err
    assert main(["tune", "--out", out]) == 2
    assert "no history" in capsys.readouterr().err
