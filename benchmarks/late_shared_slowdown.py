"""A shared database slowdown late in a verification: is the good deploy blamed?

`shared_db_three_services` (a good rolling deploy of `ledger` at 900 s; a
shared database slows three services) with a 30-minute verification and the
slowdown moved to begin OFFSET seconds after the deploy, replayed with the
shipped pipeline for a few simulator seeds. Prints each run's decision and
root cause; a good deploy should be `confirmed` with `data_or_infra`.

    python benchmarks/late_shared_slowdown.py                 # offsets 120 700 1000 1300, seeds 0 1 2
    python benchmarks/late_shared_slowdown.py --offsets 1000 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.simulate.main import resolve_scenario  # noqa: E402
from detector.simulate.scoring import replay_scenario  # noqa: E402

START = "start_s = 1020"


def scenario(offset: int, work: Path) -> Path:
    text = resolve_scenario("shared_db_three_services").read_text()
    assert text.count(START) == 1 and "verification_s = 900" in text and "at_s = 900" in text
    text = (text.replace(START, f"start_s = {900 + offset}").replace("verification_s = 900", "verification_s = 1800")
            .replace("duration_s = 2100", "duration_s = 3000", 1)
            .replace('name = "shared_db_three_services"', f'name = "shared_late_{offset}"'))
    path = work / f"shared_late_{offset}.toml"
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offsets", type=int, nargs="+", default=[120, 700, 1000, 1300])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    right = total = 0
    print("offset_s seed decision root_cause")
    for offset in args.offsets:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                truth, records, _ = replay_scenario(scenario(offset, Path(tmp)), tmp, seed=seed)
            deploy = truth["deploys"][0]["deploy_id"]
            (v,) = [r for r in records if r["type"] == "verdict" and r["deploy_id"] == deploy]
            ok = v["decision"] == "confirmed" and v["root_cause"]["category"] == "data_or_infra"
            right += ok
            total += 1
            print(f"{offset:8d} {seed:4d} {v['decision']:9s} {v['root_cause']['category']}")
    print(f"confirmed with root cause data_or_infra: {right}/{total}")


if __name__ == "__main__":
    main()
