"""Operations endpoint: /healthz, /readyz and /metrics (Prometheus text format).

A deliberately small HTTP/1.0 server on asyncio streams: three GET routes do
not justify a web framework. Metrics live in a per-sidecar registry so
several sidecars (tests) can share a process.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("detector_events_in", "Input messages read", ["topic"], registry=r)
        self.rejected = Counter("detector_events_rejected", "Input messages sent to the dead-letter topic",
                                ["topic"], registry=r)
        self.records_out = Counter("detector_records_out", "Records produced to the alerts topic", ["type"],
                                   registry=r)
        self.checkpoints = Counter("detector_checkpoints", "Checkpoints written", registry=r)
        self.checkpoint_bytes = Gauge("detector_checkpoint_bytes", "Size of the last checkpoint", ["partition"],
                                      registry=r)
        self.checkpoint_age = Gauge("detector_checkpoint_age_seconds", "Seconds since the last checkpoint",
                                    ["partition"], registry=r)
        self.events_per_s = Gauge("detector_events_per_second", "Input rate over the last interval", registry=r)
        self.late = Gauge("detector_late_events", "Events that arrived after their window closed", ["partition"],
                          registry=r)
        self.lag = Gauge("detector_consumer_lag", "High watermark minus position", ["topic", "partition"],
                         registry=r)
        self.windows_open = Gauge("detector_windows_open", "Open event-time windows", ["partition"], registry=r)
        self.series = Gauge("detector_series", "Request series tracked", ["partition"], registry=r)
        self.txn_folded = Gauge("detector_txn_names_folded",
                                "Transactions counted as 'other' because their service met "
                                "limits.max_txn_names_per_service", ["partition"], registry=r)
        self.partitions = Gauge("detector_partitions_owned", "Partitions this instance owns", registry=r)
        self.broker_reachable = Gauge("detector_broker_reachable",
                                      "1 while the broker answers a metadata request within 3 s", registry=r)
        self.split_services = Gauge("detector_services_split_across_partitions",
                                    "Services seen on more than one partition number of the input topics "
                                    "(a producer not partitioning by murmur2 of the service key)", registry=r)
        self.split_service = Gauge("detector_service_split_across_partitions",
                                   "1 for a service seen on more than one partition (first 100 services)",
                                   ["service"], registry=r)
        self.off_default_services = Gauge("detector_services_off_default_partition",
                                          "Services seen on a partition other than the one murmur2 of the "
                                          "service key gives (Kafka's default partitioner)", registry=r)
        self.broker_errors = Counter("detector_broker_errors", "Broker operations that failed and were retried",
                                     ["operation"], registry=r)
        # the live fleet view (runtime/fleetlink.py)
        self.fleet_waiting = Gauge("detector_fleet_windows_waiting",
                                   "Closed windows held back until every partition summarised them", ["partition"],
                                   registry=r)
        self.fleet_absent = Gauge("detector_fleet_partitions_absent",
                                  "Partitions judged without after fleet.max_wait_s, until they publish again",
                                  registry=r)
        self.fleet_summaries = Gauge("detector_fleet_summaries", "Fleet summaries since start",
                                     ["direction"], registry=r)
        self.fleet_forced = Gauge("detector_fleet_windows_forced",
                                  "Windows judged without some partitions' summaries since start", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    def __init__(self, metrics: Metrics, ready: Callable[[], bool], host: str = "127.0.0.1", port: int = 0,
                 pages: Callable[[str], bytes | None] | None = None) -> None:
        self.metrics = metrics
        self.pages = pages  # the status pages (detector.report.live): path -> HTML, None if no such page
        self.ready = ready
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            if path == "/healthz":
                status, ctype, body = "200 OK", "text/plain", b"ok\n"
            elif path == "/readyz":
                ok = self.ready()
                status, ctype, body = ("200 OK" if ok else "503 Service Unavailable"), "text/plain", \
                    (b"ready\n" if ok else b"not ready\n")
            elif path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
            elif self.pages is not None and (html := self.pages(path)) is not None:
                status, ctype, body = "200 OK", "text/html; charset=utf-8", html
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            # Pages hold strings from events: even if one escaped escaping, no script may run.
            csp = ("Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
                   if ctype.startswith("text/html") else "")
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"{csp}Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
