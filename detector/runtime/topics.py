"""Topic layout and the Kafka client settings that depend on what the broker supports.

This module owns three things the Kafka driver, the demo and the tests share:

* ``ensure_topics``: create the topics a pipeline needs, with explicit configs,
  and tolerate topics that already exist.
* ``topic_configs``: the configs a topic gets at creation. Every topic gets its
  ``cleanup.policy`` spelled out; the detector's state topic is compacted
  (only the newest snapshot per key matters), every other topic is deleted by
  age (``retention.ms``).
* ``producer_settings`` / ``consumer_settings``: keyword arguments for
  aiokafka's producer and consumer.

Why configs are explicit: the embedded broker (Tansu) stores exactly the
configs given at creation and reports nothing else (``DescribeConfigs`` on a
topic created without configs returns an empty list), so a topic's retention
and cleanup policy are only knowable if they were set when it was made.

Broker capabilities that shape the defaults (observed on Tansu 0.6.0):

* ``InitProducerId`` answers ``UnknownError``, so aiokafka's idempotent and
  transactional producers fail at ``start()``. Idempotence is therefore a
  setting that defaults to off; turn it on only against a real Kafka cluster.
* A consumer group's first join waits about half the session timeout, and a
  group re-join after a member left waits for that member's session to expire
  first. Short sessions make tests fast; production keeps the Kafka defaults.
* ``ListOffsets(latest)`` (``end_offsets()``, ``seek_to_end()``) can answer the
  base offset of the last record batch plus one, short of the true end when the
  last batch holds several records. The high watermark carried by a fetch
  response (``consumer.highwater(tp)``) is exact.
* Topics named in a metadata request are auto-created with 4 partitions, and a
  create request with 0 partitions is accepted; so names and partition counts
  are validated here, before anything reaches the broker.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

#: Name of the topic holding per-partition core snapshots. Any topic whose name
#: is this or ends in ``.<this>`` (a prefixed copy, as tests make) is compacted.
STATE_TOPIC = "detector.state"

DEFAULT_PARTITIONS = 8
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_TIMEOUT_S = 15.0

# Kafka's own rule for topic names (kafka.common.internals.Topic).
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class TopicSetupError(RuntimeError):
    """A topic could not be created or described; the message names topic, broker and fix."""


class BrokerUnavailable(TopicSetupError):
    """The broker did not answer (in time): worth retrying, unlike a refused request."""


def is_state_topic(name: str) -> bool:
    """Whether ``name`` is the state topic, possibly behind a dotted prefix."""
    return name == STATE_TOPIC or name.endswith("." + STATE_TOPIC)


def topic_configs(name: str, retention_ms: int = DEFAULT_RETENTION_MS) -> dict[str, str]:
    """Configs a topic gets at creation: compacted for the state topic, else deleted by age."""
    if is_state_topic(name):
        return {"cleanup.policy": "compact"}
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}


def fleet_topic_configs(retention_h: float) -> dict[str, str]:
    """The fleet topic (``[fleet] topic``): summaries deleted by age after ``fleet.retention_h``,
    long enough for a restarted sidecar to rebuild its view, short enough to stay small."""
    return {"cleanup.policy": "delete", "retention.ms": str(max(1, int(retention_h * 3600 * 1000)))}


def _check_topic_name(name: object) -> str:
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(
            f"invalid Kafka topic name {name!r}: use 1-249 characters from "
            "a-z A-Z 0-9 . _ - (and not '.' or '..')"
        )
    return name


def _plan(
    topics: Mapping[str, int] | Iterable[str],
    partitions: int,
    configs: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, tuple[int, dict[str, str]]]:
    """Validate the request and return {topic: (partitions, configs)}."""
    if isinstance(topics, str):
        raise TypeError(
            f"topics must be a list of names or a {{name: partitions}} dict, got the string {topics!r}; "
            f"wrap a single name in a list: [{topics!r}]"
        )
    wanted = dict(topics) if isinstance(topics, Mapping) else {name: partitions for name in topics}
    if not wanted:
        raise ValueError("topics is empty: pass at least one topic name")
    overrides = dict(configs or {})
    unknown = sorted(set(overrides) - set(wanted))
    if unknown:
        raise ValueError(
            f"configs names topics that are not being created: {unknown}; "
            f"configs is keyed by topic name, one of {sorted(wanted)}"
        )
    plan: dict[str, tuple[int, dict[str, str]]] = {}
    for name, count in wanted.items():
        _check_topic_name(name)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"partitions for topic {name!r} must be an int >= 1 (got {count!r})")
        merged = topic_configs(name)
        extra = overrides.get(name, {})
        if not isinstance(extra, Mapping):
            raise TypeError(
                f"configs[{name!r}] must be a dict of config name to string value "
                f"(e.g. {{'retention.ms': '3600000'}}), got {extra!r}"
            )
        for key, value in extra.items():
            if not isinstance(value, str):
                raise TypeError(
                    f"config {key!r} for topic {name!r} must be a string as Kafka sends it "
                    f"(e.g. '3600000', 'compact'), got {value!r}"
                )
            merged[key] = value
        plan[name] = (count, merged)
    return plan


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int] | Iterable[str],
    partitions: int = DEFAULT_PARTITIONS,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    *,
    replication_factor: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, int]:
    """Create the topics that do not exist yet; return every topic's actual partition count.

    ``topics`` is either a list of names (each gets ``partitions``) or a
    ``{name: partitions}`` dict. ``configs`` maps a topic name to configs that
    override ``topic_configs(name)``. A topic that already exists is left as it
    is, even if its partition count differs: the returned counts let the caller
    decide (co-partitioned inputs need equal counts).
    """
    plan = _plan(topics, partitions, configs)
    if replication_factor < 1:
        raise ValueError(f"replication_factor must be >= 1 (got {replication_factor})")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 (got {timeout_s})")
    request_timeout_ms = max(1, int(timeout_s * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            response = await admin.create_topics(
                [
                    NewTopic(name, count, replication_factor, topic_configs=cfg)
                    for name, (count, cfg) in plan.items()
                ],
                timeout_ms=request_timeout_ms,
            )
            _raise_for_topic_errors(bootstrap, response.topic_errors)
            described = await admin.describe_topics(list(plan))
    except TimeoutError as exc:
        raise BrokerUnavailable(
            f"topics {sorted(plan)} not ready on bootstrap={bootstrap!r} within timeout_s={timeout_s}; "
            "check that the broker is up and reachable, or raise timeout_s"
        ) from exc
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot set up topics {sorted(plan)} on bootstrap={bootstrap!r}: {exc!r}; "
            "check the bootstrap address and that the broker is up"
        ) from exc
    finally:
        await admin.close()
    return _partition_counts(bootstrap, described)


def _raise_for_topic_errors(bootstrap: str, topic_errors: Iterable[Any]) -> None:
    failures = []
    for entry in topic_errors:
        name, code, message = entry[0], entry[1], entry[2] if len(entry) > 2 else None
        if code == 0 or code == TopicAlreadyExistsError.errno:
            continue
        failures.append(f"{name!r}: {for_code(code).__name__} (code {code}) {message or ''}".rstrip())
    if failures:
        raise TopicSetupError(
            f"broker at {bootstrap!r} refused to create topics: {'; '.join(failures)}; "
            "fix the partition count, replication factor or configs named above"
        )


def _partition_counts(bootstrap: str, described: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in described:
        if topic["error_code"] != 0:
            raise TopicSetupError(
                f"describing topic {topic['topic']!r} on {bootstrap!r} failed with "
                f"{for_code(topic['error_code']).__name__}; check that the topic was created"
            )
        counts[topic["topic"]] = len(topic["partitions"])
    return counts


def producer_settings(
    bootstrap: str, *, idempotence: bool = False, client_id: str = "detector"
) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``.

    ``idempotence`` stays off by default because the embedded broker rejects
    ``InitProducerId``; turn it on against a real Kafka cluster to drop the
    duplicates a producer retry can write.
    """
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": idempotence,
        # A few ms of batching turns a burst of small events into one request.
        "linger_ms": 5,
    }


def consumer_settings(
    bootstrap: str,
    group_id: str,
    *,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
    client_id: str = "detector",
) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer`` in a group that commits offsets itself.

    Auto-commit is off: the runtime commits only offsets whose effects are
    checkpointed. On the embedded broker a group's first join takes about
    ``session_timeout_ms / 2``, so tests pass a short session (2000 ms).
    """
    if heartbeat_interval_ms * 3 > session_timeout_ms:
        raise ValueError(
            f"heartbeat_interval_ms={heartbeat_interval_ms} must be at most a third of "
            f"session_timeout_ms={session_timeout_ms}, or one late heartbeat evicts the member"
        )
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
    }
