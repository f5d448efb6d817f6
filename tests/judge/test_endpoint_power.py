"""What a confirmation could not exclude: power per endpoint, not only service-wide.

A service-wide error rate over thousands of requests would have shown a small
regression; an endpoint seeing a request every ten seconds, compared with its
own few requests before the deploy, only a large one. The verdict says both.
"""

from __future__ import annotations

from detector.config import load_pipeline
from detector.simulate.scoring import replay_scenario

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


def test_a_confirmation_says_what_a_quiet_endpoint_could_not_exclude(tmp_path):
    """A good blue/green deploy is confirmed; its verdict also says that on the endpoint seeing 0.1
    requests/s only a much larger regression than the service-wide one would have been seen."""
    path = tmp_path / "weak_endpoint_power.toml"
    path.write_text(WEAK_ENDPOINT)
    _truth, records, _ = replay_scenario(path, tmp_path)
    (verdict,) = [r for r in records if r["type"] == "verdict"]
    assert verdict["decision"] == "confirmed"
    service_wide, *rest = verdict["reasons"]
    assert "+" in service_wide and "POST /reindex" not in service_wide
    (weak,) = [r for r in rest if r.startswith("on endpoint")]
    assert weak.startswith("on endpoint POST /reindex only an error-rate regression of +")
    points = float(weak.split("+")[1].split(" ")[0])
    assert points > load_pipeline().verification.detectable_error_points
    assert "GET /search" not in " ".join(rest)
