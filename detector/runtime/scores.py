"""Live scores topic: every series-window's metric score row, as `detector replay --scores` writes them.

Off unless `[metrics] scores_topic` names a topic. Each partition's core
collects the rows of the windows it closes (`MetricWatch.take_scores`); after
each step of the core they are produced to the topic, keyed by service, and
go through the sidecar's acknowledged send, so a checkpoint never passes a
row that did not land. Delivery is at least once: after a restore the windows
since the checkpoint are scored again and their rows produced again
(window_start, service, metric and labels identify a row).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from detector.config import Pipeline
from detector.core import Core

Send = Callable[[str, bytes, bytes | None, object], Awaitable[None]]


class ScoresTopic:
    def __init__(self, pipeline: Pipeline) -> None:
        self.topic = pipeline.metrics.scores_topic
        self.rows = 0

    @property
    def on(self) -> bool:
        return bool(self.topic)

    def topics(self) -> list[str]:
        """The topic to create with the others (none when off)."""
        return [self.topic] if self.on else []

    def attach(self, core: Core) -> None:
        """A partition's core (cold or restored) starts collecting its score rows."""
        core.metricwatch.collect_scores = self.on

    async def publish(self, core: Core, send: Send) -> None:
        """Produce the rows the core collected since the last call."""
        if not self.on:
            return
        for row in core.metricwatch.take_scores():
            await send(self.topic, orjson.dumps(row), row["service"].encode(), None)
            self.rows += 1
