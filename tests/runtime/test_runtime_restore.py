"""A restore while the fetcher already serves the partition: every event after the checkpoint counts once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
from sidecar import (PARTITIONS, pipeline_for_test, produce_scenario, read_topic, scenario_events, split_scenario,
                     verdicts)

from detector.records import encode
from detector.replay import replay
from detector.runtime import partitions as runtime_partitions
from detector.runtime.app import Sidecar

pytestmark = pytest.mark.kafka


async def _until(what: str, check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.2)


async def test_records_fetched_while_the_checkpoint_loads_are_processed_once(tmp_path, kafka_bootstrap,
                                                                            topic_prefix, monkeypatch):
    """aiokafka serves a new assignment from the committed offsets before the rebalance listener has
    restored and seeked: that batch and the seek's re-read of it count once, and the records are replay's."""
    truth, _services, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    head, tail = split_scenario(sc, 0.3)
    head_n, tail_n = sum(len(c) for c in head), sum(len(c) for c in tail)

    await produce_scenario(sc, kafka_bootstrap, pipeline, chunks=head)
    first = Sidecar(pipeline, kafka_bootstrap, http_port=-1)
    run = asyncio.create_task(first.run())
    await _until("the first sidecar reads the head of the scenario", lambda: first.summary["events"] >= head_n, 90)
    first.stopping.set()
    assert await run == 0 and first.summary["final_checkpoint"] == "written"  # checkpoint and commit

    await produce_scenario(sc, kafka_bootstrap, pipeline, chunks=tail)
    second = Sidecar(pipeline, kafka_bootstrap, http_port=-1)
    fetched = asyncio.Event()
    fetch = second._fetch

    async def fetch_and_tell():
        batch, mark = await fetch()
        if batch:
            fetched.set()
        return batch, mark

    second._fetch = fetch_and_tell
    raced: list[bool] = []
    load = runtime_partitions.load_checkpoints

    async def load_then_let_a_fetch_through(*args, **kwargs):
        # As on a loaded machine: the checkpoints arrive after the fetcher has served the committed offsets.
        got = await load(*args, **kwargs)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(fetched.wait(), 30)
        raced.append(fetched.is_set())
        return got

    monkeypatch.setattr(runtime_partitions, "load_checkpoints", load_then_let_a_fetch_through)
    run = asyncio.create_task(second.run())
    try:
        expected = {}
        replayed: set[str] = set()

        def emit(rec):
            d = orjson.loads(encode(rec))
            replayed.add(d["id"])
            if d["type"] == "verdict":
                expected[d["id"]] = d

        replay([tmp_path / "events.jsonl"], pipeline, emit, partitions=PARTITIONS)
        msgs = await read_topic(kafka_bootstrap, pipeline.topics.alerts, lambda m: set(verdicts(m)) >= set(expected),
                                120)
        await _until("the second sidecar reads the tail", lambda: second.summary["events"] >= tail_n, 60)
        await asyncio.sleep(2.0)  # a second copy of a batch would be read by now
    finally:
        second.stopping.set()
        await run
    assert raced == [True], "the fetcher did not serve the new assignment before the restore: nothing was tested"
    assert second.summary["events"] == tail_n
    live = verdicts(msgs)
    assert set(live) == set(expected)
    assert all(c == expected[vid] for vid, copies in live.items() for c in copies)
    assert {orjson.loads(m.value)["id"] for m in msgs} <= replayed
