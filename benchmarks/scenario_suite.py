"""The scenario suite as a table: the detector next to the 5 %-in-5-minutes threshold script.

Simulates every shipped scenario (except the long baseline_day), replays it
through the detector with the scenario's verification period, runs
benchmarks/threshold_rollback.sh and the Kayenta-style judge
(benchmarks/kayenta_judge.py) on the same events, and scores all three
against the ground truth. Prints one row per deploy and the summary table that the
README quotes.

    python benchmarks/scenario_suite.py [--partitions N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
from detector.simulate.scoring import Summary, replay_scenario, score, table  # noqa: E402
from kayenta_judge import judge as kayenta  # noqa: E402

SCENARIOS = ["config_fault", "code_fault_canary", "txn_drop", "rare_endpoint", "log_only_code", "traffic_loss",
             "smoke_caught",
             "benign_surge",
             "infra_slowdown", "retry_storm", "morning_ramp", "pod_restart_blip", "low_traffic", "superseded",
             "demo",
             "rare_endpoint_broken", "quiet_service_failing", "busy_endpoint_small", "canary_endpoint_errors",
             "shared_db_three_services", "fast_rollout_benign", "new_exception_everywhere",
             "late_exception_after_rollback"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="write the simulated events here instead of a temporary folder")
    args = ap.parse_args(argv)
    detector, script, mw = Summary(), Summary(), Summary()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("| scenario | deploy | expected | detector | root cause (expected) | threshold script | Kayenta-style |")
        print("|---|---|---|---|---|---|---|")
        for name in SCENARIOS:
            truth, records, events = replay_scenario(name, work)
            out = subprocess.run(["bash", str(ROOT / "benchmarks" / "threshold_rollback.sh"), str(events)],
                                 capture_output=True, check=True).stdout
            base = score(truth, [orjson.loads(x) for x in out.splitlines() if x.strip()])
            mine = score(truth, records)
            kay = score(truth, kayenta(str(events), analysis_s=float(truth.get("verification_s") or 900)))
            for r, b, k in zip(mine.results, base.results, kay.results):
                print(f"| {name} | {r.deploy_id} | {r.expected} | {r.got} | {r.got_root_cause} "
                      f"({r.expected_root_cause or '-'}) | {b.got} | {k.got} |")
            detector.results.extend(mine.results)
            script.results.extend(base.results)
            mw.results.extend(kay.results)
    print()
    print(table([("detector", detector), ("threshold script (5 % in the first 5 min)", script),
                 ("Kayenta-style Mann-Whitney judge", mw)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
