"""The live sidecar's per-rule counters: which checks caught incidents and which only cried wolf.

The same figures as `rules.json` of `detector tune`, kept between tuning runs
and exported in `/metrics`:

* `detector_rule_fired_deploys{rule}`: deploys this instance judged on which the
  rule fired (its first firing; dry-run rules and anomalies blamed on something
  other than the deploy do not count, as in tune);
* `detector_rule_caught{rule}`: of those, deploys later matched to an incident;
* `detector_rule_false_alarms{rule}`: the others (so far: an incident opened
  later moves a deploy from here to caught).

Incidents come from the pipeline's incidents topic (`topics.incidents`), read
by every instance with an assigned consumer and no group from its beginning;
the topic may not exist yet, and is looked for again every `RECHECK_S` (never
created: it is not named in a metadata request). An incident is matched to a
deploy by tune's own rule (`detector.tune.history.match_incident`, window
`DEFAULT_MATCH_WINDOW_S`); an instance matches only the deploys it judged,
so the fleet's figure is the sum over instances. The counters start from zero
at each start of the process (they are not checkpointed) and keep the latest
`MAX_DEPLOYS` deploys and `MAX_INCIDENTS` incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from detector.config import Pipeline
from detector.ingest.columns import DeployEvent, IncidentEvent
from detector.ingest.contract import decode_batch
from detector.ingest.interner import Interner
from detector.records import Record
from detector.tune.args import DEFAULT_MATCH_WINDOW_S
from detector.tune.history import deploys_by_service, match_incident, merge_incidents
from detector.tune.outcomes import outcomes

MAX_DEPLOYS = 20_000
MAX_INCIDENTS = 20_000
RECHECK_S = 10.0


class RuleCounters:
    def __init__(self, pipeline: Pipeline, registry: CollectorRegistry,
                 match_window_s: float = DEFAULT_MATCH_WINDOW_S) -> None:
        self.rules = [r.name for r in pipeline.rules]
        self.window_s = match_window_s
        self.deploys: OrderedDict[str, DeployEvent] = OrderedDict()
        self.fired: OrderedDict[str, set[str]] = OrderedDict()      # deploy_id -> rules that fired on it
        self.incidents: OrderedDict[str, IncidentEvent] = OrderedDict()
        self.failed: set[str] = set()
        self._dirty = True
        self.g_fired = Gauge("detector_rule_fired_deploys", "Deploys on which the rule fired (not dry-run)",
                             ["rule"], registry=registry)
        self.g_caught = Gauge("detector_rule_caught", "Deploys on which the rule fired, later matched to an incident",
                              ["rule"], registry=registry)
        self.g_false = Gauge("detector_rule_false_alarms",
                             "Deploys on which the rule fired, matched to no incident (yet)", ["rule"],
                             registry=registry)
        self.g_incidents = Gauge("detector_incidents", "Incidents read from the incidents topic, by whether they "
                                 "matched a deploy this instance judged", ["matched"], registry=registry)
        for r in self.rules:  # every rule is visible from the start, at zero
            for g in (self.g_fired, self.g_caught, self.g_false):
                g.labels(r).set(0)

    def observe(self, deploys: list[DeployEvent], records: list[Record]) -> None:
        """One processed batch: its deploy events and the records the core made of it."""
        for d in deploys:
            if d.phase == "started" and d.deploy_id not in self.deploys:
                self.deploys[d.deploy_id] = d
                self._dirty = True
        _trim(self.deploys, MAX_DEPLOYS)
        if records:
            for dep, o in outcomes([r.to_dict() for r in records]).items():
                if o.firings:
                    self.fired.setdefault(dep, set()).update(o.firings)
                    self._dirty = True
            _trim(self.fired, MAX_DEPLOYS)

    def on_incidents(self, events: list[IncidentEvent]) -> None:
        if not events:
            return
        merged = merge_incidents([*(self.incidents[e.incident_id] for e in events if e.incident_id in self.incidents),
                                  *events])
        for inc in merged:
            self.incidents[inc.incident_id] = inc
        _trim(self.incidents, MAX_INCIDENTS)
        self._dirty = True

    def export(self) -> None:
        """Match incidents to deploys again (either may arrive first) and set the gauges; cheap when nothing changed."""
        if not self._dirty:
            return
        self._dirty = False
        by_service = deploys_by_service(self.deploys.values())
        known = set(self.deploys) | set(self.fired)
        self.failed, matched = set(), 0
        for inc in self.incidents.values():
            dep = match_incident(inc, known, by_service, self.window_s)
            if dep is not None:
                self.failed.add(dep)
                matched += 1
        self.g_incidents.labels("true").set(matched)
        self.g_incidents.labels("false").set(len(self.incidents) - matched)
        fired = {r: 0 for r in self.rules}
        caught = dict(fired)
        for dep, rules in self.fired.items():
            for r in rules:
                fired[r] = fired.get(r, 0) + 1
                caught[r] = caught.get(r, 0) + (dep in self.failed)
        for r in fired:
            self.g_fired.labels(r).set(fired[r])
            self.g_caught.labels(r).set(caught[r])
            self.g_false.labels(r).set(fired[r] - caught[r])


def _trim(d: OrderedDict, cap: int) -> None:
    while len(d) > cap:
        d.popitem(last=False)


async def follow_incidents(client_kwargs: dict, topic: str, counters: RuleCounters, stopping: asyncio.Event,
                           log, recheck_s: float = RECHECK_S) -> None:
    """Read `topic` from its beginning into `counters` until `stopping` is set; wait for it to exist."""
    interner = Interner()
    consumer = None
    while not stopping.is_set():
        try:
            if consumer is None:
                consumer = AIOKafkaConsumer(**client_kwargs, group_id=None, enable_auto_commit=False,
                                            auto_offset_reset="earliest")
                await asyncio.wait_for(consumer.start(), recheck_s)
            if not consumer.assignment():
                if topic not in await asyncio.wait_for(consumer.topics(), recheck_s):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stopping.wait(), recheck_s)
                    continue
                parts = sorted(consumer.partitions_for_topic(topic) or ())
                consumer.assign([TopicPartition(topic, p) for p in parts])
                log.info("reading incidents", topic=topic, partitions=len(parts))
            batch = await consumer.getmany(timeout_ms=500)
            values = [m.value for msgs in batch.values() for m in msgs if m.value is not None]
            if values:
                counters.on_incidents(list(decode_batch(values, interner).incidents))
        except (KafkaError, OSError, asyncio.TimeoutError) as e:
            log.warning("incidents topic not readable, retrying", topic=topic, error=repr(e)[:200])
            if consumer is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(consumer.stop(), 2.0)
                consumer = None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), recheck_s)
    if consumer is not None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(consumer.stop(), 2.0)
