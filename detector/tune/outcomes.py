"""What the detector did to each deploy of a history: one replay through the real core.

Per deploy: its verdict (decision, time), the first time each rule fired for
it (with the action it asked for and the effect it saw) and its first anomaly
of any kind. Anomalies the judge blamed on something other than the deploy
(shared with other services) are not the deploy's firings. The records are
cached in `DIR/cache/`, keyed by the bytes of the inputs and the pipeline,
so a second run of the same input skips the replay.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from detector.config import Pipeline, to_toml
from detector.records import Record
from detector.replay import replay


@dataclass(frozen=True)
class Firing:
    rule: str
    ts: float
    action: str
    effect: float


@dataclass
class Outcome:
    decision: str | None = None
    verdict_ts: float | None = None
    first_anomaly_ts: float | None = None
    firings: dict[str, Firing] = field(default_factory=dict)   # rule -> its first firing


def cache_key(inputs: list[str], pipeline: Pipeline) -> tuple[str, int]:
    """A digest of the inputs' bytes and the pipeline, and the inputs' line count (for the progress bar)."""
    h = hashlib.sha256(to_toml(pipeline).encode())
    lines = 0
    for path in inputs:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
                lines += block.count(b"\n")
    return h.hexdigest()[:24], lines


class Bar:
    """A progress bar with rate and ETA on stderr (only on a terminal)."""

    def __init__(self, what: str, total: int, enabled: bool | None = None):
        self.what, self.total = what, max(total, 1)
        self.on = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def __call__(self, n: int, elapsed: float) -> None:
        if not self.on or elapsed - self.last < 0.2:
            return
        self.last = elapsed
        frac = min(n / self.total, 1.0)
        rate = n / max(elapsed, 1e-9)
        eta = (self.total - n) / rate if rate > 0 else 0.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.what} [{bar:<30}] {frac:4.0%} {rate:,.0f}/s ETA {eta:4.0f} s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.last > 0:  # drawn at least once
            sys.stderr.write("\n")


def replay_records(inputs: list[str], pipeline: Pipeline, cache_dir: Path | None, quiet: bool = False
                   ) -> tuple[list[dict], bool]:
    """The anomaly and verdict records of the history (from the cache when it has them); and whether cached."""
    key, lines = cache_key(inputs, pipeline)
    cached = cache_dir / f"records-{key}.jsonl" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return [orjson.loads(line) for line in cached.read_bytes().splitlines() if line], True
    out: list[dict] = []

    def emit(rec: Record) -> None:
        d = rec.to_dict()
        if d.get("type") in ("anomaly", "verdict"):
            out.append(d)

    bar = Bar("replay", lines, enabled=None if not quiet else False)
    t0 = time.perf_counter()
    replay(inputs, pipeline, emit, progress=bar)
    bar.done()
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in out))
        tmp.replace(cached)
    if not quiet:
        print(f"replayed {lines:,} lines in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out, False


def outcomes(records: list[dict]) -> dict[str, Outcome]:
    """deploy_id -> what the detector did to it."""
    res: dict[str, Outcome] = {}
    for r in records:
        if r.get("type") == "verdict":
            o = res.setdefault(r["deploy_id"], Outcome())
            o.decision, o.verdict_ts = r["decision"], float(r["ts"])
            continue
        dep = r.get("deploy_id")
        if not dep:
            continue  # not this deploy's (shared with other services, or outside any deploy)
        o = res.setdefault(dep, Outcome())
        ts = float(r["ts"])
        if o.first_anomaly_ts is None or ts < o.first_anomaly_ts:
            o.first_anomaly_ts = ts
        d = r.get("detail") or {}
        rule = d.get("rule")
        if rule and not d.get("dry_run") and (rule not in o.firings or ts < o.firings[rule].ts):
            o.firings[rule] = Firing(rule, ts, str(d.get("action", "none")), float(d.get("effect") or 0.0))
    return res
