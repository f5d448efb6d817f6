"""Every sink's bounded queue: drops the oldest while an endpoint hangs, closes in time."""

from __future__ import annotations

import asyncio
import time


from detector.sinks import (
    WebhookSink,
)

from sinkkit import Recorder, client, verdict


# --- the bounded queue ---


async def test_bounded_queue_drops_oldest_while_the_endpoint_hangs(server: Recorder) -> None:
    """With the endpoint hung, submit returns at once and the queue keeps only the newest queue_max items."""
    server.hanging.set()
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",), queue_max=3)
    await sink.start()
    sink.submit(verdict("d-0", service="s0"))
    await asyncio.sleep(0)  # let the worker take d-0 into the hung request
    assert await asyncio.to_thread(server.arrived.wait, 5)
    started = time.perf_counter()
    for i in range(1, 1001):
        sink.submit(verdict(f"d-{i}", service=f"s{i}"))
    elapsed_s = time.perf_counter() - started
    assert sink.queued == 3
    assert sink.stats.dropped == 997
    assert elapsed_s < 1.0, f"1000 submits took {elapsed_s:.3f} s against a hung endpoint"
    server.released.set()
    assert await sink.flush(10)
    await sink.close(1)
    assert [b["dedup_key"] for b in server.bodies()] == ["v-d-0", "v-d-998", "v-d-999", "v-d-1000"]
    s = sink.stats
    assert s.submitted == s.sent + s.failed + s.dropped == 1001


async def test_close_gives_up_on_a_hung_endpoint_within_its_timeout(server: Recorder) -> None:
    """close(timeout_s) returns in about timeout_s when the endpoint hangs, counting what was left as dropped."""
    server.hanging.set()
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict("d-1", service="a"))
    sink.submit(verdict("d-2", service="b"))
    started = time.perf_counter()
    await sink.close(0.3)
    assert time.perf_counter() - started < 2.0
    assert sink.stats.dropped == 2 and sink.stats.sent == 0


