"""A shared slowdown late in a verification is not the deploy's either.

Blame compares a span with what came before. The history keeps `baseline_s`
plus the longest rule span, so the windows before the deploy age out of it
about 15 minutes into a 30-minute verification; after that, blame found
nothing to compare other services and infrastructure metrics with, and a
shared database slowing down 700-1,300 s after a good deploy paged it
(`errors-sustained` against the service before the deploy, in every seed
tried). Blame now compares such a span with the `baseline_s` before it.

The scenario is `shared_db_three_services` (issue 12, class 5) with a
30-minute verification and the slowdown moved later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.simulate.main import resolve_scenario
from detector.simulate.scoring import replay_scenario

START = "start_s = 1020"  # the slowdown, 120 s after the deploy at 900 s


@pytest.mark.parametrize("after_deploy_s", [700, 1300])
def test_a_shared_slowdown_late_in_the_verification_is_not_the_deploys(tmp_path: Path, after_deploy_s: int):
    text = resolve_scenario("shared_db_three_services").read_text()
    assert text.count(START) == 1 and "verification_s = 900" in text and "at_s = 900" in text
    text = (text.replace(START, f"start_s = {900 + after_deploy_s}").replace("verification_s = 900",
                                                                           "verification_s = 1800")
            .replace("duration_s = 2100", "duration_s = 3000", 1)
            .replace('name = "shared_db_three_services"', f'name = "shared_late_{after_deploy_s}"'))
    path = tmp_path / "late.toml"
    path.write_text(text)
    truth, records, _ = replay_scenario(path, tmp_path)
    deploy = truth["deploys"][0]["deploy_id"]
    (verdict,) = [r for r in records if r["type"] == "verdict" and r["deploy_id"] == deploy]
    assert verdict["decision"] == "confirmed", verdict["reasons"]
    assert verdict["root_cause"]["category"] == "data_or_infra"
    held = [r for r in records if r["type"] == "anomaly" and r["detail"].get("rule")]
    assert held and all(r["deploy_id"] is None for r in held)
