"""Does a pipeline tuned on one history do at least as well as the default on another history of the same systems?

A scenario family (`family(seed)`): four services with the same endpoints
and traffic, deploys ten minutes apart round robin (each service every 40
minutes). Each seed draws which deploys break (an error increase of 10-30 %
or a p95 slowdown of 2.5-4x: incidents), which ones bring a small p95
slowdown of 1.1-1.4x that nobody files an incident for (benign), and the
rest are clean. No breaking deploy directly follows another of its service.

The pipeline under test is the shipped one with a latency rule that is too
touchy (p95 x1.1 for 60 s, page; fleet view off), so the default has false
pages to tune away. For each pair of seeds (A, B): `detector tune` fits a
policy on A; on B the default and the policy fitted on A are compared
(1) by re-judging B's recorded firings (the decision layer alone, as tune
scores candidates) and (2) by replaying B with A's tuned.toml (the real
figure). "At least as well" means no more false rollbacks/pages and no fewer
incidents caught.

Run: `python benchmarks/tune_overfit.py [--pairs 3] [--deploys 46]`.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.cli import main as cli  # noqa: E402
from detector.config import Pipeline, parse_pipeline  # noqa: E402
from detector.simulate.incidents import incidents_from_truth  # noqa: E402
from detector.tune.history import load_history  # noqa: E402
from detector.tune.outcomes import outcomes, replay_records  # noqa: E402
from detector.tune.policy import Choice, apply, fit, score  # noqa: E402


def family(seed: int, deploys: int = 46) -> tuple[str, set[str]]:
    """The scenario TOML of one history of the family, and the ids of its benign (no incident) slowdowns."""
    rng = random.Random(seed)
    parts = [f'name = "tune_overfit_{seed}"\nseed = {seed}\nstart = 2026-11-23T08:00:00Z\n'
             f'duration_s = {900 + 600 * deploys + 1800}\nverification_s = 300\nmetric_interval_s = 30\n\n'
             '[traffic]\ndiurnal_amplitude = 0.1\n\n']
    for k in range(4):
        parts.append(f'[[services]]\nname = "shop{k}"\nversion = "v0"\ninstances = 2\ndb = "db{k}"\n'
                     '  [[services.endpoints]]\n  name = "GET /items"\n  rps = 2\n  error_rate = 0.002\n'
                     '  latency_median_ms = 30\n  latency_p99_ms = 200\n'
                     '  [[services.endpoints]]\n  name = "POST /cart"\n  rps = 1\n  error_rate = 0.002\n'
                     '  latency_median_ms = 60\n  latency_p99_ms = 400\n\n')
    benign: set[str] = set()
    last_bad = [False] * 4
    for i in range(deploys):
        svc = i % 4
        r = rng.random()
        kind = "clean"
        if r < 0.12 and not last_bad[svc]:
            kind = "errors"
        elif r < 0.2 and not last_bad[svc]:
            kind = "slow"
        elif r < 0.5:
            kind = "benign"
        last_bad[svc] = kind in ("errors", "slow")
        dep = f"d-{i}"
        parts.append(f'\n[[deploys]]\nid = "{dep}"\nservice = "shop{svc}"\nversion = "v{i // 4 + 1}"\n'
                     f'at_s = {900 + 600 * i}\nstrategy = "blue_green"\nchange_kind = "code"\nauthor = "dev{svc}"\n'
                     f'expect = "{"rollback" if last_bad[svc] else "confirmed"}"\n')
        if kind == "errors":
            parts.append(f'  [[deploys.faults]]\n  kind = "error_increase"\n  error_rate = '
                         f'{rng.uniform(0.1, 0.3):.3f}\n  onset_s = 5\n')
        elif kind in ("slow", "benign"):
            factor = rng.uniform(2.5, 4.0) if kind == "slow" else rng.uniform(1.1, 1.4)
            parts.append(f'  [[deploys.faults]]\n  kind = "latency_increase"\n  factor = {factor:.3f}\n'
                         f'  onset_s = 5\n')
            if kind == "benign":
                benign.add(dep)
    return "".join(parts), benign


def touchy_pipeline() -> Pipeline:
    text = (ROOT / "pipelines" / "default.toml").read_text()
    old = ('min_effect = 2.0              # p95 at least doubled\nmin_score = 0.0\nmin_traffic_share = 0.05\n'
           'duration_s = 120\naction = "ticket"')
    fleet_on = "\nenabled = true                # publish per-window service summaries"
    if old not in text or fleet_on not in text:
        raise SystemExit("pipelines/default.toml changed: update touchy_pipeline()")
    text = text.replace(old, old.replace("2.0 ", "1.1 ").replace("120", "60").replace("ticket", "page"))
    text = text.replace(fleet_on, "\nenabled = false               # publish per-window service summaries")
    return parse_pipeline(text, "touchy.toml")


def history(seed: int, deploys: int, folder: Path) -> tuple[Path, Path]:
    """Simulate one history; its incidents are the faults' ground truth minus the benign slowdowns."""
    text, benign = family(seed, deploys)
    (folder / "family.toml").write_text(text)
    events, truth_incidents = folder / "events.jsonl", folder / "all-incidents.jsonl"
    if cli(["simulate", str(folder / "family.toml"), "--out", str(events), "--incidents", str(truth_incidents)]):
        raise SystemExit(f"simulating seed {seed} failed")
    incidents = folder / "incidents.jsonl"
    rows = [r for r in map(orjson.loads, truth_incidents.read_bytes().splitlines())
            if r["incident_id"].removeprefix("inc-") not in benign]
    incidents.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return events, incidents


def judged(pipeline: Pipeline, events: Path, incidents: Path, cache: Path):
    """(deploy order, incidents per deploy, outcomes) of a history replayed with `pipeline`."""
    h = load_history([str(events)], [str(incidents)])
    outs = outcomes(replay_records([str(events)], pipeline, cache, quiet=True)[0])
    return [d.deploy_id for d in h.deploys], dict(Counter(h.deploy_of.values())), outs


def compare(seed_a: int, seed_b: int, deploys: int, folder: Path, verify: bool = True) -> dict:
    """Fit on seed A, score the default and the fitted policy on seed B."""
    pipeline = touchy_pipeline()
    default = {r.name: Choice() for r in pipeline.rules}
    (folder / "a").mkdir(parents=True, exist_ok=True)
    (folder / "b").mkdir(parents=True, exist_ok=True)
    ev_a, inc_a = history(seed_a, deploys, folder / "a")
    ev_b, inc_b = history(seed_b, deploys, folder / "b")
    order_a, per_a, outs_a = judged(pipeline, ev_a, inc_a, folder / "cache")
    policy = fit(pipeline, order_a, per_a, outs_a)
    tuned, diff = apply(pipeline, policy)
    order_b, per_b, outs_b = judged(pipeline, ev_b, inc_b, folder / "cache")
    res = {"fitted_on": seed_a, "scored_on": seed_b, "diff": diff,
           "on_a": {"default": score(order_a, per_a, outs_a, default),
                    "tuned": score(order_a, per_a, outs_a, policy)},
           "on_b_rejudged": {"default": score(order_b, per_b, outs_b, default),
                             "tuned": score(order_b, per_b, outs_b, policy)}}
    if verify:
        _, _, outs_t = judged(tuned, ev_b, inc_b, folder / "cache")
        res["on_b_replayed"] = {"default": res["on_b_rejudged"]["default"],
                                "tuned": score(order_b, per_b, outs_t, default)}
    return res


def at_least_as_good(s: dict) -> bool:
    return (s["tuned"]["false_rollback_or_page"] <= s["default"]["false_rollback_or_page"]
            and s["tuned"]["caught"] >= s["default"]["caught"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="seed pairs (A, B) = (2i+1, 2i+2)")
    ap.add_argument("--deploys", type=int, default=46)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for i in range(args.pairs):
        with tempfile.TemporaryDirectory(prefix="tune-overfit-") as tmp:
            rows.append(compare(2 * i + 1, 2 * i + 2, args.deploys, Path(tmp)))
        print(f"pair {i + 1}/{args.pairs} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0

    def cell(s: dict) -> str:
        return f"{s['caught']}/{s['incidents']} caught, {s['false_rollback_or_page']} false pg/rb"

    print(f"{'A->B':<7}{'where':<16}{'default':<30}{'tuned on A':<30}ok")
    for r in rows:
        for where in ("on_a", "on_b_rejudged", "on_b_replayed"):
            s = r[where]
            print(f"{r['fitted_on']}->{r['scored_on']:<4}{where:<16}{cell(s['default']):<30}{cell(s['tuned']):<30}"
                  f"{'yes' if at_least_as_good(s) else 'NO'}")
        for line in r["diff"]:
            print(f"       {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
