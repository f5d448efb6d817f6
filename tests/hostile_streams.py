"""Hostile but contract-valid streams from a seed, with invalid lines mixed in, and their replay's accounting.

`generate(seed)` builds one JSONL stream (one or two files) of odd corners of the
wire contract: 1-8 services at 0.001 to 50 requests/s that appear and vanish,
gaps of hours, endpoints seen once, a cardinality flood, versions that never
serve, deploys of silent services and before any traffic, deploys in a row (the
same version again, rollbacks), canary weights at 0 and 1, events exactly on
window boundaries and late within the lateness (and beyond it), one-sample and
constant metrics, huge and tiny values, empty, long and unicode log lines,
checks of unknown deploys, RFC 3339 times. Invalid lines (bad JSON, wrong types,
missing fields, non-finite numbers, far-future times, invalid UTF-8) are mixed
in and remembered by their line number.

`run(stream, folder, pipeline, partitions)` replays it with `detector.replay.replay` and
returns the records and an `Account`: what the replay read, dead-lettered,
counted late, folded into closed windows, and took as deploys, checks and incidents;
`check(stream, account)` says what is wrong with it (an invalid line accepted, a
valid one lost without a trace). Used by `tests/core/test_stream_fuzz.py` and
`benchmarks/stream_fuzz.py`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

BASE = 1764140400.0  # a window boundary (2025-11-26 07:00 UTC)
YEAR_3000 = 32503680000
LEVELS = ["INFO", "info", "WARN", "warning", "Error", "ERROR", "FATAL", "critical", "debug", "TRACE", "x" * 64, "é"]
ODD_TEXT = ["", " ", "\t", "\u200b", "ünïcödé ✓ 日本語 🚀", "\u202eRTL override", "null", "{}", "%s %d {0}",
            "a\x00b", "line\nbreak", "\\u0000", "SELECT * FROM t WHERE id = 42", "🙂" * 300]


@dataclass
class Stream:
    files: list[list[bytes]]  # lines per input file
    invalid: dict[tuple[int, int], str]  # (file, 1-based line) -> what is wrong with it
    valid: Counter  # valid events by type
    corners: Counter = field(default_factory=Counter)  # odd corners this stream reaches
    batching_free: bool = True  # no event later than the lateness: the records do not depend on the batching

    def write(self, folder: Path) -> list[Path]:
        paths = []
        for i, lines in enumerate(self.files):
            p = folder / f"stream-{i}.jsonl"
            p.write_bytes(b"".join(line + b"\n" for line in lines))
            paths.append(p)
        return paths


def _rfc3339(ts: float, rng: random.Random) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if rng.random() < 0.5:
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    off = timedelta(hours=rng.choice([-8, 2, 5.5]))
    return dt.astimezone(timezone(off)).isoformat()


class _Gen:
    def __init__(self, seed: int, budget: int) -> None:
        self.rng = rng = random.Random(seed)
        self.events: list[tuple[float, float, dict]] = []  # (arrival key, ts, event)
        self.corners: Counter = Counter()
        self.span = rng.choice([300.0, 1200.0, 3600.0, 3 * 3600.0])
        self.t0 = BASE + rng.randrange(0, 7 * 86400, 10) + (0.0 if rng.random() < 0.5 else rng.random() * 10)
        self.budget = budget
        # Events later than the lateness are late or not depending on when windows closed, which
        # depends on the batching: only streams without them must give the same records at any.
        self.beyond_lateness = rng.random() < 0.3

    # --- helpers ---

    def ts_value(self, ts: float):
        """`ts` as a float, an integer or an RFC 3339 string (only for whole seconds: same value)."""
        r = self.rng.random()
        if ts != int(ts):
            return ts
        if r < 0.3:
            self.corners["rfc3339 ts"] += 1
            return _rfc3339(ts, self.rng)
        if r < 0.6:
            self.corners["integer ts"] += 1
            return int(ts)
        return ts

    def on_boundary(self, ts: float) -> float:
        if self.rng.random() < 0.08:
            self.corners["ts on a window boundary"] += 1
            return math.floor(ts / 10.0) * 10.0
        return ts

    def add(self, ts: float, ev: dict) -> None:
        rng = self.rng
        ts = self.on_boundary(ts)
        if rng.random() < 0.1:
            ts = float(math.floor(ts))
        key = ts
        r = rng.random()
        if r < 0.15:
            key = ts + rng.uniform(0.0, 4.5)  # arrives late, within the lateness
            self.corners["out of order within lateness"] += 1
        elif r < 0.152 and self.beyond_lateness:
            key = ts + rng.uniform(30.0, 600.0)  # beyond the lateness: counted late
            self.corners["late beyond lateness"] += 1
        ev["ts"] = self.ts_value(ts)
        self.events.append((key, ts, ev))

    def poisson(self, rate: float, a: float, b: float) -> list[float]:
        out, t = [], a
        while True:
            t += self.rng.expovariate(rate)
            if t >= b:
                return out
            out.append(t)

    # --- the stream ---

    def build(self) -> None:
        rng = self.rng
        n_services = rng.randint(1, 8)
        names = [f"svc-{i}" for i in range(n_services)]
        if n_services > 1 and rng.random() < 0.3:
            names[1] = "ωμέγα-サービス"
            self.corners["unicode service"] += 1
        if n_services > 2 and rng.random() < 0.2:
            names[2] = "s" * 200
            self.corners["200-character service"] += 1
        rates = [10 ** rng.uniform(-3, math.log10(50)) for _ in names]
        if rng.random() < 0.15:
            rates = [0.005]  # the quiet service that once crashed the rollup
            names = names[:1]
            self.corners["one quiet service"] += 1
        spans = []
        for _ in names:
            a, b = 0.0, self.span
            if rng.random() < 0.3:
                a = rng.uniform(0, self.span * 0.7)
                self.corners["service appears mid-stream"] += 1
            if rng.random() < 0.3:
                b = rng.uniform(a, self.span)
                self.corners["service disappears mid-stream"] += 1
            spans.append((a, b))
        expected = sum(r * (b - a) for r, (a, b) in zip(rates, spans)) * 1.6
        scale = min(1.0, self.budget / max(expected, 1.0))
        rates = [max(r * scale, 0.001) for r in rates]
        for name, rate, (a, b) in zip(names, rates, spans):
            self.service(name, rate, a, b)
        if rng.random() < 0.3:
            self.ghost_service()
        if rng.random() < 0.4:
            self.corners["checks of unknown deploys"] += 1
            for _ in range(rng.randint(1, 3)):
                self.add(self.t0 + rng.uniform(0, self.span), {
                    "type": "check", "service": rng.choice(names + ["nobody"]), "name": "smoke",
                    "passed": rng.random() < 0.5, "deploy_id": f"d-unknown-{rng.randrange(999)}"})
        if rng.random() < 0.3:
            self.corners["incidents"] += 1
            for i in range(rng.randint(1, 3)):
                self.add(self.t0 + rng.uniform(0, self.span), {
                    "type": "incident", "service": rng.choice(names), "incident_id": f"inc-{i}",
                    "status": rng.choice(["opened", "resolved"]), "deploy_id": rng.choice([None, "d-x"]),
                    "root_cause": rng.choice(["code", "config", "data_or_infra", "unknown"])})
        self.gaps()

    def service(self, name: str, rate: float, a: float, b: float) -> None:
        rng = self.rng
        t0 = self.t0
        flood = rng.random() < 0.12 and rate * (b - a) > 250
        n_endpoints = rng.randint(1, 6)
        endpoints = [f"GET /e{i}" for i in range(n_endpoints)]
        if rng.random() < 0.2:
            endpoints.append("POST /ünï/✓")
        # deploys: (time, version, fault, canary weight)
        n_deploys = rng.choice([0, 0, 1, 1, 2, 3, 5])
        versions = ["v1"]
        deploys = []
        for k in range(n_deploys):
            kind = rng.random()
            if kind < 0.15 and len(versions) > 1:
                v = versions[-2]  # a rollback to the previous version
                self.corners["redeploy of the previous version"] += 1
            elif kind < 0.3:
                v = versions[-1]  # the same version again
                self.corners["redeploy of the same version"] += 1
            else:
                v = f"v{len(versions) + 1}"
            if rng.random() < 0.1:
                at = a - rng.uniform(1, 600)  # before the service's traffic
                self.corners["deploy before any traffic"] += 1
            elif deploys and rng.random() < 0.25:
                at = deploys[-1][0] + rng.uniform(0, 20)  # right after the previous one
                self.corners["deploys right after each other"] += 1
            else:
                at = rng.uniform(a, max(a, b))
            weight = None
            if rng.random() < 0.35:
                weight = rng.choice([0.0, 1.0, 1e-9, 0.999999, 0.5, 0.05])
                self.corners[f"canary weight {weight:g}"] += 1
            fault = rng.choice([None, None, "errors", "latency", "silent"])
            if fault == "silent":
                self.corners["version that never serves"] += 1
            deploys.append((at, v, fault, weight))
            versions.append(v)
        deploys.sort(key=lambda d: d[0])
        for i, (at, v, fault, weight) in enumerate(deploys):
            prev = deploys[i - 1][1] if i else "v1"
            ev = {"type": "deploy", "service": name, "deploy_id": f"d-{name[:8]}-{i}", "version": v,
                  "previous_version": prev}
            if weight is not None:
                ev["strategy"], ev["canary_weight"] = "canary", weight
            elif rng.random() < 0.5:
                ev["strategy"] = rng.choice(["rolling", "blue_green", "recreate"])
            if rng.random() < 0.2:
                ev["labels"] = {"team": "ü", "migration": "true"}
                ev["reviewers"] = []
            self.add(t0 + max(at, -3600.0), ev)
            if rng.random() < 0.3:
                later = t0 + at + rng.uniform(0, 120)
                self.add(later, {**ev, "phase": rng.choice(["finished", "rolled_back"])})
            if rng.random() < 0.4:
                self.corners["checks"] += 1
                self.add(t0 + at + rng.uniform(0, 60), {
                    "type": "check", "service": name, "name": "smoke", "passed": fault is None or rng.random() < 0.3,
                    "version": v, "deploy_id": ev["deploy_id"], "duration_ms": rng.choice([0, 12.5, 1e9])})

        def version_at(t: float) -> tuple[str | None, str | None]:
            cur, fault, weight, prev = "v1", None, None, "v1"
            for at, v, f, w in deploys:
                if at <= t:
                    prev, cur, fault, weight = cur, v, f, w
            if fault == "silent":
                return prev, None
            if weight is not None and rng.random() >= weight:
                return prev, None
            return cur, fault

        once = 0
        for t in self.poisson(rate, a, b):
            v, fault = version_at(t)
            ep = rng.choice(endpoints)
            if flood and rng.random() < 0.5:
                ep = f"GET /flood/{rng.getrandbits(40):x}"
                self.corners["flood endpoint"] += 1
            elif rng.random() < 0.01:
                ep = f"GET /once/{once}"
                once += 1
                self.corners["endpoint seen once"] += 1
            err = 0.3 if fault == "errors" else 0.002
            status = rng.choice([500, 503, 599]) if rng.random() < err \
                else rng.choice([200, 200, 200, 204, 302, 404, 100])
            lat = rng.lognormvariate(3.5, 0.6) * (6.0 if fault == "latency" else 1.0)
            r = rng.random()
            if r < 0.002:
                lat, self.corners["huge latency"] = 1e300, self.corners["huge latency"] + 1
            elif r < 0.004:
                lat, self.corners["zero latency"] = 0, self.corners["zero latency"] + 1
            elif r < 0.006:
                lat, self.corners["tiny latency"] = 5e-324, self.corners["tiny latency"] + 1
            ev = {"type": "request", "service": name, "endpoint": ep, "status": status, "latency_ms": lat}
            if rng.random() < 0.97:
                ev["version"] = v
            else:
                self.corners["request without version"] += 1
            if rng.random() < 0.3:
                ev["instance"] = f"i-{rng.randrange(3)}"
            if rng.random() < 0.05:
                ev["txn"] = rng.choice(["checkout", "login", "ü"])
            self.add(t0 + t, ev)
            if rng.random() < 0.3:
                self.log(name, t, v, fault)
        self.metrics(name, a, b)

    def log(self, name: str, t: float, v: str | None, fault: str | None) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.1:
            msg = rng.choice(ODD_TEXT)
            self.corners["odd log text"] += 1
        elif r < 0.102:
            msg = "x" * rng.choice([5_000, 100_000])
            self.corners["very long log line"] += 1
        elif fault == "errors" and r < 0.5:
            msg = f"TypeError: bad thing {rng.randrange(100)} in handler"
        else:
            msg = f"served request {rng.randrange(10_000)} in {rng.randrange(300)} ms"
        level = "ERROR" if fault == "errors" and r < 0.5 else rng.choice(LEVELS)
        ev = {"type": "log", "service": name, "level": level, "message": msg}
        if v is not None:
            ev["version"] = v
        if rng.random() < 0.1:
            ev["trace_id"], ev["logger"] = "", "ü.logger"
        self.add(self.t0 + t + rng.uniform(0, 0.5), ev)

    def metrics(self, name: str, a: float, b: float) -> None:
        rng = self.rng
        for m in range(rng.randint(0, 3)):
            kind = rng.choice(["one sample", "constant", "noisy", "huge", "tiny", "step"])
            self.corners[f"metric {kind}"] += 1
            every = rng.choice([1.0, 10.0, 15.0, 60.0, 300.0])
            times = [a + rng.uniform(0, b - a)] if kind == "one sample" else \
                [a + i * every for i in range(int((b - a) // every))]
            if len(times) > self.budget // 4:
                times = times[: self.budget // 4]
            labels = rng.choice([None, {}, {"region": "eu"}, {"ü": "✓", "": ""}])
            for i, t in enumerate(times):
                value = {"one sample": 1.0, "constant": 42.0, "noisy": rng.gauss(100, 10),
                         "huge": rng.choice([1.7e308, -1.7e308, 1e300]), "tiny": rng.choice([5e-324, -5e-324, 0.0]),
                         "step": 1.0 if i < len(times) // 2 else 1e6}[kind]
                ev = {"type": "metric", "service": name, "name": rng.choice(["db_latency_ms", f"m{m}"]),
                      "value": value}
                if labels is not None:
                    ev["labels"] = labels
                self.add(self.t0 + t, ev)

    def ghost_service(self) -> None:
        """A service that is deployed (and checked) but never sends anything else."""
        rng = self.rng
        self.corners["deploy of a service with no traffic"] += 1
        for i in range(rng.randint(1, 3)):
            at = self.t0 + rng.uniform(-60, self.span)
            self.add(at, {"type": "deploy", "service": "ghost", "deploy_id": f"g-{i}", "version": f"g{i}"})
            if rng.random() < 0.5:
                self.add(at + 5, {"type": "check", "service": "ghost", "name": "smoke", "passed": False,
                                  "deploy_id": f"g-{i}"})

    def gaps(self) -> None:
        """Silences of hours: every event after a gap's start moves later by its length."""
        rng = self.rng
        for _ in range(rng.choice([0, 0, 1, 2])):
            at = self.t0 + rng.uniform(0, self.span)
            length = rng.choice([3600.0, 2 * 3600.0, 6 * 3600.0, 86400.0])
            self.corners["gap of hours"] += 1
            moved = []
            for key, ts, ev in self.events:
                if ts >= at:
                    ts2 = ts + length
                    if not isinstance(ev["ts"], str):
                        ev["ts"] = ts2 if isinstance(ev["ts"], float) else int(ts2)
                    else:
                        ev["ts"] = _rfc3339(ts2, rng)
                    moved.append((key + length, ts2, ev))
                else:
                    moved.append((key, ts, ev))
            self.events = moved


# --- invalid lines --------------------------------------------------------------------------------

def _request(at: float, **over) -> dict:
    d = {"type": "request", "ts": at, "service": "svc-0", "endpoint": "GET /e0", "status": 200, "latency_ms": 12.0}
    d.update(over)
    return {k: v for k, v in d.items() if v is not _DROP}


_DROP = object()


def invalid_line(rng: random.Random, ts: float) -> tuple[bytes, str]:
    """One line the contract refuses, and a name for what is wrong with it."""
    kinds = [
        ("not json", lambda: b"{not json"),
        ("truncated json", lambda: orjson.dumps(_request(ts))[:-7]),
        ("array", lambda: b"[1, 2, 3]"),
        ("string", lambda: b'"request"'),
        ("null", lambda: b"null"),
        ("nan", lambda: orjson.dumps(_request(ts)).replace(b'"latency_ms":12.0', b'"latency_ms":NaN')),
        ("infinite", lambda: orjson.dumps(_request(ts)).replace(b'"latency_ms":12.0', b'"latency_ms":1e999')),
        ("invalid utf-8", lambda: orjson.dumps(_request(ts)).replace(b"GET /e0", b"GET /\xff\xfe")),
        ("binary", lambda: b"\x00\x01\x02\x80\xff"),
        ("missing type", lambda: orjson.dumps(_request(ts, type=_DROP))),
        ("unknown type", lambda: orjson.dumps(_request(ts, type="requests"))),
        ("type not a string", lambda: orjson.dumps(_request(ts, type=5))),
        ("missing status", lambda: orjson.dumps(_request(ts, status=_DROP))),
        ("status as string", lambda: orjson.dumps(_request(ts, status="200"))),
        ("status as float", lambda: orjson.dumps(_request(ts, status=200.0))),
        ("status out of range", lambda: orjson.dumps(_request(ts, status=600))),
        ("negative latency", lambda: orjson.dumps(_request(ts, latency_ms=-1))),
        ("latency as string", lambda: orjson.dumps(_request(ts, latency_ms="12"))),
        ("empty service", lambda: orjson.dumps(_request(ts, service=""))),
        ("long service", lambda: orjson.dumps(_request(ts, service="s" * 201))),
        ("service not a string", lambda: orjson.dumps(_request(ts, service=["a"]))),
        ("missing ts", lambda: orjson.dumps(_request(ts, ts=_DROP))),
        ("ts as words", lambda: orjson.dumps(_request(ts, ts="yesterday"))),
        ("ts without zone", lambda: orjson.dumps(_request(ts, ts="2026-11-26T06:00:00"))),
        ("ts as boolean", lambda: orjson.dumps(_request(ts, ts=True))),
        ("ts in year 3000", lambda: orjson.dumps(_request(ts, ts=YEAR_3000))),
        ("ts in milliseconds", lambda: orjson.dumps(_request(ts, ts=ts * 1000))),
        ("ts a month ahead", lambda: orjson.dumps(_request(ts, ts=ts + 30 * 86400))),
        ("log without message", lambda: orjson.dumps({"type": "log", "ts": ts, "service": "svc-0", "level": "INFO"})),
        ("log level a number", lambda: orjson.dumps({"type": "log", "ts": ts, "service": "svc-0", "level": 3,
                                                     "message": "m"})),
        ("metric value a string", lambda: orjson.dumps({"type": "metric", "ts": ts, "service": "svc-0",
                                                        "name": "cpu", "value": "1.0"})),
        ("metric value null", lambda: orjson.dumps({"type": "metric", "ts": ts, "service": "svc-0", "name": "cpu",
                                                    "value": None})),
        ("metric label not a string", lambda: orjson.dumps({"type": "metric", "ts": ts, "service": "svc-0",
                                                            "name": "cpu", "value": 1, "labels": {"a": 1}})),
        ("deploy canary weight 1.5", lambda: orjson.dumps({"type": "deploy", "ts": ts, "service": "svc-0",
                                                           "deploy_id": "bad", "version": "v9",
                                                           "canary_weight": 1.5})),
        ("deploy unknown phase", lambda: orjson.dumps({"type": "deploy", "ts": ts, "service": "svc-0",
                                                       "deploy_id": "bad", "version": "v9", "phase": "begun"})),
        ("deploy without version", lambda: orjson.dumps({"type": "deploy", "ts": ts, "service": "svc-0",
                                                         "deploy_id": "bad"})),
        ("check passed as string", lambda: orjson.dumps({"type": "check", "ts": ts, "service": "svc-0",
                                                         "name": "smoke", "passed": "yes"})),
        ("incident bad root cause", lambda: orjson.dumps({"type": "incident", "ts": ts, "service": "svc-0",
                                                          "incident_id": "i", "root_cause": "gremlins"})),
        ("deeply nested", lambda: b'{"type":"request","x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
    ]
    name, make = rng.choice(kinds)
    return make(), name


FAR_AHEAD = {"ts in year 3000", "ts in milliseconds", "ts a month ahead"}


def generate(seed: int, budget: int = 4000, invalid_share: float = 0.02) -> Stream:
    """One stream of about `budget` valid events (fewer for quiet seeds), `invalid_share` invalid lines."""
    g = _Gen(seed, budget)
    g.build()
    rng = g.rng
    g.events.sort(key=lambda e: (e[0], e[1]))
    two_files = rng.random() < 0.25
    if two_files:
        g.corners["deploys and checks in a file of their own"] += 1
    files: list[list[bytes]] = [[], []] if two_files else [[]]
    invalid: dict[tuple[int, int], str] = {}
    valid: Counter = Counter()
    last_far = -100
    for key, ts, ev in g.events:
        f = 1 if two_files and ev["type"] in ("deploy", "check") else 0
        files[f].append(orjson.dumps(ev))
        valid[ev["type"]] += 1
        if rng.random() < invalid_share:
            line, what = invalid_line(rng, ts)
            if what in FAR_AHEAD:
                # far-ahead lines apart from each other, or they would confirm each other's jump
                if len(files[0]) - last_far < 20:
                    continue
                last_far = len(files[0])
                f = 0
            files[f].append(line)
            invalid[(f, len(files[f]))] = what
        if rng.random() < 0.002:
            files[f].append(rng.choice([b"", b"   ", b"\t"]))
            g.corners["blank line"] += 1
    if rng.random() < 0.05 and files[0]:
        # one line larger than the message size limit
        files[0].append(b'{"type":"log","ts":%d,"service":"svc-0","level":"INFO","message":"%s"}'
                        % (int(g.t0), b"y" * 1_100_000))
        invalid[(0, len(files[0]))] = "larger than max_message_bytes"
    return Stream([f for f in files], invalid, valid, g.corners, not g.corners["late beyond lateness"])


# --- the replay and its accounting ---------------------------------------------------------------

@dataclass
class Account:
    """What a replay did with every line, from its own counters and the cores'."""

    lines: int = 0  # non-blank lines read (ReplayResult.events)
    decoded: Counter = field(default_factory=Counter)  # events the decoder accepted, by type
    dead: dict = field(default_factory=dict)  # (file, line) -> reason, from the dead-letter callback
    rejected: int = 0  # ReplayResult.rejected
    guard_late: int = 0  # far-past events the time guard counted late
    late: int = 0  # ReplayResult.late: the guard's and the windows'
    columns_in: int = 0  # requests, logs and metrics handed to the windows
    folded: int = 0  # rows folded into windows (WindowStore.events)
    in_closed: int = 0  # rows found in the closed windows (requests + metric samples + log lines)
    open_left: int = 0  # windows still open after the replay
    windows_closed: int = 0
    deploys_registered: int = 0
    verdicts: Counter = field(default_factory=Counter)
    anomalies: int = 0
    refused_at_end: int = 0  # valid events far ahead at the very end of their input (see `check`)


def run(stream: Stream, folder: Path, pipeline, partitions: int = 1, chunk_lines: int | None = None):
    """Replay `stream` (written to `folder`); returns (encoded records, Account)."""
    import detector.replay as rp
    from detector.core import Core
    from detector.records import Verdict, encode

    acc = Account()
    cores: list[Core] = []

    class CountingCore(Core):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            cores.append(self)
            self.window_listeners.append(self._seen)

        def _seen(self, w) -> None:
            acc.in_closed += int(w.count.sum() + w.metric_n.sum() + w.log_count.sum())

        def process(self, batch, *a, **k):
            out = super().process(batch, *a, **k)
            acc.columns_in += len(batch.requests) + len(batch.logs) + len(batch.metrics)
            return out

    def screen(batch, *a, **k):
        """The replay's time guard, over each chunk of an input before it is split: what the
        decoder accepted, and what the guard counted late."""
        for name in ("requests", "logs", "metrics", "deploys", "checks", "incidents"):
            acc.decoded[name] += len(getattr(batch, name))
        acc.decoded["rejected"] += len(batch.rejected)
        kind = {int(p): name for name in ("requests", "logs", "metrics") for p in getattr(batch, name).pos}
        kind.update({e.pos: name for name in ("deploys", "checks", "incidents") for e in getattr(batch, name)})
        n_late = saved_screen(batch, *a, **k)
        for p in batch.deferred:  # handed in again with the next chunk: decoded again then
            acc.decoded[kind[p]] -= 1
        acc.guard_late += n_late
        return n_late

    paths = stream.write(folder)
    index = {str(p): i for i, p in enumerate(paths)}
    records: list[bytes] = []

    def emit(rec) -> None:
        records.append(encode(rec))
        if isinstance(rec, Verdict):
            acc.verdicts[rec.decision] += 1
        else:
            acc.anomalies += 1 if getattr(rec, "signal", None) else 0

    def reject(src, line, value, reason) -> None:
        key = (index[src], line)
        assert key not in acc.dead, f"line {key} dead-lettered twice"
        acc.dead[key] = reason

    saved = rp.Core, rp.CHUNK_LINES
    saved_screen = rp.screen
    rp.Core, rp.screen = CountingCore, screen
    if chunk_lines is not None:
        rp.CHUNK_LINES = chunk_lines
    try:
        res = rp.replay(paths, pipeline, emit, reject, partitions=partitions)
    finally:
        rp.Core, rp.CHUNK_LINES = saved
        rp.screen = saved_screen
    acc.lines, acc.rejected, acc.late = res.events, res.rejected, res.late
    acc.folded = sum(c.windows.events for c in cores)
    acc.open_left = sum(len(c.windows.open) for c in cores)
    acc.windows_closed = sum(c.stats.windows_closed for c in cores)
    acc.deploys_registered = sum(len(c.judge.verifications) + len(c.judge.done) for c in cores)
    return records, acc


def _at_the_end(stream: Stream, key: tuple[int, int]) -> bool:
    """Whether the valid line `key` has fewer than two valid events after it in its input: a replay
    cannot confirm a jump there, it has no clock (`timeguard`). A replay over partitions screens
    each input whole, so the partitions do not matter."""
    f, line = key
    lines = stream.files[f]
    after = 0
    for j in range(line, len(lines)):
        if (f, j + 1) not in stream.invalid and lines[j].strip():
            after += 1
    return after < 2


def settled(stream: Stream, acc: Account) -> dict:
    """The dead letters but the valid events refused at the end of their input (those are compared
    apart: "batching (end of input)")."""
    return {k: r for k, r in acc.dead.items() if k in stream.invalid}


def check(stream: Stream, acc: Account) -> list[str]:
    """Everything wrong with a replay's accounting of `stream` (empty: nothing lost, nothing let through).
    A valid event far ahead of the events before it, at the very end of its input, is refused with
    a reason (`ahead of the stream`): counted in `acc.refused_at_end`, no problem."""
    problems = []
    n_lines = sum(1 for lines in stream.files for line in lines if line.strip())
    if acc.lines != n_lines:
        problems.append(f"replay read {acc.lines} lines of {n_lines}")
    # far-ahead lines decode; the time guard refuses them after
    ahead = sum(1 for what in stream.invalid.values() if what in FAR_AHEAD)
    want = {"requests": stream.valid["request"] + ahead, "logs": stream.valid["log"], "metrics": stream.valid["metric"],
            "deploys": stream.valid["deploy"], "checks": stream.valid["check"],
            "incidents": stream.valid["incident"]}
    got = {k: acc.decoded[k] for k in want}
    if got != want:
        problems.append(f"decoder accepted {got}, the stream has {want} valid events")
    for key, what in sorted(stream.invalid.items()):
        if key not in acc.dead:
            problems.append(f"invalid line {key} ({what}) was not dead-lettered")
    for key, reason in sorted(acc.dead.items()):
        if key not in stream.invalid:
            if "ahead of the stream" in reason and _at_the_end(stream, key):
                acc.refused_at_end += 1
            else:
                problems.append(f"valid line {key} dead-lettered: {reason}")
        elif not reason:
            problems.append(f"line {key} dead-lettered without a reason")
    if acc.rejected != len(acc.dead):
        problems.append(f"replay counted {acc.rejected} rejected, {len(acc.dead)} dead letters written")
    window_late = acc.late - acc.guard_late
    if acc.columns_in != acc.folded + window_late:
        problems.append(f"{acc.columns_in} rows reached the windows: {acc.folded} folded + {window_late} late")
    if acc.folded != acc.in_closed or acc.open_left:
        problems.append(f"{acc.folded} rows folded, {acc.in_closed} in closed windows, {acc.open_left} left open")
    return problems


def split_run(stream: Stream, pipeline, chunk_lines: int = 500) -> tuple[list[bytes], list[bytes]]:
    """The records of a core fed `stream`'s first file chunk by chunk, uninterrupted and with a
    snapshot and restore into a new core half-way (encoded records of each)."""
    from detector.core import Core
    from detector.ingest.contract import decode_batch
    from detector.records import encode

    lines = [line for line in stream.files[0] if line.strip()]
    chunks = [lines[i:i + chunk_lines] for i in range(0, len(lines), chunk_lines)]
    cut = len(chunks) // 2
    runs = []
    for restore in (False, True):
        core, out = Core(pipeline), []
        for i, chunk in enumerate(chunks):
            if restore and i == cut:
                core = Core.restore(pipeline, core.snapshot())
            out += [encode(r) for r in core.process(decode_batch(chunk, core.interner))]
        out += [encode(r) for r in core.finish()]
        runs.append(out)
    return runs[0], runs[1]
