"""Deviating infrastructure explains an error finding only when it can account for its size.

A shared database slowdown shows in every service's datastore wait. It used to make
any finding compared with the past shared, however far the deploy's errors exceeded
what the slowdown did to the other services it hit: sweep seed 3003 `sw-8` (a bad
rolling config deploy, errors +10 points on every endpoint) was rolled back only at
+1,000 s, once a span showed no deviating series, because a slowdown (+1.4 points of
errors everywhere) ran from 519 s to 1,066 s. With `verification.infra_blame = "size"`
the infrastructure evidence stands unless the new version moved significantly more
(difference in differences) than every population the cause hit, over the windows
the series were up; latency findings and `infra_blame = "any"` keep the old rule.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from detector.aggregate import sketch
from detector.config import load_pipeline
from detector.judge import blame
from detector.judge.evidence import Population

SVC, OTHER, NEW = 1, 2, 7
NAME, LABELS = 10, 11


@dataclass
class _Window:
    start: float
    end: float
    metric_n: np.ndarray
    metric_sum: np.ndarray


def _windows(start: float, count: int, level: float, seed: int) -> list[_Window]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        vals = level * rng.uniform(0.8, 1.2, 2)  # datastore wait of SVC and OTHER
        out.append(_Window(start + 10 * i, start + 10 * (i + 1), np.array([1, 1]), vals))
    return out


BEFORE = _windows(0, 30, 8.0, 1)
QUIET = _windows(300, 6, 8.0, 2)  # 60 s of span, the datastore as before
SLOW = _windows(300, 6, 40.0, 3)  # the same 60 s during a datastore slowdown


def _pop(n: int, errors: int = 0, latency_ms: float = 50.0, seed: int = 0) -> Population:
    rng = np.random.default_rng(seed)
    whole = sketch.from_values(rng.lognormal(np.log(latency_ms), 0.3, n)) if n else sketch.empty()
    return Population(np.array([0], np.int32), np.array([n], np.int64), np.array([errors], np.int64),
                      np.array([0], np.int64), sketch.stack([whole]), whole, n, errors, 0, 1, 60.0)


def _ctx(span: list, pops: dict, infra_blame: str = "size") -> blame.Context:
    def population(windows, service, versions=None, exclude_versions=(), endpoints=None):
        when = "before" if windows and windows[0] is BEFORE[0] else "now"
        return pops.get((when, service, "new" if versions else "ref"), _pop(0))

    return blame.Context(span=span, before=BEFORE, population=population, services=[SVC, OTHER],
                         lookup=lambda i: {SVC: "checkout", OTHER: "orders", NAME: "datastore_wait_ms",
                                           LABELS: "cluster=pg-main"}[i],
                         metric_service=np.array([SVC, OTHER]), metric_name=np.array([NAME, NAME]),
                         metric_labels=np.array([LABELS, LABELS]), infra_metric_ids=frozenset(),
                         new_versions={}, infra_blame=infra_blame)


def _rule(name: str):
    return next(r for r in load_pipeline().rules if r.name == name)


def _world(new_errors: int, other_errors: int, other_n: int = 2000) -> dict:
    """A rolling deploy done: no stable version left. Errors were 0.5 % everywhere before."""
    return {("now", SVC, "new"): _pop(1000, new_errors), ("before", SVC, "ref"): _pop(3000, 15),
            ("now", OTHER, "ref"): _pop(other_n, other_errors), ("before", OTHER, "ref"): _pop(4000, 20)}


def test_errors_far_beyond_what_the_slowdown_did_elsewhere_are_the_deploys():
    """The slowdown lifts the other service's errors from 0.5 % to 1.5 %; the new version's reach
    16 %: the datastore cannot account for that, so nothing makes the finding shared."""
    rule = _rule("errors-everywhere")
    assert blame.shared_with(rule, SVC, NEW, "before", _ctx(SLOW, _world(160, 30))) == ()
    # the rule before this change, still reachable: any deviating series makes it shared
    old = blame.shared_with(rule, SVC, NEW, "before", _ctx(SLOW, _world(160, 30), infra_blame="any"))
    assert [r for r in old if r.startswith("infrastructure metrics deviate: datastore_wait_ms")]


def test_errors_the_slowdown_accounts_for_stay_shared():
    """The new version's errors rise as much as the other service's (0.5 % -> 2 %): shared."""
    reasons = blame.shared_with(_rule("errors-sustained"), SVC, NEW, "before", _ctx(SLOW, _world(20, 40)))
    assert any(r.startswith("infrastructure metrics deviate") for r in reasons)


def test_without_a_population_to_compare_the_infrastructure_still_explains():
    """No other service with the traffic to tell, no stable version: the deviating series stands."""
    reasons = blame.shared_with(_rule("errors-everywhere"), SVC, NEW, "before",
                                _ctx(SLOW, _world(160, 0, other_n=10)))
    assert any(r.startswith("infrastructure metrics deviate") for r in reasons)


def test_latency_findings_keep_the_infrastructure_evidence():
    """Shares above each side's own quantile are not comparable across services: a latency finding
    during the slowdown stays shared whatever the new version's size."""
    world = {("now", SVC, "new"): _pop(1000, latency_ms=400, seed=5), ("before", SVC, "ref"): _pop(3000, seed=1),
             ("now", OTHER, "ref"): _pop(2000, latency_ms=60, seed=4), ("before", OTHER, "ref"): _pop(4000, seed=2)}
    reasons = blame.shared_with(_rule("latency-p95-doubled"), SVC, NEW, "before", _ctx(SLOW, world))
    assert any(r.startswith("infrastructure metrics deviate") for r in reasons)


def test_quiet_infrastructure_changes_nothing():
    assert blame.shared_with(_rule("errors-everywhere"), SVC, NEW, "before", _ctx(QUIET, _world(160, 30))) == ()


def test_the_setting_is_checked():
    from detector.config import Verification
    with pytest.raises(Exception, match="infra_blame"):
        Verification(infra_blame="never").check()


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _replay(trial, tmp_path, infra_blame: str):
    from detector.replay import replay
    from sweep_world import events
    events_file = tmp_path / "t.jsonl"
    with open(events_file, "wb") as fh:
        for line in events(trial):
            fh.write(line + b"\n")
    pipe = load_pipeline()
    pipe = dataclasses.replace(pipe, verification=dataclasses.replace(pipe.verification, infra_blame=infra_blame))
    out = []
    replay([events_file], pipe, lambda r: out.append(r.to_dict()))
    return next(d for d in out if d["type"] == "verdict")


def test_sweep_3003_sw8_is_rolled_back_during_the_slowdown(tmp_path):
    from sweep_world import make_trial
    trial = make_trial(8, 3003)
    assert trial.fault is not None and trial.fault.kind == "errors"
    slowdown = next(d for d in trial.disturbances if d.kind == "shared_slowdown")
    now = _replay(trial, tmp_path, "size")
    before = _replay(trial, tmp_path, "any")
    assert now["decision"] == before["decision"] == "rollback"
    assert now["root_cause"]["category"] == "config"
    at, was = now["ts"] - trial.deploy_ts, before["ts"] - trial.deploy_ts
    # inside the slowdown, at least three minutes sooner (800 s against 1,000 s when measured)
    assert slowdown.start_s < at <= was - 180 and at < slowdown.start_s + slowdown.length_s, (at, was)
