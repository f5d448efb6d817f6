"""Patterns: exact tests, Holm's correction, a planted pattern found, none invented on null histories."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import pytest

from detector.ingest.columns import DeployEvent
from detector.tune.patterns import find_patterns
from detector.tune.stats import fisher, holm, needed, wilson

UTC = ZoneInfo("UTC")
T0 = 1_795_680_000.0  # a Thursday


def test_wilson_interval_known_values():
    lo, hi = wilson(4, 6)
    assert lo == pytest.approx(0.3000, abs=1e-3) and hi == pytest.approx(0.9032, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 40)
    assert lo == 0.0 and hi == pytest.approx(0.0876, abs=1e-3)


def test_holm_is_step_down_and_monotone():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([]) == []


def test_needed_count_grows_the_group_until_significant():
    n = needed(2, 6, 2, 40, alpha=0.05 / 20)
    assert n is not None and n > 6
    assert fisher(round(n * 2 / 6), n, 2, 40) < 0.05 / 20
    assert needed(1, 10, 4, 40, alpha=0.05) is None  # same rate: no count would do


def _history(rng: random.Random, n: int, rate_of) -> tuple[list[DeployEvent], set[str]]:
    authors = [f"dev{i}" for i in range(6)]
    kinds = ["code", "config", "schema"]
    deploys, failed = [], set()
    for i in range(n):
        d = DeployEvent(pos=i, ts=T0 + rng.uniform(0, 28 * 86400), service=rng.choice(["a", "b", "c"]),
                        deploy_id=f"d{i}", version="v", change_kind=rng.choice(kinds), author=rng.choice(authors),
                        reviewers=(rng.choice(authors),), labels=(("team", rng.choice(["x", "y"])),))
        deploys.append(d)
        if rng.random() < rate_of(d):
            failed.add(d.deploy_id)
    return deploys, failed


def test_planted_author_pattern_is_found():
    # config changes by one author fail 4 times in 6; everything else 2 in 40
    deploys = [DeployEvent(pos=i, ts=T0 + 3600 * i, service="svc", deploy_id=f"p{i}", version="v",
                           change_kind="config", author="mallory") for i in range(6)]
    deploys += [DeployEvent(pos=10 + i, ts=T0 + 3600 * i + 60, service="svc", deploy_id=f"o{i}", version="v",
                            change_kind="code", author=f"dev{i % 4}") for i in range(40)]
    failed = {"p0", "p1", "p2", "p3", "o5", "o17"}
    res = find_patterns(deploys, failed, UTC)
    found = {(p["dimension"], p["value"]) for p in res["patterns"]}
    assert ("author", "mallory") in found
    assert ("author", "dev1") not in found
    weak = {(r["dimension"], r["value"]): r for r in res["not_enough_evidence"]}
    assert weak[("author", "dev1")]["verdict"] == "not enough evidence"


def false_pattern_rate(seeds: int, deploys: int = 150, rate: float = 0.1) -> float:
    """Share of histories without any planted pattern in which a pattern is claimed."""
    claimed = 0
    for seed in range(seeds):
        d, f = _history(random.Random(seed), deploys, lambda _: rate)
        claimed += bool(find_patterns(d, f, UTC, with_needed=False)["patterns"])
    return claimed / seeds


def test_null_histories_rarely_yield_a_pattern():
    # Holm at 0.05 bounds the family-wise error at 5 %; Fisher is conservative, so fewer in practice
    assert false_pattern_rate(200) <= 0.06


def test_planted_pattern_in_a_random_history_is_found_most_of_the_time():
    hits = 0
    for seed in range(30):
        d, f = _history(random.Random(seed), 150, lambda d: 0.6 if d.author == "dev3" and d.change_kind == "config"
                        else 0.05)
        found = find_patterns(d, f, UTC, with_needed=False)["patterns"]
        hits += any(p["value"] in ("dev3", "dev3/config") for p in found)
    assert hits >= 15
