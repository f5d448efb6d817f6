"""The live fleet topic: sidecars that split the services judge as one sidecar and as replay do.

Scenario `shared_db_three_services`: a benign deploy of `ledger` just before a
shared database slows down `ledger`, `statements` and `limits`. Over 4
partitions `limits` lands on 0, `ledger` on 2, `statements` on 3 (1 is empty):
two sidecars in one group (range assignor: 0-1 and 2-3) each see part of the
incident, and only the fleet topic tells them it is shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time

import orjson
import pytest
from sidecar import (PARTITIONS, SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events,
                     verdicts, write_pipeline)

from detector.ingest.partitioning import partition_of
from detector.records import encode
from detector.replay import replay

pytestmark = pytest.mark.kafka

SCENARIO = "shared_db_three_services"
RATE = 0.5


def _pipeline(topic_prefix, truth, max_wait_s: float):
    base = pipeline_for_test(topic_prefix, truth["verification_s"])
    return dataclasses.replace(base, fleet=dataclasses.replace(base.fleet, max_wait_s=max_wait_s))


@pytest.fixture
def setup(tmp_path, kafka_bootstrap, topic_prefix):
    truth, services, sc = scenario_events(SCENARIO, tmp_path / "events.jsonl", rate_scale=RATE)
    procs: list[SidecarProcess] = []
    env = {"truth": truth, "services": services, "sc": sc, "tmp": tmp_path, "bootstrap": kafka_bootstrap}

    def configure(max_wait_s: float = 30.0):
        env["pipeline"] = _pipeline(topic_prefix, truth, max_wait_s)
        env["path"] = write_pipeline(tmp_path, env["pipeline"])

    def start(name: str) -> SidecarProcess:
        p = SidecarProcess(kafka_bootstrap, env["path"], tmp_path / f"detector-{name}.log")
        procs.append(p)
        return p

    env.update(configure=configure, start=start)
    yield env
    for p in procs:
        if p.proc.poll() is None:
            with _suppress():
                os.kill(p.proc.pid, signal.SIGCONT)
        p.close()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


def _replayed(setup, partitions: int) -> dict[str, dict]:
    out = {}

    def emit(rec):
        d = orjson.loads(encode(rec))
        if d["type"] == "verdict":
            out[d["id"]] = d

    replay([setup["tmp"] / "events.jsonl"], setup["pipeline"], emit, partitions=partitions)
    return out


def _owned(p: SidecarProcess) -> set[int]:
    lines = p.log_lines()
    got = {r["partition"] for r in lines if r.get("event") in ("partition started cold", "partition restored")}
    return got - {r["partition"] for r in lines if r.get("event") == "partition released"}


def _split(a: SidecarProcess, b: SidecarProcess, timeout_s: float = 45.0) -> dict[str, set[int]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = {"a": _owned(a), "b": _owned(b)}
        if owned["a"] and owned["b"] and owned["a"] | owned["b"] == set(range(PARTITIONS)) \
                and not owned["a"] & owned["b"]:
            return owned
        time.sleep(0.5)
    raise AssertionError(f"partitions not split between the two sidecars: {owned}")


def _key(v: dict) -> tuple:
    return v["decision"], tuple(v["reasons"]), orjson.dumps(v["root_cause"], option=orjson.OPT_SORT_KEYS)


def _same(live: dict[str, list[dict]], expected: dict[str, dict]) -> None:
    assert set(live) == set(expected)
    for vid, copies in live.items():
        for c in copies:  # duplicates after a restart must be the same verdict
            assert c == expected[vid], (c, expected[vid])


def test_two_sidecars_that_split_the_services_judge_a_shared_incident_as_one_sidecar_and_replay_do(setup):
    """Services on two sidecars: verdicts equal replay at 4 partitions (whole records) and at 1 (decision,
    reasons, root cause), and no window was judged without a partition's summary."""
    setup["configure"](max_wait_s=60.0)
    a, b = setup["start"]("a"), setup["start"]("b")
    owned = _split(a, b)
    homes = {s: partition_of(s, PARTITIONS) for s in setup["services"]}
    assert any(p in owned["a"] for p in homes.values()) and any(p in owned["b"] for p in homes.values()), \
        (homes, owned)  # the incident's services really are split between the sidecars
    asyncio.run(produce_scenario(setup["sc"], setup["bootstrap"], setup["pipeline"]))
    expected = _replayed(setup, PARTITIONS)
    assert expected
    msgs = asyncio.run(read_topic(setup["bootstrap"], setup["pipeline"].topics.alerts,
                                  lambda m: set(verdicts(m)) >= set(expected), 90))
    live = verdicts(msgs)
    _same(live, expected)
    one = _replayed(setup, 1)
    assert {k: _key(v) for k, v in one.items()} == {k: _key(c[0]) for k, c in live.items()}
    assert not any("fleet_missing" in orjson.loads(m.value).get("detail", {}) for m in msgs)
    for p in (a, b):
        assert not [r for r in p.log_lines() if r.get("event", "").startswith("judging without partitions")]
