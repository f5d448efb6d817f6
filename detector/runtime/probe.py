"""Whether the broker answers: the source of `/readyz` and of the outage log lines.

A broker that is frozen (SIGSTOP, a stalled VM, a network black hole) accepts
TCP connections and then never answers, so a client request can wait for its
whole request timeout, and the consumer's own calls return empty batches
rather than errors. The only reliable sign is a request that must be answered:
every `interval_s` a metadata request goes out on a connection of its own,
bounded by `timeout_s`. The probe keeps no state of the sidecar and decides
nothing; it reports transitions to a callback.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError


class BrokerProbe:
    def __init__(self, client_kwargs: dict, *, interval_s: float = 1.0, timeout_s: float = 3.0,
                 on_change: Callable[[bool, float], None] | None = None) -> None:
        self.client_kwargs = client_kwargs
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.reachable = False
        self.since = time.monotonic()  # when `reachable` last changed
        self._client: AIOKafkaClient | None = None

    async def check(self) -> bool:
        """One metadata round trip within `timeout_s`; updates `reachable`."""
        ok = False
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._client is None:
                    self._client = AIOKafkaClient(**self.client_kwargs,
                                                  request_timeout_ms=int(self.timeout_s * 1000))
                    await self._client.bootstrap()
                await self._client.fetch_all_metadata()
            ok = True
        except (KafkaError, OSError, TimeoutError):
            await self._drop_client()
        self._set(ok)
        return ok

    async def run(self, stopping: asyncio.Event) -> None:
        """Probe until `stopping` is set."""
        try:
            while not stopping.is_set():
                await self.check()
                try:
                    await asyncio.wait_for(stopping.wait(), self.interval_s)
                except TimeoutError:
                    pass
        finally:
            await self._drop_client()

    def _set(self, ok: bool) -> None:
        if ok == self.reachable:
            return
        now = time.monotonic()
        lasted_s, self.since, self.reachable = now - self.since, now, ok
        if self.on_change is not None:
            self.on_change(ok, lasted_s)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 1.0)
            except (KafkaError, OSError, TimeoutError):
                pass
