"""Hostile streams through the whole core, many seeds: crashes, silent loss, nondeterminism.

Every seed builds a contract-valid but odd stream with invalid lines mixed in
(`tests/hostile_streams.py`: 1-8 services at 0.001-50 requests/s, gaps of hours,
deploys of silent services and before any traffic, canary weights at the edges,
huge metric values, unicode, far-future times, ...) and replays it with the
shipped pipeline:

- once, checking the accounting: every invalid line dead-lettered with a reason,
  every valid event decoded and then folded into a closed window, counted late or
  taken as a deploy, check or incident;
- again: the same records;
- in chunks of 97 lines: the same dead letters, and the same records when no event
  comes later than the lateness (those are late or not depending on when windows close);
- over 3 partitions: the same decisions and root causes (and, counted apart, the same
  verdicts to the last detail).

A seed fails on an exception or on any difference; the table counts each kind.
The coverage summary says which corners the streams reached. No baseline: the
figure is the failure count, compared by running the script on an older tree
(`PYTHONPATH=OLD_TREE python benchmarks/stream_fuzz.py`).
Run: `python benchmarks/stream_fuzz.py [--seeds 500] [--start 0] [--budget 4000] [--quick]`.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT / "tests"))
from harness import machine  # noqa: E402
from hostile_streams import FAR_AHEAD, check, generate, run, settled  # noqa: E402

import detector  # noqa: E402
from detector.config import load_pipeline  # noqa: E402


def _verdicts(records: list[bytes]) -> list[bytes]:
    return sorted(r for r in records if b'"type":"verdict"' in r)


def _decisions(records: list[bytes]) -> list[tuple]:
    """(deploy, decision, root cause category) of every verdict."""
    out = []
    for r in records:
        if b'"type":"verdict"' in r:
            v = orjson.loads(r)
            out.append((v["deploy_id"], v["decision"], v["root_cause"]["category"]))
    return sorted(out)


def _reason_kind(reason: str) -> str:
    """A dead letter's reason without its numbers and quoted values, to count by kind."""
    r = re.sub(r"'[^']*'|\"[^\"]*\"", "'.'", reason)
    r = re.sub(r"\d[\d,.]*(e[+-]?\d+)?", "N", r)
    return r[:70]


def one_seed(seed: int, budget: int, pipeline, folder: Path, cover: Counter) -> list[str]:
    stream = generate(seed, budget=budget)
    cover["streams"] += 1
    cover["events (valid)"] += sum(stream.valid.values())
    cover["lines (invalid)"] += len(stream.invalid)
    cover["far-ahead lines"] += sum(1 for w in stream.invalid.values() if w in FAR_AHEAD)
    for k in stream.corners:
        cover[f"corner: {k}"] += 1
    for what in stream.invalid.values():
        cover[f"invalid: {what}"] += 1
    failures: list[str] = []
    try:
        records, acc = run(stream, folder, pipeline)
    except Exception as e:  # noqa: BLE001 - a crash is the finding
        return [f"crash: {type(e).__name__}: {e}".splitlines()[0][:200] + "\n" + traceback.format_exc(limit=-3)]
    failures += [f"accounting: {p}" for p in check(stream, acc)]
    cover["windows closed"] += acc.windows_closed
    cover["deploys registered"] += acc.deploys_registered
    cover["anomalies"] += acc.anomalies
    cover["late events"] += acc.late
    cover["valid events refused at the end of their input"] += acc.refused_at_end
    for decision, n in acc.verdicts.items():
        cover[f"verdict: {decision}"] += n
    for reason in acc.dead.values():
        cover[f"dead letter: {_reason_kind(reason)}"] += 1
    try:
        again, _ = run(stream, folder, pipeline)
        if again != records:
            failures.append("determinism: a second replay gave other records")
        small, acc_small = run(stream, folder, pipeline, chunk_lines=97)
        failures += [f"accounting (chunks of 97): {p}" for p in check(stream, acc_small)]
        if settled(stream, acc_small) != settled(stream, acc):
            failures.append("batching: other dead letters in chunks of 97 lines")
        elif acc_small.dead != acc.dead:
            failures.append("batching (end of input): other valid events refused at the end in chunks of 97 lines")
        if stream.batching_free and acc_small.dead == acc.dead and small != records:
            failures.append("batching: other records in chunks of 97 lines")
        wide, acc_wide = run(stream, folder, pipeline, partitions=3)
        failures += [f"accounting (3 partitions): {p}" for p in check(stream, acc_wide, partitions=3)]
        if _decisions(wide) != _decisions(records):
            failures.append("partitions: other decisions or root causes over 3 partitions")
        elif _verdicts(wide) != _verdicts(records):
            failures.append("partitions (details): the same decisions, other verdict details over 3 partitions")
    except Exception as e:  # noqa: BLE001
        failures.append(f"crash: {type(e).__name__}: {e}".splitlines()[0][:200] + "\n" + traceback.format_exc(limit=-3))
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--budget", type=int, default=4000, help="valid events per stream, about")
    ap.add_argument("--quick", action="store_true", help="20 seeds")
    ap.add_argument("--show", type=int, default=5, help="failures to print in full")
    args = ap.parse_args()
    n = 20 if args.quick else args.seeds
    print(machine())
    print(f"detector from {Path(detector.__file__).resolve().parent}")
    pipeline = load_pipeline()
    cover: Counter = Counter()
    kinds: Counter = Counter()
    failed: dict[int, list[str]] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore", RuntimeWarning)  # huge metric values overflow on purpose
        for seed in range(args.start, args.start + n):
            f = one_seed(seed, args.budget, pipeline, Path(tmp), cover)
            if f:
                failed[seed] = f
                for x in f:
                    kinds[x.split(":")[0]] += 1
    secs = time.perf_counter() - t0
    print(f"\n{n} seeds ({args.start}..{args.start + n - 1}), {cover['events (valid)']:,} valid events, "
          f"{cover['lines (invalid)']:,} invalid lines, each stream replayed 4 times, {secs:.0f} s")
    print(f"seeds failing: {len(failed)}")
    for k, v in sorted(kinds.items()):
        print(f"  {k:<34} {v:>5}")
    for seed, f in list(failed.items())[: args.show]:
        print(f"\nseed {seed}:")
        for x in f[:4]:
            print("  " + x.replace("\n", "\n    "))
    print("\ncoverage (over all seeds)")
    for k in ["streams", "windows closed", "deploys registered", "anomalies", "late events", "far-ahead lines",
              "valid events refused at the end of their input"]:
        print(f"  {k:<40} {cover[k]:>8,}")
    for prefix in ("verdict: ", "dead letter: ", "corner: ", "invalid: "):
        rows = sorted((k, v) for k, v in cover.items() if k.startswith(prefix))
        print(f"  {prefix.rstrip(': ')}s: {len(rows)} kinds")
        for k, v in rows:
            print(f"    {k[len(prefix):]:<72} {v:>7,}")


if __name__ == "__main__":
    main()
