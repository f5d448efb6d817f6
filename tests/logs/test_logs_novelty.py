"""Novelty through the whole detector: a new error one constant word away from a known one is new.

A simulated service logs, before and after the deploy, among its everyday
errors "failed to commit transaction <hex> on <db>: deadlock detected,
rolled back after <n> ms" (the simulator's messages). The canary of the new version also logs the same line with one
word changed ("corruption detected"). The detector, replayed over the events,
must report that line as a new template (`log_novelty`), not fold it into the
known one; the known line itself must not be reported.
"""

from __future__ import annotations

import orjson
import pytest

from detector.simulate.scoring import replay_scenario
from detector.logs import mask

KNOWN = "failed to commit transaction {hex16} on {db}: deadlock detected, rolled back after {ms} ms"
NEW = "failed to commit transaction {hex16} on {db}: corruption detected, rolled back after {ms} ms"

SCENARIO = f"""
name = "one_word_novelty"
seed = 3
start = 2026-11-26T10:00:00Z
duration_s = 1200
verification_s = 600

[[services]]
name = "ledger"
version = "v5.2.0"
instances = 4
db = "ledger"

  [[services.endpoints]]
  name = "POST /entries"
  rps = 30
  error_rate = 0.03
  latency_median_ms = 25
  latency_p99_ms = 200

[[deploys]]
id = "d-word-1"
service = "ledger"
version = "v5.3.0"
at_s = 600
strategy = "canary"
canary_weight = 0.3
change_kind = "code"
expect = "ticket"

  [[deploys.faults]]
  kind = "new_log_template"
  pattern = "{NEW}"
  level = "ERROR"
  rate_per_request = 0.02
"""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one-word")
    path = tmp / "one_word_novelty.toml"
    path.write_text(SCENARIO)
    return replay_scenario(path, tmp)


def test_a_line_one_word_away_from_a_known_template_is_flagged_new(replayed):
    truth, records, events = replayed
    events = [orjson.loads(ln) for ln in events.read_text().splitlines()]
    deploy_ts = min(e["ts"] for e in events if e["type"] == "deploy")
    logs = [e for e in events if e["type"] == "log"]
    known_before = [e for e in logs if "deadlock detected" in e["message"] and e["ts"] < deploy_ts]
    assert len(known_before) >= 10, "the known line must be logged before the deploy (raise error_rate)"
    assert any("corruption detected" in e["message"] for e in logs)
    novel = [r for r in records if r["type"] == "anomaly" and r["signal"] == "log_novelty"]
    templates = [r["detail"]["template"] for r in novel]
    assert any("corruption detected" in t for t in templates), templates
    assert not any("deadlock detected" in t or "<*> detected" in t for t in templates), templates
    (found,) = [r for r in novel if "corruption detected" in r["detail"]["template"]]
    assert found["deploy_id"] == "d-word-1"
    assert found["detail"]["template"] == mask(NEW.format(hex16="0123456789abcdef", db="ledger", ms=12))
