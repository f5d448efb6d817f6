"""Sinks: where anomalies and verdicts go besides the alerts topic and JSONL files.

``build_sinks(settings)`` turns the pipeline's ``[sinks]`` section into a
``SinkSet``; the runtime (``detector run``) and the file driver
(``detector replay``) use it the same way::

    sinks = build_sinks(pipeline.sinks, alertmanager_url=args.alertmanager_url)
    await sinks.start()
    for record in records:                 # anomalies and verdicts, as the core returns them
        sinks.submit(record)               # never blocks; bounded queues drop the oldest
    for action in sinks.take_actions():    # rollback outcomes, {"type": "action", ...}
        publish(encode_action(action))
    await sinks.close(timeout_s=10)        # flush what it can, then stop

A sink is switched on by its setting: ``alertmanager_url`` (or the
``alertmanager_url`` argument, which wins), ``pagerduty_routing_key`` (or env
``DETECTOR_PAGERDUTY_ROUTING_KEY``), ``webhook_url``, ``rollback_command`` or
``rollback_url``. Each sink has its own HTTP client and thread pool, so a hung
endpoint slows only its own sink.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from detector.config import Sinks
from detector.records import Record
from detector.sinks.alertmanager import AlertmanagerSink
from detector.sinks.alertstate import AlertStateError
from detector.sinks.base import QueuedSink, Sink, SinkStats
from detector.sinks.events import EventSink
from detector.sinks.http import HttpClient, HttpResult
from detector.sinks.pagerduty import ROUTING_KEY_ENV, PagerDutySink
from detector.sinks.rollback import RollbackConfigError, RollbackHook, encode_action
from detector.sinks.webhook import WebhookSink

DEFAULT_ROLLBACK_STATE_PATH = Path("detector-rollback-state.json")

__all__ = [
    "DEFAULT_ROLLBACK_STATE_PATH",
    "AlertStateError",
    "AlertmanagerSink",
    "HttpClient",
    "HttpResult",
    "PagerDutySink",
    "QueuedSink",
    "RollbackConfigError",
    "RollbackHook",
    "Sink",
    "SinkSet",
    "SinkStats",
    "WebhookSink",
    "build_sinks",
    "encode_action",
]


class SinkSet:
    """The configured sinks, driven as one."""

    def __init__(self, sinks: list[QueuedSink]) -> None:
        self.sinks = tuple(sinks)

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def _get(self, kind: type) -> Any:
        return next((s for s in self.sinks if isinstance(s, kind)), None)

    @property
    def alertmanager(self) -> AlertmanagerSink | None:
        return self._get(AlertmanagerSink)

    @property
    def pagerduty(self) -> PagerDutySink | None:
        return self._get(PagerDutySink)

    @property
    def webhook(self) -> WebhookSink | None:
        return self._get(WebhookSink)

    @property
    def rollback(self) -> RollbackHook | None:
        return self._get(RollbackHook)

    async def start(self) -> None:
        for s in self.sinks:
            await s.start()

    def submit(self, record: Record) -> None:
        for s in self.sinks:
            s.submit(record)

    def resolve(self, service: str, deploy_id: str | None = None) -> None:
        """Resolve open alerts and incidents of `service` (of `deploy_id` only, when given).

        For the runtime to call when the service is deployed again or rolled
        back: the verdict that paged is then dealt with.
        """
        for s in self.sinks:
            if isinstance(s, (AlertmanagerSink, EventSink)):
                s.resolve(service, deploy_id)

    def take_actions(self) -> list[dict[str, Any]]:
        """Action records (rollback outcomes) since the last call; encode with `encode_action`."""
        hook = self.rollback
        return hook.take_outcomes() if hook is not None else []

    async def flush(self, timeout_s: float) -> bool:
        results = await asyncio.gather(*(s.flush(timeout_s) for s in self.sinks))
        return all(results)

    async def close(self, timeout_s: float) -> None:
        await asyncio.gather(*(s.close(timeout_s) for s in self.sinks))

    def stats(self) -> dict[str, dict[str, int]]:
        return {s.name: s.stats.as_dict() for s in self.sinks}


def build_sinks(settings: Sinks, *, alertmanager_url: str | None = None, env: Mapping[str, str] = os.environ,
                clock: Callable[[], float] = time.time,
                rollback_state_path: str | Path | None = DEFAULT_ROLLBACK_STATE_PATH,
                alertmanager_state_path: str | Path | None = None) -> SinkSet:
    """The sinks `settings` switch on. `alertmanager_url` (e.g. from --alertmanager-url) overrides the setting.

    `alertmanager_state_path` keeps the posted verdict alerts across restarts (None or "": in memory only).

    Raises ValueError subclasses (HttpConfigError, RollbackConfigError) naming the setting that is wrong.
    """
    def client() -> HttpClient:
        return HttpClient(timeout_s=settings.timeout_s, max_retries=settings.max_retries)

    sinks: list[QueuedSink] = []
    am_url = alertmanager_url or settings.alertmanager_url
    if am_url:
        sinks.append(AlertmanagerSink(
            url=am_url, client=client(), severities=settings.alertmanager_severities,
            decisions=settings.alertmanager_decisions, resend_s=settings.alertmanager_resend_s,
            resolve_s=settings.alert_resolve_s, generator_url=settings.generator_url,
            queue_max=settings.queue_max, clock=clock, state_path=alertmanager_state_path or None))
    routing_key = settings.pagerduty_routing_key or env.get(ROUTING_KEY_ENV, "")
    if routing_key.strip():
        sinks.append(PagerDutySink(
            routing_key=routing_key, client=client(), decisions=settings.pagerduty_decisions,
            url=settings.pagerduty_url, queue_max=settings.queue_max, generator_url=settings.generator_url))
    if settings.webhook_url:
        sinks.append(WebhookSink(
            url=settings.webhook_url, client=client(), decisions=settings.webhook_decisions,
            queue_max=settings.queue_max, generator_url=settings.generator_url, clock=clock))
    if settings.rollback_command or settings.rollback_url:
        # An HTTP rollback may take as long as a command would, hence its own timeout.
        rollback_client = (HttpClient(timeout_s=settings.rollback_timeout_s, max_retries=settings.max_retries)
                           if settings.rollback_url else None)
        sinks.append(RollbackHook(
            command=settings.rollback_command, url=settings.rollback_url, dry_run=settings.rollback_dry_run,
            timeout_s=settings.rollback_timeout_s, state_path=rollback_state_path, client=rollback_client,
            queue_max=settings.queue_max, clock=clock))
    return SinkSet(sinks)
