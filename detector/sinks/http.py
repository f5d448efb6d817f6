"""Outbound HTTP for the sinks: JSON POSTs with retries, exponential backoff and jitter.

One small client shared by the Alertmanager, PagerDuty, webhook and rollback
sinks, built on the standard library (``http.client``) in a private thread
pool so that no HTTP dependency is needed and a slow endpoint never blocks
the event loop. Each blocking socket operation is bounded by ``timeout_s``.

Retry rules, as paging APIs ask of their clients:

* 2xx: done.
* 429, 5xx, connection errors and timeouts: retried up to ``max_retries``
  times. The wait before retry *n* (0-based) is
  ``min(max_delay_s, base_delay_s * 2**n)`` scaled by a random factor in
  [0.5, 1) ("equal jitter": clients that failed together do not retry
  together, yet every client waits at least half the nominal delay). A
  ``Retry-After`` header (seconds or an HTTP date) raises the wait to what the
  server asked for, capped at ``max_delay_s`` so that one header cannot park a
  sink for an hour; the sink's bounded queue absorbs the rest.
* Any other status (400 bad body, 401/403 bad key, 404 wrong URL): not
  retried, the same request would fail the same way.

Nothing here raises for an HTTP or network failure: ``post_json`` returns an
``HttpResult`` and the caller counts it. URLs are logged without path, query
or credentials (webhook URLs often carry a token in the path).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import http.client
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import structlog

from detector import __version__

log = structlog.get_logger("detector.sinks.http")

MAX_RESPONSE_BYTES = 64 * 1024  # paging APIs answer with a few hundred bytes; the rest is not read
USER_AGENT = f"deploy-detector/{__version__}"


class HttpConfigError(ValueError):
    """A sink URL that cannot be used; the message names the URL and what to write instead."""


@dataclass(frozen=True)
class HttpResult:
    """What became of one POST after its retries."""

    status: int  # the last HTTP status; 0 when no response arrived (connection error, timeout)
    body: bytes
    attempts: int
    error: str = ""  # why the last attempt failed, for logs; empty on success

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def retryable(status: int) -> bool:
    """Whether a response status (0 = no response) is worth another attempt."""
    return status == 0 or status == 429 or status >= 500


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def redact_url(url: str) -> str:
    """scheme://host[:port] of a URL: enough to tell endpoints apart in logs, no path tokens or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def check_url(url: str, what: str) -> None:
    """Raise HttpConfigError unless `url` is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpConfigError(f"{what} must be an absolute http:// or https:// URL with a host "
                              f"(got {url!r})")
    try:
        parts.port
    except ValueError:
        raise HttpConfigError(f"{what} has a port that is not a number from 0 to 65535 "
                              f"(got {parts.netloc.rpartition('@')[2]!r}); write it as host:PORT") from None


def _post_blocking(url: str, data: bytes, headers: Mapping[str, str], timeout_s: float,
                   ) -> tuple[int, str | None, bytes]:
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        all_headers.setdefault("Authorization", "Basic " + base64.b64encode(creds).decode())
    try:
        conn.request("POST", path, body=data, headers=all_headers)
        resp = conn.getresponse()
        body = resp.read(MAX_RESPONSE_BYTES)
        return resp.status, resp.getheader("Retry-After"), body
    finally:
        conn.close()


class HttpClient:
    """POSTs JSON with the retry rules above; one instance per sink set, safe to share between sinks."""

    def __init__(self, *, timeout_s: float = 5.0, max_retries: int = 5, base_delay_s: float = 0.5,
                 max_delay_s: float = 30.0, max_workers: int = 4, seed: int | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if timeout_s <= 0 or max_retries < 0 or base_delay_s < 0 or max_delay_s < base_delay_s:
            raise ValueError(f"HttpClient needs timeout_s > 0, max_retries >= 0 and 0 <= base_delay_s <= max_delay_s "
                             f"(got timeout_s={timeout_s}, max_retries={max_retries}, "
                             f"base_delay_s={base_delay_s}, max_delay_s={max_delay_s})")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._rng = random.Random(seed)
        self._sleep = sleep
        # A private pool: a hung endpoint occupies these threads, never the loop's default executor.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="detector-sink-http")
        self.retries = 0  # attempts beyond the first, over the client's life

    def backoff_s(self, retry: int, retry_after_s: float | None = None) -> float:
        """Wait before retry number `retry` (0-based), jittered, raised to Retry-After, capped."""
        nominal = min(self.max_delay_s, self.base_delay_s * (2 ** retry))
        wait = nominal * (0.5 + 0.5 * self._rng.random())
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait

    async def post_json(self, url: str, body: Any, *, headers: Mapping[str, str] | None = None) -> HttpResult:
        """POST `body` (bytes as they are, anything else as JSON) to `url`; retry per the module rules."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = dict(headers or {})
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            retry_after_s: float | None = None
            try:
                # The socket timeout bounds each read and write; the outer bound catches a server
                # that drips bytes slowly enough to reset it forever.
                status, retry_after, payload = await asyncio.wait_for(
                    loop.run_in_executor(self._pool, _post_blocking, url, data, headers, self.timeout_s),
                    timeout=self.timeout_s * 3)
                error = "" if 200 <= status < 300 else f"HTTP {status}: {payload[:200].decode('utf-8', 'replace')}"
                retry_after_s = parse_retry_after(retry_after, time.time())
            except (OSError, http.client.HTTPException, TimeoutError) as e:
                status, payload = 0, b""
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if 200 <= status < 300:
                return HttpResult(status, payload, attempt)
            if not retryable(status) or attempt > self.max_retries:
                return HttpResult(status, payload, attempt, error)
            wait_s = self.backoff_s(attempt - 1, retry_after_s)
            self.retries += 1
            log.debug("http_retry", endpoint=redact_url(url), status=status, attempt=attempt,
                      wait_s=round(wait_s, 3), error=error[:200])
            await self._sleep(wait_s)

    def close(self) -> None:
        """Release the worker threads; a request still in flight ends at its socket timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)
