"""Benchmark: log lines/s through masking + template mining + per-window counts.

Two workloads, each measured next to bare `orjson.loads` of the same JSON lines
in the same run (the floor any consumer of these lines pays):

- realistic: a few dozen message shapes of a small fleet (HTTP access lines,
  SQL timings, cache hits, retries, connection errors, exceptions with ids,
  UUIDs, IPs, durations, e-mails, paths with numeric segments), 4 services,
  2 versions, levels mostly INFO;
- flood: every line a different random unmasked sentence after a common
  first word, 3-20 words long;
- flood_one_leaf: the same with exactly 8 words, so every line lands in one
  leaf of the miner's tree (same token count and first token): its worst case.

Targets per core: >= 50,000 lines/s realistic, >= 5,000 lines/s flood.
Rates are lines per second of this process's CPU time (`time.process_time`),
so other work on a shared machine skews them less than wall-clock rates.
Run: `python benchmarks/bench_logs.py [--lines N]`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.ingest.columns import LogColumns  # noqa: E402
from detector.ingest.interner import Interner  # noqa: E402
from detector.logs import LogSettings, LogTemplates  # noqa: E402

SERVICES = ("checkout", "payments", "catalog", "accounts")
LEVELS = {"INFO": 0, "WARN": 1, "ERROR": 2, "FATAL": 3}


def _shapes(rng: random.Random) -> list[tuple[str, float, callable]]:
    """(level, weight, message factory) for realistic lines."""
    r = rng.randint
    ip = lambda: f"10.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"  # noqa: E731
    hexid = lambda n=16: "".join(rng.choice("0123456789abcdef") for _ in range(n))  # noqa: E731
    uuid = lambda: f"{hexid(8)}-{hexid(4)}-{hexid(4)}-{hexid(4)}-{hexid(12)}"  # noqa: E731
    user = lambda: rng.choice(["alice", "bob", "carol", "dave", "erin", "frank"])  # noqa: E731
    return [
        ("INFO", 20, lambda: f"GET /api/v1/users/{r(1, 99999)}/orders 200 {r(1, 900)}ms"),
        ("INFO", 12, lambda: f"POST /api/v1/cart/{r(1, 99999)}/items 201 {r(5, 400)} ms"),
        ("INFO", 8, lambda: f"GET /api/v1/products/{r(1, 5000)} 200 {r(1, 90)}ms bytes={r(200, 90000)}"),
        ("INFO", 6, lambda: f"request {uuid()} completed in {rng.random() * 2:.3f}s"),
        ("INFO", 6, lambda: f"cache hit for key product:{r(1, 5000)} ttl={r(1, 600)}"),
        ("INFO", 4, lambda: f"cache miss for key user:{r(1, 10**6)}"),
        ("INFO", 4, lambda: f"user {r(1, 10**6)} logged in from {ip()}"),
        ("INFO", 3, lambda: f"session {hexid()} created for {user()}@example.com"),
        ("INFO", 3, lambda: f"published event OrderPlaced id={r(1, 10**7)} partition={r(0, 11)} offset={r(1, 10**9)}"),
        ("INFO", 2, lambda: f"SELECT orders by customer took {r(1, 200)} ms rows={r(0, 50)}"),
        ("INFO", 2, lambda: f"scheduled job reindex-{r(1, 9)} started at 2026-11-26T0{r(0, 9)}:{r(10, 59)}:{r(10, 59)}Z"),
        ("INFO", 2, lambda: f"Health check OK ({r(1, 20)} ms)"),
        ("INFO", 1, lambda: "Health check OK"),
        ("INFO", 1, lambda: f"loaded {r(10, 900)} feature flags in {r(1, 50)}ms"),
        ("INFO", 1, lambda: f"uploaded invoice /invoices/2026/{r(1, 12)}/{r(1000, 9999)}.pdf size {r(1, 900)}KB"),
        ("INFO", 1, lambda: f"payment authorized amount={r(1, 900)}.{r(10, 99)} currency=EUR card=****{r(1000, 9999)}"),
        ("INFO", 1, lambda: f"worker-{r(1, 16)} picked task {hexid(12)} from queue orders"),
        ("INFO", 1, lambda: f"gc pause {r(1, 80)}ms heap={r(100, 900)}MB"),
        ("WARN", 2, lambda: f"slow query took {rng.random() * 5:.2f}s on table orders"),
        ("WARN", 1, lambda: f"retrying call to inventory attempt {r(1, 3)} of 3 after {r(100, 900)} ms"),
        ("WARN", 1, lambda: f"rate limit close for client {hexid(8)}: {r(80, 99)}% of quota"),
        ("WARN", 1, lambda: f'deprecated header "X-Client-Version" sent by {ip()}'),
        ("WARN", 0.5, lambda: f"connection pool usage high: {r(40, 50)} of 50 in use"),
        ("WARN", 0.5, lambda: f"circuit breaker half-open for {rng.choice(['inventory', 'pricing'])}"),
        ("ERROR", 0.5, lambda: f"connection refused to db-{r(1, 3)}.internal:5432 after {r(1, 3000)} ms"),
        ("ERROR", 0.3, lambda: f"upstream pricing returned 503 for request {uuid()}"),
        ("ERROR", 0.2, lambda: f"java.lang.IllegalStateException: order {r(1, 10**6)} already settled\n\tat com.shop.Orders.settle(Orders.java:{r(10, 400)})"),
        ("ERROR", 0.2, lambda: f"timeout after {r(1, 30)}s waiting for lock on cart {r(1, 99999)}"),
        ("ERROR", 0.1, lambda: f"duplicate key value violates unique constraint \"orders_pkey\" id={r(1, 10**6)}"),
        ("ERROR", 0.1, lambda: f"failed to parse payload from {ip()}: unexpected token at position {r(1, 900)}"),
        ("ERROR", 0.1, lambda: f"KeyError: 'sku_{r(1, 999)}'"),
        ("FATAL", 0.01, lambda: f"out of memory: killed worker-{r(1, 16)}"),
    ]


def realistic_lines(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    shapes = _shapes(rng)
    weights = [w for _, w, _ in shapes]
    picks = rng.choices(range(len(shapes)), weights=weights, k=n)
    out = []
    for i, k in enumerate(picks):
        level, _, make = shapes[k]
        svc = SERVICES[i % len(SERVICES)]
        out.append(orjson.dumps({"type": "log", "ts": 1_764_140_000.0 + i * 0.001, "service": svc,
                                 "version": "v43" if i % 10 == 0 else "v42", "instance": f"{svc}-{i % 3}",
                                 "level": level, "message": make()}))
    return out


def flood_lines(n: int, seed: int = 2, words: tuple[int, int] = (3, 20)) -> list[bytes]:
    """Random sentences after a common first word; `words` = (min, max) words per line."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))

    return [orjson.dumps({"type": "log", "ts": 1_764_140_000.0 + i * 0.001, "service": "checkout",
                          "version": "v42", "level": "ERROR",
                          "message": "request failed: " + " ".join(word() for _ in range(rng.randint(*words)))})
            for i in range(n)]


def to_columns(docs: list[dict], interner: Interner) -> LogColumns:
    """Plain column building (the core's decoder does this; not part of the timed step)."""
    n = len(docs)
    return LogColumns(
        pos=np.arange(n, dtype=np.int64),
        ts=np.array([d["ts"] for d in docs], dtype=np.float64),
        service=np.array(interner.intern_many([d["service"] for d in docs]), dtype=np.int32),
        version=np.array(interner.intern_many([d.get("version", "") for d in docs]), dtype=np.int32),
        instance=np.array(interner.intern_many([d.get("instance", "") for d in docs]), dtype=np.int32),
        level=np.array([LEVELS.get(d["level"].upper(), 0) for d in docs], dtype=np.int8),
        logger=np.full(n, -1, dtype=np.int32),
        message=[d["message"] for d in docs],
    )


def measure(lines: list[bytes], batch: int, settings: LogSettings) -> dict:
    t0 = time.process_time()
    docs = [orjson.loads(b) for b in lines]
    t_json = time.process_time() - t0
    interner = Interner()
    batches = [to_columns(docs[i:i + batch], interner) for i in range(0, len(docs), batch)]
    templates = LogTemplates(settings)
    t0 = time.process_time()
    for cols in batches:
        templates.add_batch(cols, interner)
        templates.close_windows(float(cols.ts[-1]) - settings.window_s)
    templates.close_all()
    t_mine = time.process_time() - t0
    n = len(lines)
    return {
        "lines": n,
        "orjson_loads_lines_per_s": round(n / t_json),
        "mine_and_count_lines_per_s": round(n / t_mine),
        "templates": templates.stats["templates"],
        "mined_lines": templates.stats["mined_lines"],
        "overflow_lines": templates.stats["overflow_lines"],
        "state_bytes": len(templates.to_bytes()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000, help="realistic lines (flood uses a quarter)")
    ap.add_argument("--batch", type=int, default=2_000, help="rows per add_batch call")
    args = ap.parse_args(argv)
    settings = LogSettings()
    realistic = realistic_lines(args.lines)
    flood = flood_lines(max(1, args.lines // 4))
    one_leaf = flood_lines(max(1, args.lines // 4), words=(8, 8))
    # Warm the process (imports, regex and numpy code paths) on other lines, so
    # the token memo holds nothing of the measured lines.
    measure(realistic_lines(5_000, seed=99), args.batch, settings)
    result = {
        "realistic": measure(realistic, args.batch, settings),
        "flood": measure(flood, args.batch, settings),
        "flood_one_leaf": measure(one_leaf, args.batch, settings),
        "targets_lines_per_s": {"realistic": 50_000, "flood": 5_000, "flood_one_leaf": 5_000},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
