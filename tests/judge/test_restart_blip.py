"""A pod restart on a benign blue/green deploy: one pod of four fails most of its
requests for ~34 s, then all is well. Issue 12: "an effect confined to a short
blip (pod restarts) never holds a rule". The blip is more than half of
`errors-everywhere`'s 60 s span, so a persistence check that asks only for
most of the span lets it through; the effect must also be there at the
span's start and end.

The scenario is `txn_drop` (a blue/green switch of payments, four instances)
with its fault replaced: the new version fails 21 % of its requests (85 % of
one pod's of four) for 34 s, from 90 s after the switch.
"""

from __future__ import annotations

from pathlib import Path

from test_moderate_rules import _verdict


def _blip(error_rate: float, duration_s: float, onset_s: float = 90) -> str:
    return f"""  [[deploys.faults]]
  kind = "pod_restart_blip"
  error_rate = {error_rate}
  duration_s = {duration_s}
  onset_s = {onset_s}
"""


def test_a_pod_restart_blip_of_34_s_on_a_blue_green_deploy_is_nothing(tmp_path: Path):
    verdict, rules = _verdict(tmp_path, "blip_bg", _blip(0.21, 34))
    assert verdict["decision"] == "confirmed", (verdict["decision"], rules)
    assert not [r for r in rules if r]


def test_the_same_errors_that_stay_roll_back(tmp_path: Path):
    # The same failure rate, staying: errors-everywhere still rolls it back.
    verdict, rules = _verdict(tmp_path, "stay_bg", _blip(0.21, 1e6))
    assert verdict["decision"] == "rollback"
    assert "errors-everywhere" in rules
