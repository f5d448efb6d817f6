"""Reasons print the rates they compare: the reference's own rate, never a negative one."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from detector.config import Rule, load_pipeline
from detector.judge import rules
from detector.replay import replay

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from sweep_world import events, make_trial  # noqa: E402

RATE = re.compile(r"(-?\d+(?:\.\d+)?)%")


def test_an_error_rule_expects_the_references_own_rate_not_observed_minus_the_adjusted_difference():
    """Window weights can make the Mantel-Haenszel difference larger than the pooled observed rate
    (a window where the new version failed every call against a big reference, a quiet one that did
    not fail): the expected rate is what the reference showed in those windows, the effect the
    adjusted difference."""
    rule = Rule(name="all", signal="error_rate", action="rollback", min_effect=5.0, min_score=0.0, duration_s=30)
    # (the failing windows at both ends of the span: persistence needs the effect at its start and end)
    k, n = np.array([[10.0], [0.0], [10.0]]), np.array([[10.0], [1000.0], [10.0]])
    r, m = np.array([[1.0], [0.0], [1.0]]), np.array([[1000.0], [10.0], [1000.0]])
    inp = rules.Inputs(np.array([7], np.int32), np.array([9.0]), 9.0, 0.001, tables=(k, n, r, m))
    (c,) = rules.evaluate(rule, inp)
    assert c.observed == 20 / 1020
    assert c.expected == 2 / 2010  # the reference's errors over its requests in the windows compared
    assert c.effect > 40 and c.observed - c.effect / 100 < 0  # the old print: observed minus the difference


def test_no_reason_of_a_sweep_deploy_prints_a_negative_rate(tmp_path):
    """The sweep deploy whose rollback once read "15.91% vs -0.27% for the stable version" (seed 12,
    trial 8) and two more caught on error rules: every percentage in every reason is >= 0, and the
    error-rate anomalies expect a rate in [0, 1]."""
    seen = []
    for index in (8, 26, 7):  # 31 (until issue 12, tenth round) is now a ticket by its new log template first
        trial = make_trial(index, 12)
        path = tmp_path / f"trial-{index}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in events(trial)))
        out = []
        replay([path], load_pipeline(), lambda r: out.append(r.to_dict()))
        verdict = next(d for d in out if d["type"] == "verdict" and d["deploy_id"] == trial.deploy_id)
        assert verdict["decision"] in ("rollback", "page", "ticket")
        seen.extend(verdict["reasons"])
        for d in out:
            if d["type"] == "anomaly" and d["signal"] == "error_rate":
                assert 0.0 <= d["expected"] <= 1.0, d
    rates = [float(x) for reason in seen if reason.startswith("error rate") for x in RATE.findall(reason)]
    assert len(rates) >= 6
    assert min(rates) >= 0.0, seen
