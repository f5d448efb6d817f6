"""How often `detector tune` claims a pattern that is not there, and how often it finds a planted one.

Synthetic deploy histories (seeded `random`): N deploys over four weeks,
three services, six authors who also review, three change kinds, two team
labels. Null: every deploy fails with the same probability (10 %), so every
claimed pattern is false. Planted: config changes by one author fail with
probability 0.6, everything else 0.05. Patterns are found exactly as
`detector tune` finds them (Fisher exact, Holm at alpha 0.05).
Run: `python benchmarks/tune_patterns.py [--seeds 1000]`.
"""

from __future__ import annotations

import argparse
import random
from zoneinfo import ZoneInfo

from detector.ingest.columns import DeployEvent
from detector.tune.patterns import find_patterns

UTC = ZoneInfo("UTC")
T0 = 1_795_680_000.0


def history(rng: random.Random, n: int, rate_of) -> tuple[list[DeployEvent], set[str]]:
    authors = [f"dev{i}" for i in range(6)]
    deploys, failed = [], set()
    for i in range(n):
        d = DeployEvent(pos=i, ts=T0 + rng.uniform(0, 28 * 86400), service=rng.choice(["a", "b", "c"]),
                        deploy_id=f"d{i}", version="v", change_kind=rng.choice(["code", "config", "schema"]),
                        author=rng.choice(authors), reviewers=(rng.choice(authors),),
                        labels=(("team", rng.choice(["x", "y"])),))
        deploys.append(d)
        if rng.random() < rate_of(d):
            failed.add(d.deploy_id)
    return deploys, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    args = ap.parse_args()
    print(f"{'history':<34}{'deploys':>8}{'seeds':>7}{'claimed':>9}{'rate':>8}")
    for n in (60, 150, 400):
        claimed = sum(bool(find_patterns(*history(random.Random(s), n, lambda d: 0.1), UTC,
                                         with_needed=False)["patterns"]) for s in range(args.seeds))
        print(f"{'null: any pattern claimed':<34}{n:>8}{args.seeds:>7}{claimed:>9}{claimed / args.seeds:>8.3f}")
    planted = lambda d: 0.6 if d.author == "dev3" and d.change_kind == "config" else 0.05  # noqa: E731
    for n in (60, 150, 400):
        seeds = max(args.seeds // 5, 1)
        found = 0
        for s in range(seeds):
            pats = find_patterns(*history(random.Random(s), n, planted), UTC, with_needed=False)["patterns"]
            found += any(p["value"] in ("dev3", "dev3/config") for p in pats)
        print(f"{'planted dev3/config: found':<34}{n:>8}{seeds:>7}{found:>9}{found / seeds:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
