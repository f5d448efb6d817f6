"""Shared fixtures: one Kafka-protocol broker per test session, and per-test topic names.

``kafka_bootstrap`` picks the first broker that applies:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (a broker you run);
2. a testcontainers Kafka, when a Docker engine answers a ping within
   ``DOCKER_PING_TIMEOUT_S`` (no engine: decided in milliseconds, never a hang);
3. the embedded Tansu broker (``detector.runtime.embedded``).

Tests that need the broker carry ``@pytest.mark.kafka`` so ``-m "not kafka"``
deselects them. Every test names its topics and groups through
``unique_topic`` so tests never see each other's messages, even on a broker
that outlives the session.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
from realparts import missing

DOCKER_PING_TIMEOUT_S = 0.5
_DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
_UNSAFE_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")


def _docker_answers(timeout_s: float = DOCKER_PING_TIMEOUT_S) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` within ``timeout_s``."""
    docker_host = os.environ.get("DOCKER_HOST", f"unix://{_DEFAULT_DOCKER_SOCKET}")
    url = urlparse(docker_host)
    try:
        if url.scheme == "unix":
            if not os.path.exists(url.path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(url.path)
        elif url.scheme == "tcp" and url.hostname and url.port:
            sock = socket.create_connection((url.hostname, url.port), timeout=timeout_s)
        else:
            return False  # ssh:// or npipe:// engines: leave them to KAFKA_BOOTSTRAP_SERVERS
        with sock:
            sock.settimeout(timeout_s)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(256)
    except OSError:
        return False
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _testcontainers_kafka() -> type | None:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            return None
    return KafkaContainer


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address ``host:port`` of a Kafka-protocol broker shared by the session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return

    container_class = _testcontainers_kafka() if _docker_answers() else None
    if container_class is not None:
        with container_class() as kafka:
            yield kafka.get_bootstrap_server()
        return

    from detector.runtime.embedded import EmbeddedBroker, EmbeddedBrokerError, resolve_broker_binary

    try:
        resolve_broker_binary()
    except EmbeddedBrokerError as exc:
        missing(f"no Kafka broker for this test: set KAFKA_BOOTSTRAP_SERVERS, start Docker, or {exc}")
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix unique to this test run of this test, safe inside Kafka topic and group names."""
    test_name = _UNSAFE_TOPIC_CHARS.sub("-", request.node.name).strip("-.")[:60]
    return f"{test_name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_topic(topic_prefix: str) -> Callable[[str], str]:
    """Factory: ``unique_topic("requests")`` gives ``"<prefix>.requests"`` for this test."""

    def make(suffix: str) -> str:
        if not suffix or _UNSAFE_TOPIC_CHARS.search(suffix):
            raise ValueError(
                f"topic suffix {suffix!r} must be non-empty and use only a-z A-Z 0-9 . _ -"
            )
        return f"{topic_prefix}.{suffix}"

    return make
