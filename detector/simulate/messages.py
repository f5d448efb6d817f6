"""Log message shapes: the templates services print and the values they fill in.

Messages look like production lines (ids, hex, uuids, IPs, durations, paths)
so that template mining has real work: the constant words identify the
template, the placeholders vary per line. Values are drawn vectorised per
template with numpy and only the final string formatting is per line.

Placeholders usable in scenario patterns (`new_log_template.pattern`) are the
keys of `PLACEHOLDERS`; request-derived ones (`path`, `status`, ...) take the
value of the request the line belongs to.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIG_KEYS = (
    "timeout_ms",
    "endpoint_url",
    "api_key",
    "retry_policy",
    "currency_map",
    "merchant_id",
    "region",
    "max_connections",
    "feature_flags",
    "signing_secret",
    "batch_size",
    "tls_ca_path",
)
TABLES = ("orders", "order_items", "payments", "customers", "inventory", "sessions", "carts", "refunds")
DEPENDENCIES = ("inventory-api", "pricing-api", "fraud-check", "ledger", "notification-gw", "auth-api", "search-index")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1")
EXCEPTIONS = (
    "TimeoutError",
    "ConnectionResetError",
    "IllegalStateException",
    "KeyError",
    "SerializationException",
)


@dataclass
class RowContext:
    """Per-line attributes of the requests that caused a batch of log lines."""

    service: list[str]
    path: list[str]
    method: list[str]
    status: list[int]
    latency_ms: list[float]
    instance: list[str]
    version: list[str]
    db: list[str]

    def __len__(self) -> int:
        return len(self.service)


Field = Callable[[np.random.Generator, int, RowContext], list]


def _ints(lo: int, hi: int) -> Field:
    return lambda rng, m, ctx: rng.integers(lo, hi, m).tolist()


def _choice(values: tuple[str, ...]) -> Field:
    arr = np.array(values, dtype=object)
    return lambda rng, m, ctx: arr[rng.integers(0, len(values), m)].tolist()


def _hex(digits: int) -> Field:
    # Python ints are exact to any width; numpy's uint64 caps one draw at 16 digits.
    def draw(rng: np.random.Generator, m: int, ctx: RowContext) -> list[str]:
        words = rng.integers(0, 2**32, size=(m, (digits + 7) // 8), dtype=np.uint64).tolist()
        fmt = "{:08x}" * len(words[0]) if m else ""
        return [fmt.format(*w)[:digits] for w in words]

    return draw


def _uuid(rng: np.random.Generator, m: int, ctx: RowContext) -> list[str]:
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}" for h in _hex(32)(rng, m, ctx)]


def _ip(rng: np.random.Generator, m: int, ctx: RowContext) -> list[str]:
    octets = rng.integers(0, 256, size=(m, 3)).tolist()
    return [f"10.{a}.{b}.{c}" for a, b, c in octets]


def _ms(rng: np.random.Generator, m: int, ctx: RowContext) -> list[float]:
    return np.round(rng.lognormal(np.log(40.0), 1.0, m), 1).tolist()


def _amount(rng: np.random.Generator, m: int, ctx: RowContext) -> list[str]:
    return [f"{x:.2f}" for x in rng.lognormal(np.log(45.0), 0.9, m).tolist()]


PLACEHOLDERS: dict[str, Field] = {
    "n": _ints(1, 1000),
    "k": _ints(1, 4),
    "line": _ints(20, 2400),
    "id": _ints(100_000, 100_000_000),
    "user": _ints(1, 2_000_000),
    "port": _ints(1024, 65536),
    "pct": _ints(0, 101),
    "uuid": _uuid,
    "hex": _hex(8),
    "hex16": _hex(16),
    "trace": _hex(32),
    "ip": _ip,
    "ms": _ms,
    "amount": _amount,
    "key": _choice(CONFIG_KEYS),
    "table": _choice(TABLES),
    "dep": _choice(DEPENDENCIES),
    "region": _choice(REGIONS),
    "exception": _choice(EXCEPTIONS),
    "service": lambda rng, m, ctx: ctx.service,
    "path": lambda rng, m, ctx: ctx.path,
    "method": lambda rng, m, ctx: ctx.method,
    "status": lambda rng, m, ctx: ctx.status,
    "latency": lambda rng, m, ctx: [round(x, 1) for x in ctx.latency_ms],
    "instance": lambda rng, m, ctx: ctx.instance,
    "version": lambda rng, m, ctx: ctx.version,
    "db": lambda rng, m, ctx: ctx.db,
}


class Template:
    """A message pattern with named placeholders, compiled for fast filling."""

    __slots__ = ("pattern", "level", "logger", "_fmt", "_fields")

    def __init__(self, pattern: str, level: str, logger: str) -> None:
        self.pattern = pattern
        self.level = level
        self.logger = logger
        parts, fields = [], []
        for literal, name, spec, _ in string.Formatter().parse(pattern):
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if name is not None:
                if name not in PLACEHOLDERS:
                    raise ValueError(f"unknown placeholder {{{name}}} in log pattern {pattern!r}")
                parts.append("{" + str(len(fields)) + (f":{spec}" if spec else "") + "}")
                fields.append(PLACEHOLDERS[name])
        self._fmt = "".join(parts)
        self._fields = fields

    def render(self, rng: np.random.Generator, ctx: RowContext) -> list[str]:
        m = len(ctx)
        if not self._fields:
            return [self._fmt.replace("{{", "{").replace("}}", "}")] * m
        cols = [f(rng, m, ctx) for f in self._fields]
        fmt = self._fmt.format
        return [fmt(*row) for row in zip(*cols)]


# Everyday lines every service prints. (pattern, relative weight, logger suffix)
INFO_TEMPLATES = (
    (
        "request completed method={method} path={path} status={status} duration_ms={latency} request_id={uuid}",
        6,
        "http",
    ),
    ("user {user} authenticated from {ip} session={hex16}", 2, "auth"),
    ("cache hit ratio {pct}% for region {region} ({n} keys scanned)", 1, "cache"),
    ("order {id} created for customer {user} total={amount} EUR", 2, "orders"),
    ("published event {service}.updated offset={id} partition={k}", 1, "events"),
    ("fetched {n} rows from {table} in {ms} ms", 2, "db"),
)
WARN_TEMPLATES = (
    ("slow query on {table}: {ms} ms exceeds 250 ms threshold query_id={hex}", 3, "db"),
    ("retrying call to {dep} attempt {k}/3 after {ms} ms", 3, "client"),
    ("connection pool {db} at {pct}% capacity ({n} waiting)", 1, "db"),
    ("deprecated header X-Client-Version from {ip}, request_id={uuid}", 1, "http"),
)
ERROR_TEMPLATES = (
    ("upstream {dep} returned {status} for request {uuid}", 4, "client"),
    ("unhandled {exception} while processing {method} {path} trace_id={trace}", 3, "http"),
    ("failed to commit transaction {hex16} on {db}: deadlock detected, rolled back after {ms} ms", 1, "db"),
    ("request {uuid} failed: connection reset by peer {ip}:{port}", 2, "http"),
)
SLOW_REQUEST_TEMPLATE = ("slow request {method} {path} took {latency} ms (request_id={uuid})", "WARN", "http")
INFRA_TIMEOUT_TEMPLATE = "connection to db {db} timed out after %d ms (pool={service}, attempt {k})"
INFRA_SLOW_TEMPLATE = ("db {db} query latency {ms} ms above threshold, table={table}", "WARN", "db")
SHED_TEMPLATE = ("rejecting request {method} {path}: queue depth {n} exceeds limit 500, load shedding", "WARN", "http")
BLIP_TEMPLATE = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure "
    "(pod {instance} not ready, {ip}:8080 refused)",
    "ERROR",
    "proxy",
)
