"""`detector tune`: a full run, a run on its cache, and one re-judge, next to a plain replay.

The input is the demo scenario (simulator, fixed seed) with its ground truth
as incidents (`detector simulate --incidents`). Four figures, same input,
same run:

* replay (baseline): `detector.replay.replay` over the file, records kept in a list;
* tune, cold: `detector tune` with an empty `--out` (replay + every report);
* tune, cached: the same again, the replay's records read from `DIR/cache/`;
* re-judge: one candidate policy scored on every deploy from the recorded
  firings (the decision layer alone), and a whole policy fit (every candidate);
* the same decision layer at the size of a month of ten services (five
  deploys a day each: 1,500 deploys, 10 % followed by an incident, every rule
  of the pipeline firing on half of those and on 3 % of the others, seeded):
  one candidate, a whole fit, and the leave-one-incident-out validation.
  These per-deploy firings are synthetic: replaying a month of ten services
  is not part of this benchmark.

Run: `python benchmarks/bench_tune.py [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402

from detector.cli import main as cli  # noqa: E402
from detector.config import load_pipeline  # noqa: E402
from detector.replay import replay  # noqa: E402
from detector.tune.history import load_history  # noqa: E402
from detector.tune.outcomes import Firing, Outcome, outcomes, replay_records  # noqa: E402
from detector.tune.policy import Choice, fit, leave_one_incident_out, score  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def month_of_ten_services(pipeline, seed: int = 1):
    """(deploy order, incidents per deploy, outcomes) of 1,500 synthetic deploys."""
    rng = random.Random(seed)
    order, per, outs = [], {}, {}
    for i in range(10 * 30 * 5):
        dep = f"d{i}"
        order.append(dep)
        bad = rng.random() < 0.1
        if bad:
            per[dep] = 1
        o = outs[dep] = Outcome()
        for r in pipeline.rules:
            if rng.random() < (0.5 if bad else 0.03):
                o.firings[r.name] = Firing(r.name, 0.0, r.action, rng.uniform(1.0, 5.0))
    return order, per, outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 15 minutes of the demo instead of all 40")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    duration = "900" if args.quick else "2400"
    pipeline = load_pipeline()
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        events, incidents, out = Path(tmp) / "demo.jsonl", Path(tmp) / "inc.jsonl", Path(tmp) / "out"
        cli(["simulate", "demo", "--out", str(events), "--incidents", str(incidents), "--duration-s", duration])
        lines = sum(1 for _ in events.open("rb"))
        tune_args = ["tune", "--input", str(events), "--incidents", str(incidents), "--out", str(out), "--quiet"]
        t_replay = _timed(lambda: replay([str(events)], pipeline, [].append))
        shutil.rmtree(out, ignore_errors=True)
        t_cold = _timed(lambda: cli(tune_args))
        t_warm = _timed(lambda: cli(tune_args))
        h = load_history([str(events)], [str(incidents)])
        outs = outcomes(replay_records([str(events)], pipeline, out / "cache", quiet=True)[0])
        order = [d.deploy_id for d in h.deploys]
        per = dict(Counter(h.deploy_of.values()))
        default = {r.name: Choice() for r in pipeline.rules}
        reps = 200
        t_one = _timed(lambda: [score(order, per, outs, default) for _ in range(reps)]) / reps
        t_fit = _timed(lambda: fit(pipeline, order, per, outs))
    m_order, m_per, m_outs = month_of_ten_services(pipeline)
    m_one = _timed(lambda: [score(m_order, m_per, m_outs, default) for _ in range(20)]) / 20
    m_fit = _timed(lambda: fit(pipeline, m_order, m_per, m_outs))
    m_loo = _timed(lambda: leave_one_incident_out(pipeline, m_order, m_per, m_outs))
    rows = [("replay (baseline)", t_replay), ("tune, cold", t_cold), ("tune, cached", t_warm),
            ("re-judge: one candidate", t_one), ("re-judge: whole fit", t_fit),
            ("month: one candidate", m_one), ("month: whole fit", m_fit), ("month: leave-one-out", m_loo)]
    result = {"machine": machine(), "lines": lines, "deploys": len(order),
              "seconds": {k: round(v, 6) for k, v in rows}}
    if args.json:
        print(orjson.dumps(result).decode())
        return 0
    print(result["machine"])
    print(f"demo, {duration} s of event time: {lines:,} lines, {len(order)} deploys")
    print(f"{'step':<26}{'seconds':>12}{'x replay':>10}")
    for name, t in rows:
        print(f"{name:<26}{t:>12.4f}{t / t_replay:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
