"""`new-error-pattern`: a template never seen before, still appearing a minute on.

The rule (ticket) needs `min_effect` lines at WARN or above from the new
version (3 shipped, 5 until issue 12's tenth round, 10 until its fifth, see
docs/figures-history.md), at least one per 1,000 of its requests, and the template still
appearing `duration_s` = 60 s after its first line, so a burst of lines while
pods start holds nothing however many lines it has.

The scenario is `log_only_code` (a canary logging a new exception on some
requests of one endpoint, every response a success) with the exception's
rate or duration changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import load_pipeline
from detector.simulate.main import resolve_scenario
from detector.simulate.scoring import replay_scenario

FAULT = """  rate_per_request = 0.02
  endpoints = ["POST /reservations"]"""


def _verdict(tmp_path: Path, name: str, rate: float, duration_s: float | None = None) -> dict:
    text = resolve_scenario("log_only_code").read_text()
    assert FAULT in text
    fault = FAULT.replace("0.02", str(rate)) + (f"\n  duration_s = {duration_s}" if duration_s else "")
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(FAULT, fault).replace('name = "log_only_code"', f'name = "{name}"'))
    truth, records, _ = replay_scenario(path, tmp_path)
    deploy = truth["deploys"][0]["deploy_id"]
    (verdict,) = [r for r in records if r["type"] == "verdict" and r["deploy_id"] == deploy]
    return verdict


def _rule():
    return next(r for r in load_pipeline().rules if r.name == "new-error-pattern")


def test_the_rule_wants_the_template_a_minute_apart():
    rule = _rule()
    assert (rule.min_level, rule.duration_s, rule.action) == (0.001, 60, "ticket")


def test_a_rare_new_exception_is_a_ticket_at_the_rules_line_count(tmp_path: Path):
    """0.8 % of one endpoint's canary requests (about one line a minute): a ticket, root cause code,
    quoting exactly the rule's line count (it holds at the window that brings that line)."""
    lines = int(_rule().min_effect)
    verdict = _verdict(tmp_path, "rare_exception", 0.008)
    assert verdict["decision"] == "ticket"
    assert verdict["root_cause"]["category"] == "code"
    assert f"rule 'new-error-pattern' needs {lines} lines" in verdict["reasons"][0]
    assert verdict["ts"] - verdict["verification"]["started"] < 600  # within the scenario's period


@pytest.mark.parametrize("duration_s", [30, 40])
def test_a_burst_of_new_lines_that_stops_holds_nothing(tmp_path: Path, duration_s: float):
    """The same exception on a fifth of the requests for 30-40 s (dozens of lines), then never again."""
    verdict = _verdict(tmp_path, f"exception_burst_{duration_s}", 0.2, duration_s)
    assert verdict["decision"] == "confirmed", verdict["reasons"]
