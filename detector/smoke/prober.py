"""The built-in smoke prober of `detector run`: deploys in, `check` events out.

On each `started` deploy of a service that has `[[smoke]]` entries, every
entry is run `delay_s` after the deploy's start (its event time, which live
is the wall clock), then every `interval_s`, `runs` times; an aimed entry
probes the new version and, when the deploy names it, the stable version in
the same run. Each result becomes one `check` event (stamped when the answer
came, with `duration_ms`) handed to `publish`, which writes it to the checks
topic; the judge reads it from there like any other input, so a replay of
the topics sees exactly what the live run saw.

Bounded everywhere: at most `max_in_flight` requests at once, every request
under its own timeout (and an outer one), at most `max_scheduled` runs
waiting for their time, at most `max_queued_results` results waiting to be
published (the oldest are dropped and counted when the topic cannot keep
up). Nothing here blocks the consumer: `on_deploys` only schedules tasks.
Header values are never logged or published; a published URL keeps no
credentials and no query string.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import structlog

from detector.ingest.columns import DeployEvent
from detector.smoke.settings import Prober as ProberSettings
from detector.smoke.settings import SmokeCheck

log = structlog.get_logger("detector.smoke")

Publish = Callable[[bytes, bytes], Awaitable[None]]  # (key, value) -> acknowledged, or raises
# A deploy whose last run was due longer ago than this is history being re-read (a restart, a
# rebalance): it is not probed again.
STALE_AFTER_S = 60.0
BODY_SNIPPET_CHARS = 200
MAX_BODY_BYTES = 65_536  # of an answer read (and searched for expect_body); the rest is not downloaded
MAX_REMEMBERED_DEPLOYS = 10_000


def public_url(url: str) -> str:
    """The URL without user info and query string: what may be published and logged."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _fill(text: str, deploy: DeployEvent, version: str) -> str:
    return text.replace("{version}", version).replace("{service}", deploy.service) \
        .replace("{deploy_id}", deploy.deploy_id)


@dataclass
class ProberStats:
    scheduled: int = 0
    refused: int = 0  # runs refused because max_scheduled were waiting
    skipped_stale: int = 0  # deploys seen again long after their checks were due
    probes: int = 0
    failed: int = 0
    published: int = 0
    dropped: int = 0  # results lost because max_queued_results were waiting


class SmokeProber:
    def __init__(self, checks: Iterable[SmokeCheck], settings: ProberSettings, publish: Publish,
                 clock: Callable[[], float] = time.time) -> None:
        self.by_service: dict[str, list[SmokeCheck]] = {}
        for c in checks:
            self.by_service.setdefault(c.service, []).append(c)
        self.settings = settings
        self.publish = publish
        self.clock = clock
        self.stats = ProberStats()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self._current: dict[str, tuple[str, list[asyncio.Task]]] = {}  # service -> (deploy id, its runs)
        self._waiting = 0
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._results: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._publisher: asyncio.Task | None = None

    async def start(self) -> None:
        # Redirects are not followed: a smoke check states the answer it expects.
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._publisher = asyncio.create_task(self._publish_loop(), name="smoke-publisher")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel waiting runs, publish what is queued (within `timeout_s`), close the client."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        deadline = time.monotonic() + timeout_s
        while self._results and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        if self._results:
            self.stats.dropped += len(self._results)
            log.warning("smoke results not published at stop", count=len(self._results))
            self._results.clear()

    # --- scheduling (called from the consumer loop: never waits) ---

    def on_deploys(self, deploys: Iterable[DeployEvent]) -> None:
        for d in deploys:
            checks = self.by_service.get(d.service)
            if not checks:
                continue
            held = self._current.get(d.service)
            if held is not None and (d.phase == "rolled_back" and held[0] == d.deploy_id
                                     or d.phase == "started" and held[0] != d.deploy_id):
                # rolled back, or superseded by a newer deploy: its remaining runs would probe nothing of use
                for t in held[1]:
                    t.cancel()
                del self._current[d.service]
            if d.phase != "started" or d.deploy_id in self._seen:
                continue
            self._seen[d.deploy_id] = None
            if len(self._seen) > MAX_REMEMBERED_DEPLOYS:
                self._seen.popitem(last=False)
            now = self.clock()
            for c in checks:
                last_due = d.ts + c.delay_s + (c.runs - 1) * c.interval_s
                if now - last_due > STALE_AFTER_S:
                    self.stats.skipped_stale += 1
                    log.info("smoke check not run: its deploy is history", service=d.service, check=c.name,
                             deploy_id=d.deploy_id, due_s_ago=round(now - last_due, 1))
                    continue
                if self._waiting + c.runs > self.settings.max_scheduled:
                    self.stats.refused += c.runs
                    log.warning("smoke check refused: too many runs scheduled", service=d.service, check=c.name,
                                deploy_id=d.deploy_id, max_scheduled=self.settings.max_scheduled)
                    continue
                self._waiting += c.runs
                self.stats.scheduled += c.runs
                task = asyncio.create_task(self._runs(c, d), name=f"smoke {d.deploy_id} {c.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._current.setdefault(d.service, (d.deploy_id, []))[1].append(task)

    def _targets(self, c: SmokeCheck, d: DeployEvent) -> list[str | None]:
        if not c.aimed:
            return [None]
        out: list[str | None] = [d.version]
        if c.stable and d.previous_version and d.previous_version != d.version:
            out.append(d.previous_version)
        return out

    async def _runs(self, c: SmokeCheck, d: DeployEvent) -> None:
        left = c.runs
        try:
            for i in range(c.runs):
                due = d.ts + c.delay_s + i * c.interval_s
                wait_s = due - self.clock()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                left -= 1
                self._waiting -= 1
                await asyncio.gather(*(self._probe(c, d, v) for v in self._targets(c, d)))
        finally:
            self._waiting -= left

    # --- one request ---

    async def _probe(self, c: SmokeCheck, d: DeployEvent, version: str | None) -> None:
        target = version or d.version
        url = _fill(c.url, d, target)
        shown = public_url(url)
        headers = {k: _fill(v, d, target) for k, v in c.headers}
        async with self._in_flight:
            t0 = time.monotonic()
            passed, message = False, ""
            try:
                # the outer timeout bounds the whole exchange, whatever httpx's phases take
                status, text = await asyncio.wait_for(self._request(c, url, headers), c.timeout_s)
                passed = status == c.expect_status and c.expect_body in text
                if not passed:
                    why = f"expected {c.expect_status}" if status != c.expect_status \
                        else f"the body lacks {c.expect_body!r}"
                    snippet = " ".join(text.split())[:BODY_SNIPPET_CHARS]
                    message = f"HTTP {status} from {c.method} {shown} ({why})" + (f": {snippet}" if snippet else "")
                else:
                    message = f"HTTP {status} from {c.method} {shown}"
            except (asyncio.TimeoutError, httpx.TimeoutException):
                message = f"timed out after {c.timeout_s:g} s: {c.method} {shown}"
            except httpx.HTTPError as e:
                message = f"{type(e).__name__} from {c.method} {shown}: {str(e)[:BODY_SNIPPET_CHARS]}"
            duration_ms = (time.monotonic() - t0) * 1000.0
        self.stats.probes += 1
        self.stats.failed += not passed
        event = {"type": "check", "ts": round(self.clock(), 3), "service": d.service, "name": c.name,
                 "passed": passed, "deploy_id": d.deploy_id, "duration_ms": round(duration_ms, 1),
                 "message": message, "url": shown}
        if version is not None:
            event["version"] = version
        log.info("smoke check", service=d.service, check=c.name, deploy_id=d.deploy_id, version=version,
                 passed=passed, duration_ms=round(duration_ms, 1), message=message)
        self._queue(d.service.encode(), orjson.dumps(event))

    async def _request(self, c: SmokeCheck, url: str, headers: dict[str, str]) -> tuple[int, str]:
        """(status, the start of the answer's text); httpx's timeout bounds each phase."""
        async with self._client.stream(c.method, url, headers=headers, content=c.body.encode() or None,
                                       timeout=c.timeout_s) as resp:
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY_BYTES:
                    break
            body = b"".join(chunks)[:MAX_BODY_BYTES]
            return resp.status_code, body.decode(resp.encoding or "utf-8", errors="replace")

    # --- publishing ---

    def _queue(self, key: bytes, value: bytes) -> None:
        if len(self._results) >= self.settings.max_queued_results:
            self._results.popleft()
            self.stats.dropped += 1
            log.warning("smoke result dropped: the checks topic is not keeping up",
                        max_queued_results=self.settings.max_queued_results)
        self._results.append((key, value))
        self._wake.set()

    async def _publish_loop(self) -> None:
        delay = 0.5
        while True:
            if not self._results:
                self._wake.clear()
                await self._wake.wait()
                continue
            key, value = self._results[0]
            try:
                await self.publish(key, value)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("smoke result not published, retrying", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            if self._results and self._results[0] == (key, value):
                self._results.popleft()
            self.stats.published += 1
