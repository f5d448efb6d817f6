"""Tuned on one history, no worse than the default on another history of the same systems (benchmarks/tune_overfit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from tune_overfit import at_least_as_good, compare, family  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_family_differs_by_seed_but_not_by_system():
    (a, benign_a), (b, benign_b) = family(1, 24), family(2, 24)
    assert a != b and benign_a != benign_b
    head = a.index("[[deploys]]")
    assert a[a.index("[[services]]"):head] == b[b.index("[[services]]"):b.index("[[deploys]]")]


def test_a_policy_fitted_on_seed_a_does_at_least_as_well_as_the_default_on_seed_b(tmp_path):
    """Seed 1 has false pages from benign slowdowns; the threshold fitted there removes those of seed 2
    (re-judged from seed 2's recorded firings) and loses no incident."""
    res = compare(1, 2, 24, tmp_path, verify=False)
    assert res["on_a"]["default"]["false_rollback_or_page"] >= 1 and res["diff"]
    b = res["on_b_rejudged"]
    assert b["default"]["false_rollback_or_page"] >= 1 and b["default"]["incidents"] >= 1   # not a vacuous pass
    assert at_least_as_good(b)
    assert b["tuned"]["false_rollback_or_page"] < b["default"]["false_rollback_or_page"]
