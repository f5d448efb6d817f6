"""The judge's pipeline keys are validated strictly and the shipped file sets them."""

from __future__ import annotations

import pytest

from detector.config import ConfigError, load_pipeline, parse_pipeline


@pytest.mark.parametrize("line, key", [
    ("false_alarm_rate = 0.0", "verification.false_alarm_rate"),
    ("false_alarm_rate = 0.7", "verification.false_alarm_rate"),
    ('canary_action = "revert"', "verification.canary_action"),
    ("stable_min_share = 1.5", "verification.stable_min_share"),
    ("window_evidence_cap = 0", "verification.window_evidence_cap"),
    ("shared_window_s = -1", "verification.shared_window_s"),
    ("detectable_error_points = 0", "verification.detectable_error_points"),
    ("inconclusive_min_requests = -3", "verification.inconclusive_min_requests"),
    ("transaction_endpoints_critical = 1", "verification.transaction_endpoints_critical"),
])
def test_impossible_judge_settings_fail_naming_the_key(line, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_pipeline(f"[verification]\n{line}\n", "mine.toml")


def test_the_shipped_pipeline_spells_out_the_judge_settings():
    ver = load_pipeline().verification
    assert ver.false_alarm_rate == 0.001 and ver.canary_action == "rollback"
    assert ver.transaction_endpoints_critical and ver.critical_endpoints == ()
    names = [r.name for r in load_pipeline().rules]
    # The ladder has no holes between "rare endpoint" and "+5 points", for errors and latency.
    assert {"endpoint-errors-moderate", "rare-endpoint-errors", "rare-endpoint-latency"} <= set(names)
