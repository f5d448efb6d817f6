"""Blame by difference in differences: a change is the deploy's when the new version moved more
than its reference over the same windows, not when the reference merely moved too."""

from __future__ import annotations

import numpy as np
import pytest

from detector.aggregate import sketch
from detector.config import load_pipeline
from detector.judge import blame
from detector.judge.evidence import Population
from detector.stats.did import latency_did, rate_did

SVC, OTHER, NEW = 1, 2, 7
SPAN, BEFORE = ["span"], ["before"]  # stand-ins: the fake population reads which one it got


def _pop(n: int, errors: int = 0, txn: int = 0, latency_ms: float = 50.0, seed: int = 0) -> Population:
    rng = np.random.default_rng(seed)
    whole = sketch.from_values(rng.lognormal(np.log(latency_ms), 0.3, n)) if n else sketch.empty()
    return Population(np.array([0], np.int32), np.array([n], np.int64), np.array([errors], np.int64),
                      np.array([txn], np.int64), sketch.stack([whole]), whole, n, errors, txn, 1, 60.0)


def _ctx(pops: dict) -> blame.Context:
    def population(windows, service, versions=None, exclude_versions=(), endpoints=None):
        side = "new" if versions else "ref"
        return pops[("now" if windows is SPAN else "before", service, side)]

    return blame.Context(span=SPAN, before=BEFORE, population=population, services=[SVC, OTHER],
                         lookup=lambda i: {SVC: "checkout", OTHER: "orders"}[i], metric_service=np.array([]),
                         metric_name=np.array([]), infra_metric_ids=frozenset(), new_versions={})


def _rule(name: str):
    return next(r for r in load_pipeline().rules if r.name == name)


def _world(new_now: Population, stable_now: Population, other_now: Population, before: Population,
           other_before: Population) -> dict:
    return {("now", SVC, "new"): new_now, ("before", SVC, "ref"): before, ("now", SVC, "ref"): stable_now,
            ("now", OTHER, "ref"): other_now, ("before", OTHER, "ref"): other_before,
            ("before", SVC, "new"): _pop(0)}


def test_a_reference_that_moved_as_much_as_the_new_version_clears_the_deploy():
    """A shared database failing: errors rise from 0.5 % to 6-7 % in the new version, the stable
    version and another service alike; the change is not the deploy's."""
    world = _world(new_now=_pop(1000, 65), stable_now=_pop(1000, 62), other_now=_pop(2000, 130),
                   before=_pop(3000, 15), other_before=_pop(4000, 20))
    reasons = blame.shared_with(_rule("errors-everywhere"), SVC, NEW, "before", _ctx(world))
    assert any("stable version" in r for r in reasons)
    assert any("orders" in r for r in reasons)


def test_a_new_version_that_moved_more_than_its_moving_reference_is_blamed():
    """The same shared slowdown, but the new version's errors rose to 16 %: it moved 10 points more
    than the stable version and the other service did, so the finding stays the deploy's."""
    world = _world(new_now=_pop(1000, 160), stable_now=_pop(1000, 62), other_now=_pop(2000, 130),
                   before=_pop(3000, 15), other_before=_pop(4000, 20))
    assert blame.shared_with(_rule("errors-everywhere"), SVC, NEW, "before", _ctx(world)) == ()


def test_latency_difference_in_differences():
    """p95 x2.5 everywhere is shared; x5 in the new version against x2.5 in its reference is the deploy's."""
    before, other_before = _pop(3000, latency_ms=40, seed=1), _pop(3000, latency_ms=40, seed=2)
    stable, other = _pop(1000, latency_ms=100, seed=3), _pop(1000, latency_ms=100, seed=4)
    rule = _rule("latency-p95-doubled")
    alike = _world(_pop(1000, latency_ms=100, seed=5), stable, other, before, other_before)
    worse = _world(_pop(1000, latency_ms=200, seed=5), stable, other, before, other_before)
    assert blame.shared_with(rule, SVC, NEW, "before", _ctx(alike))
    assert blame.shared_with(rule, SVC, NEW, "before", _ctx(worse)) == ()
    ratio, dev = latency_did(worse[("now", SVC, "new")].whole, before.whole, stable.whole, before.whole, 0.95)
    assert ratio == pytest.approx(2.0, rel=0.15) and dev.score > 6


def test_a_reference_that_did_not_move_clears_nothing():
    """A quiet reference never makes a finding shared, whatever the new version did."""
    world = _world(new_now=_pop(1000, 160), stable_now=_pop(1000, 5), other_now=_pop(2000, 10),
                   before=_pop(3000, 15), other_before=_pop(4000, 20))
    assert blame.shared_with(_rule("errors-everywhere"), SVC, NEW, "before", _ctx(world)) == ()


def test_rate_did_is_calibrated_under_no_difference():
    """Both sides moving by the same amount: p-values below 0.01 about 1 % of the time (binomial noise)."""
    rng = np.random.default_rng(11)
    n = 2000
    k = rng.binomial([400, 1000, 600, 1500], [0.02, 0.06, 0.02, 0.06], size=(n, 4))
    p = np.array([rate_did(a, 1000, b, 400, c, 1500, d, 600).p_value for b, a, d, c in k])
    assert 0.002 < (p < 0.01).mean() < 0.025
