"""The HTTP client every sink uses: retries on 429/5xx, none on 400, backoff, Retry-After."""

from __future__ import annotations


import pytest

from detector.sinks import (
    HttpClient,
    PagerDutySink,
    WebhookSink,
)
from detector.sinks.http import parse_retry_after

from sinkkit import ROUTING_KEY, Recorder, client, verdict


# --- retries ---


async def test_retries_on_429_and_500_then_succeeds(server: Recorder) -> None:
    """429 and 500 are retried with the identical body until a 2xx arrives; the item counts as sent once."""
    server.answer(429, 500)
    sink = PagerDutySink(routing_key=ROUTING_KEY, client=client(), url=server.url)
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3
    assert len({r.body for r in server.requests}) == 1
    assert sink.stats.sent == 1 and sink.stats.failed == 0


async def test_no_retry_on_400(server: Recorder) -> None:
    """A 400 is final: one request, counted as failed."""
    server.answer(400)
    sink = WebhookSink(url=server.url, client=client(), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 1
    assert sink.stats.failed == 1 and sink.stats.sent == 0


async def test_gives_up_after_max_retries(server: Recorder) -> None:
    """A persistent 503 is tried 1 + max_retries times, then counted as failed."""
    server.answer(*[503] * 10)
    sink = WebhookSink(url=server.url, client=client(max_retries=2), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 3
    assert sink.stats.failed == 1


async def test_backoff_grows_and_honours_retry_after(server: Recorder) -> None:
    """Waits double per retry (with jitter in [0.5, 1) of nominal) and a Retry-After header raises the wait."""
    waits: list[float] = []

    async def record_sleep(s: float) -> None:
        waits.append(s)

    server.answer(500, 500, 500)
    server.answer(429, headers={"Retry-After": "2"})
    http = HttpClient(timeout_s=5, max_retries=5, base_delay_s=0.1, max_delay_s=10, seed=3, sleep=record_sleep)
    result = await http.post_json(server.url, {"x": 1})
    http.close()
    assert result.ok and result.attempts == 5
    for i, w in enumerate(waits[:3]):
        assert 0.1 * 2 ** i * 0.5 <= w < 0.1 * 2 ** i
    assert waits[3] >= 2.0


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or as an HTTP date relative to now; garbage is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == pytest.approx(20.0)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_connection_refused_is_counted_not_raised() -> None:
    """An endpoint nobody listens on ends as a failed item after the retries; submit and flush do not raise."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(url=f"http://127.0.0.1:{port}/hook", client=client(max_retries=1), decisions=("rollback",))
    await sink.start()
    sink.submit(verdict())
    assert await sink.flush(5)
    await sink.close(1)
    assert sink.stats.failed == 1


