"""Transactions per endpoint: a drop confined to one endpoint is not diluted by the others.

`transactions-moderate` and `transactions-dropped` compare completed
transactions per request service-wide. A payments service with two endpoints
that complete transactions and one that completes none loses 20 % of one
endpoint's completions: service-wide that is about 10 %, below both service
rules. `endpoint-transactions` (15 % fewer completed transactions per request
on an endpoint with >= 5 % of the traffic, over 300 s, ticket) holds on it, and
the deploy, a code change, gets root cause `code` (confined to some endpoints).
"""

from __future__ import annotations

from pathlib import Path

from detector.simulate.scoring import replay_scenario

SCENARIO = """
name = "{name}"
seed = 73
start = 2026-11-26T11:00:00Z
duration_s = 1500
verification_s = 600

[traffic]
diurnal_amplitude = 0.2

[[services]]
name = "payments"
version = "v2.13.4"
instances = 4
db = "payments"

  [[services.endpoints]]
  name = "POST /pay"
  rps = 15
  error_rate = 0.004
  latency_median_ms = 220
  latency_p99_ms = 1400
  txn = "payment_captured"
  txn_fraction = 0.95

  [[services.endpoints]]
  name = "POST /refunds"
  rps = 15
  error_rate = 0.004
  latency_median_ms = 180
  latency_p99_ms = 1200
  txn = "refund_issued"
  txn_fraction = 0.95

  [[services.endpoints]]
  name = "GET /payments/{{id}}"
  rps = 10
  error_rate = 0.001
  latency_median_ms = 20
  latency_p99_ms = 120

[[deploys]]
id = "d-ep-txn"
service = "payments"
version = "v2.15.0"
at_s = 600
strategy = "blue_green"
change_kind = "code"
expect = "{expect}"
{fault}
"""

DROP = """
  [[deploys.faults]]
  kind = "drop_transactions"
  fraction = 0.2
  endpoints = ["POST /pay"]
  onset_s = 0
"""


def _run(tmp_path: Path, name: str, fault: str, expect: str) -> tuple[dict, list[dict]]:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, fault=fault, expect=expect))
    truth, records, _ = replay_scenario(path, tmp_path)
    deploy = truth["deploys"][0]["deploy_id"]
    verdicts = [r for r in records if r["type"] == "verdict" and r["deploy_id"] == deploy]
    assert len(verdicts) == 1
    anomalies = [r for r in records if r["type"] == "anomaly" and r["deploy_id"] == deploy]
    return verdicts[0], anomalies


def test_a_drop_on_one_endpoint_is_a_ticket_with_root_cause_code(tmp_path):
    verdict, anomalies = _run(tmp_path, "endpoint_txn_drop", DROP, "ticket")
    rules = {a["detail"].get("rule") for a in anomalies}
    assert verdict["decision"] == "ticket"
    assert "endpoint-transactions" in rules
    # Diluted service-wide: neither service rule holds.
    assert not {"transactions-moderate", "transactions-dropped"} & rules
    held = [a for a in anomalies if a["detail"].get("rule") == "endpoint-transactions"]
    assert {a["endpoint"] for a in held} == {"POST /pay"}
    assert verdict["root_cause"]["category"] == "code"
    assert any("endpoints" in e for e in verdict["root_cause"]["evidence"])


def test_without_a_drop_the_endpoint_rule_does_not_hold(tmp_path):
    verdict, anomalies = _run(tmp_path, "endpoint_txn_none", "", "confirmed")
    assert verdict["decision"] == "confirmed"
    assert "endpoint-transactions" not in {a["detail"].get("rule") for a in anomalies}
