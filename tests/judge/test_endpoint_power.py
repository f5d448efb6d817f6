"""What a confirmation could not exclude: power per endpoint, not only service-wide.

A service-wide error rate over thousands of requests would have shown a small
regression; an endpoint seeing a request every ten seconds, compared with its
own few requests before the deploy, only a large one. The verdict says both.
"""

from __future__ import annotations

import math

from detector.config import load_pipeline
from detector.simulate.scoring import replay_scenario
from detector.stats import sequential

WEAK_ENDPOINT = """
name = "weak_endpoint_power"
seed = 1209
start = 2026-11-27T12:00:00Z
duration_s = 1800
verification_s = 900

[[services]]
name = "search"
version = "v1.0.0"
instances = 4

  [[services.endpoints]]
  name = "GET /search"
  rps = 20
  error_rate = 0.002
  latency_median_ms = 40
  latency_p99_ms = 300

  [[services.endpoints]]
  name = "POST /reindex"
  rps = 0.1
  error_rate = 0.005
  latency_median_ms = 200
  latency_p99_ms = 900

[[deploys]]
id = "d-weak"
service = "search"
version = "v1.1.0"
at_s = 900
strategy = "blue_green"
expect = "confirmed"
"""


def _scenario(tmp_path, text: str, name: str = "weak_endpoint_power") -> dict:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    _truth, records, _ = replay_scenario(path, tmp_path)
    (verdict,) = [r for r in records if r["type"] == "verdict"]
    return verdict


def _points(reason: str) -> float:
    return float(reason.split("regression of +")[1].split(" ")[0])


def test_a_confirmation_says_what_a_quiet_endpoint_could_not_exclude(tmp_path):
    """A good blue/green deploy is confirmed; its verdict also says that on the endpoint seeing 0.1
    requests/s only a much larger regression than the service-wide one would have been seen, with
    the counts that figure comes from, in its reasons and in its structured detail."""
    verdict = _scenario(tmp_path, WEAK_ENDPOINT)
    assert verdict["decision"] == "confirmed"
    service_wide, *rest = verdict["reasons"]
    assert "+" in service_wide and "POST /reindex" not in service_wide
    (weak,) = [r for r in rest if r.startswith("on endpoint")]
    assert weak.startswith("on endpoint POST /reindex (")
    assert "of the new version's requests" in weak and "before the deploy) only an error-rate regression of +" in weak
    threshold = load_pipeline().verification.detectable_error_points
    assert _points(weak) > threshold > _points(service_wide)
    assert "GET /search" not in " ".join(rest)
    detectable = verdict["detail"]["detectable"]
    assert detectable["error_points"] == round(_points(service_wide), 2) or \
        abs(detectable["error_points"] - _points(service_wide)) < 0.051
    (ep,) = detectable["endpoints"]
    assert ep["endpoint"] == "POST /reindex" and abs(ep["error_points"] - _points(weak)) < 0.051
    assert f", {ep['requests']}; " in weak and f"in {ep['before_requests']} requests before" in weak
    # about 0.1 req/s of 20.1 over the 900 s verification, and 900 s before it
    assert 40 < ep["requests"] < 160 and ep["share"] < 0.01 and 40 < ep["before_requests"] < 160


def test_the_endpoint_figure_is_what_its_counts_show_at_an_endpoint_rules_threshold(tmp_path):
    """The endpoint figure comes from the endpoint's own counts, as the service-wide one does: at
    the stated rise the expected evidence reaches an endpoint rule's threshold (the budget over
    e-BH's worst case), a point below it does not."""
    pipeline = load_pipeline()
    verdict = _scenario(tmp_path, WEAK_ENDPOINT)
    (ep,) = verdict["detail"]["detectable"]["endpoints"]
    tested = [r for r in pipeline.rules if r.signal in ("error_rate", "latency", "transactions")]
    need = math.log10(2 / (pipeline.verification.false_alarm_rate / len(tested)))
    n, r, m = ep["requests"], ep["before_errors"], ep["before_requests"]
    p0, d = r / m, ep["error_points"] / 100

    def evidence(rise: float) -> float:
        return float(sequential.before_log10(n * (p0 + rise), n, r, m))

    assert evidence(d + 0.001) >= need > evidence(d - 0.01)


def test_an_inconclusive_verdict_names_its_least_covered_endpoint(tmp_path):
    """A quiet admin service's deploy is inconclusive service-wide; the verdict also names the
    endpoint with the least traffic of the new version and what could not be excluded there."""
    _truth, records, _ = replay_scenario("low_traffic", tmp_path)
    (verdict,) = [r for r in records if r["type"] == "verdict" and r["service"] == "admin"]
    assert verdict["decision"] == "inconclusive"
    on = [r for r in verdict["reasons"] if r.startswith("on endpoint")]
    assert on and on[0].startswith("on endpoint POST /admin/users/{id}/roles (")
    endpoints = verdict["detail"]["detectable"]["endpoints"]
    assert endpoints[0]["endpoint"] == "POST /admin/users/{id}/roles"
    assert endpoints[0]["error_points"] is None or endpoints[0]["error_points"] > \
        verdict["detail"]["detectable"]["error_points"]


def test_a_missed_regression_on_a_quiet_endpoint_is_below_what_the_verdict_claims_to_exclude(tmp_path):
    """+8 points on the endpoint seeing 0.1 requests/s (about 115 requests in 900 s, against 102
    before): too few for any rule, and the confirmation says so, naming a figure above +8 for that
    endpoint (never a claim that the regression it missed would have been seen)."""
    text = WEAK_ENDPOINT.replace('expect = "confirmed"', '''expect = "confirmed"

  [[deploys.faults]]
  kind = "error_increase"
  error_rate = 0.08
  endpoints = ["POST /reindex"]''')
    verdict = _scenario(tmp_path, text, "weak_endpoint_fault")
    assert verdict["decision"] == "confirmed"
    (ep,) = [e for e in verdict["detail"]["detectable"]["endpoints"] if e["endpoint"] == "POST /reindex"]
    assert ep["error_points"] is None or ep["error_points"] > 8.0


def test_a_confirmation_never_claims_less_than_the_rules_act_on(tmp_path):
    """18,000 requests would show a +0.3-point rise in evidence, but no error-rate rule acts below its
    `min_effect`: the confirmation states the smallest rule effect, not the finer power figure."""
    pipeline = load_pipeline()
    floor = min(r.min_effect for r in pipeline.rules if r.signal == "error_rate" and not r.dry_run)
    verdict = _scenario(tmp_path, WEAK_ENDPOINT)
    service_wide = verdict["reasons"][0]
    assert service_wide.startswith("no rule held") and _points(service_wide) == floor
    assert verdict["detail"]["detectable"]["error_points"] == floor
