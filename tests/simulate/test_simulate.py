"""The traffic simulator produces contract events with the statistics its scenario asks for."""

from __future__ import annotations

import asyncio
import io
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from detector.ingest.contract import decode_batch
from detector.ingest.interner import Interner
from detector.simulate import (
    ScenarioError,
    Simulator,
    build_truth,
    load_scenario,
    parse_scenario_text,
    produce_kafka,
    simulate_to_file,
    truth_path_for,
    write_jsonl,
)
from detector.simulate.main import main as simulate_main

SCENARIOS = Path(__file__).resolve().parents[2] / "benchmarks" / "scenarios"
T0 = 1795687200.0  # the test scenario's start, 2026-11-26T10:00:00Z

# Flat traffic (no diurnal cycle, no drift) so that rates can be checked exactly.
BASE = """
name = "unit"
seed = 5
start = "2026-11-26T10:00:00Z"
duration_s = {duration_s}
out_of_order_s = 0.5

[traffic]
diurnal_amplitude = 0.0
drift_amplitude = 0.0

[[services]]
name = "shop"
version = "v1"
instances = 5
db = "orders"

  [[services.endpoints]]
  name = "POST /pay"
  rps = 40
  error_rate = 0.01
  client_error_rate = 0.05
  latency_median_ms = 100
  latency_p99_ms = 600
  critical = true
  txn = "checkout"
  txn_fraction = 0.9

  [[services.endpoints]]
  name = "GET /items"
  rps = 60
  error_rate = 0.002
  latency_median_ms = 20
  latency_p99_ms = 150

  [[services.endpoints]]
  name = "GET /slow"
  rps = 3
  error_rate = 0.0
  latency_median_ms = 300
  latency_p99_ms = 2000

[[services]]
name = "stock"
version = "s1"
instances = 3
db = "orders"

  [[services.endpoints]]
  name = "GET /stock/{{id}}"
  rps = 30
  error_rate = 0.003
  latency_median_ms = 15
  latency_p99_ms = 90
"""


def scenario(extra: str = "", duration_s: float = 300.0):
    return parse_scenario_text(BASE.format(duration_s=duration_s) + extra, "unit.toml")


def docs_of(sc) -> list[dict]:
    return [orjson.loads(v) for v in Simulator(sc).events()]


def requests(docs, **match) -> list[dict]:
    return [d for d in docs if d["type"] == "request" and all(d.get(k) == v for k, v in match.items())]


def between(rows: list[dict], start_s: float, end_s: float) -> list[dict]:
    """Rows whose event time is in [start_s, end_s) seconds after the scenario start."""
    return [d for d in rows if T0 + start_s <= d["ts"] < T0 + end_s]


def error_share(rows: list[dict]) -> float:
    return sum(d["status"] >= 500 for d in rows) / len(rows)


def txn_share(rows: list[dict]) -> float:
    """Share of successful requests that completed a transaction."""
    return sum("txn" in d for d in rows) / sum(d["status"] < 400 for d in rows)


def median_ok_latency(rows: list[dict]) -> float:
    return float(np.median([d["latency_ms"] for d in rows if d["status"] < 400]))


def within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    """Whether a proportion observed over n trials is within `sigmas` binomial standard errors."""
    se = math.sqrt(max(expected * (1 - expected), 1e-9) / n)
    return abs(observed - expected) <= sigmas * se + 1e-12


CANARY = """
[[deploys]]
id = "d-1"
service = "shop"
version = "v2"
at_s = 120
strategy = "canary"
canary_weight = 0.25
change_kind = "code"
expect = "rollback"
expect_root_cause = "code"

  [[deploys.faults]]
  kind = "error_increase"
  error_rate = 0.2
  endpoints = ["POST /pay"]
  onset_s = 30

  [[deploys.faults]]
  kind = "new_log_template"
  pattern = "NullPointerException in OrderService.apply at line {line}"
  rate_per_request = 0.1
  endpoints = ["POST /pay"]
  onset_s = 30

  [[deploys.faults]]
  kind = "drop_transactions"
  fraction = 0.5
  endpoints = ["POST /pay"]
  onset_s = 30

  [[deploys.faults]]
  kind = "latency_increase"
  factor = 3.0
  endpoints = ["GET /items"]
  onset_s = 30
"""


@pytest.fixture(scope="module")
def steady_docs() -> list[dict]:
    return docs_of(scenario(duration_s=600))


@pytest.fixture(scope="module")
def canary_docs() -> list[dict]:
    return docs_of(scenario(CANARY, duration_s=600))


def test_every_event_decodes_without_rejection(canary_docs):
    """Every generated line passes the contract decoder, and all four event types appear."""
    sc = scenario(
        CANARY
        + """
[[disturbances]]
kind = "infra_slowdown"
db = "orders"
start_s = 200
duration_s = 100

[[disturbances]]
kind = "retry_storm"
services = ["shop"]
endpoints = ["GET /items"]
start_s = 100
duration_s = 60
multiplier = 2
""",
        duration_s=400,
    )
    values = list(Simulator(sc).events())
    batch = decode_batch(values, Interner())
    assert batch.rejected == []
    assert batch.accepted == len(values)
    assert len(batch.requests) and len(batch.logs) and len(batch.metrics) and len(batch.deploys) == 1
    for d in map(orjson.loads, values[:2000]):
        if d["type"] != "deploy":
            assert d["version"] and d["instance"]


def test_request_rate_per_endpoint_matches_scenario(steady_docs):
    """Each endpoint's request count over the run is its rps times the duration, within Poisson noise."""
    counts = Counter((d["service"], d["endpoint"]) for d in steady_docs if d["type"] == "request")
    for (svc, ep), rps in {
        ("shop", "POST /pay"): 40,
        ("shop", "GET /items"): 60,
        ("shop", "GET /slow"): 3,
        ("stock", "GET /stock/{id}"): 30,
    }.items():
        expected = rps * 600
        assert abs(counts[(svc, ep)] - expected) <= 4 * math.sqrt(expected), (svc, ep, counts[(svc, ep)])


def test_error_and_client_error_fractions_match_scenario(steady_docs):
    """5xx fraction equals error_rate and 4xx fraction equals client_error_rate, per endpoint."""
    pay = requests(steady_docs, endpoint="POST /pay")
    n = len(pay)
    errors = sum(d["status"] >= 500 for d in pay) / n
    client = sum(400 <= d["status"] < 500 for d in pay) / n
    assert within(errors, 0.01, n)
    assert within(client, 0.05 * (1 - 0.01), n)
    slow = requests(steady_docs, endpoint="GET /slow")
    assert not any(d["status"] >= 500 for d in slow)
    assert {d["status"] for d in pay if d["status"] < 400} == {201}


def test_latency_median_and_p99_match_scenario(steady_docs):
    """Successful requests' latency median and p99 reproduce the scenario's values."""
    for ep, median, p99 in (("POST /pay", 100, 600), ("GET /items", 20, 150)):
        lat = np.array([d["latency_ms"] for d in requests(steady_docs, endpoint=ep) if d["status"] < 400])
        assert abs(np.median(lat) / median - 1) < 0.04, (ep, np.median(lat))
        assert abs(np.percentile(lat, 99) / p99 - 1) < 0.15, (ep, np.percentile(lat, 99))
        assert lat.max() > 2 * p99  # the Pareto tail reaches well past p99


def test_transactions_on_fraction_of_successful_requests(steady_docs):
    """txn marks txn_fraction of successful requests of its endpoint and nothing else."""
    pay_ok = [d for d in requests(steady_docs, endpoint="POST /pay") if d["status"] < 400]
    share = sum(d.get("txn") == "checkout" for d in pay_ok) / len(pay_ok)
    assert within(share, 0.9, len(pay_ok))
    assert not any("txn" in d for d in requests(steady_docs) if d["endpoint"] != "POST /pay" or d["status"] >= 400)


def test_canary_weight_is_the_new_versions_traffic_share(canary_docs):
    """Before the canary no request is on v2; after it v2 takes canary_weight of the service's requests."""
    before = [d for d in requests(canary_docs, service="shop") if d["ts"] < T0 + 120]
    after = [d for d in requests(canary_docs, service="shop") if d["ts"] >= T0 + 121]
    assert before and not any(d["version"] == "v2" for d in before)
    share = sum(d["version"] == "v2" for d in after) / len(after)
    assert within(share, 0.25, len(after))
    assert {d["version"] for d in requests(canary_docs, service="stock")} == {"s1"}
    pods = {d["instance"] for d in after if d["version"] == "v2"}
    assert len(pods) == math.ceil(0.25 * 5)
    assert all(p.startswith("shop-") for p in pods)


def test_faults_hit_only_the_injected_version_after_onset(canary_docs):
    """Errors, dropped transactions and slowness appear on v2's faulty endpoints after onset, never on v1."""
    onset_s = 120 + 30
    v2 = between(requests(canary_docs, endpoint="POST /pay", version="v2"), onset_s, 600)
    v1 = between(requests(canary_docs, endpoint="POST /pay", version="v1"), onset_s, 600)
    v2_early = between(requests(canary_docs, endpoint="POST /pay", version="v2"), 0, onset_s)
    assert within(error_share(v2), 1 - (1 - 0.01) * (1 - 0.2), len(v2))
    assert within(error_share(v1), 0.01, len(v1))
    assert error_share(v2_early) < 0.06
    assert within(txn_share(v2), 0.45, len(v2))
    assert within(txn_share(v1), 0.9, len(v1))
    items_v2 = between(requests(canary_docs, endpoint="GET /items", version="v2"), onset_s, 600)
    items_v1 = between(requests(canary_docs, endpoint="GET /items", version="v1"), onset_s, 600)
    assert 2.6 < median_ok_latency(items_v2) / median_ok_latency(items_v1) < 3.4
    npe = [d for d in canary_docs if d["type"] == "log" and d["message"].startswith("NullPointerException")]
    assert npe and all(d["version"] == "v2" and d["ts"] >= T0 + onset_s and d["level"] == "ERROR" for d in npe)


def test_rolling_deploy_ramps_and_reports_finished():
    """A rolling deploy's share grows linearly to 1 over rollout_s, then a finished event follows."""
    sc = scenario(
        """
[[deploys]]
id = "d-roll"
service = "stock"
version = "s2"
at_s = 60
strategy = "rolling"
rollout_s = 120
""",
        duration_s=300,
    )
    docs = docs_of(sc)
    stock = requests(docs, service="stock")

    def share(start_s: float, end_s: float) -> float:
        return float(np.mean([d["version"] == "s2" for d in between(stock, start_s, end_s)]))

    assert share(0, 60) == 0
    assert 0.05 < share(60, 100) < 0.28  # expected 1/6
    assert 0.72 < share(140, 180) < 0.95  # expected 5/6
    assert share(181, 300) == 1
    deploys = [d for d in docs if d["type"] == "deploy"]
    assert [(d["phase"], d["ts"]) for d in deploys] == [("started", T0 + 60), ("finished", T0 + 180)]
    assert deploys[0]["previous_version"] == "s1" and deploys[0]["strategy"] == "rolling"


def test_blue_green_switches_all_traffic_at_once():
    """A blue/green deploy moves every request to the new version at its start."""
    sc = scenario(
        '[[deploys]]\nservice = "stock"\nversion = "s2"\nat_s = 100\nstrategy = "blue_green"\n', duration_s=200
    )
    stock = requests(docs_of(sc), service="stock")
    t = T0 + 100
    assert {d["version"] for d in stock if d["ts"] < t - 0.01} == {"s1"}
    assert {d["version"] for d in stock if d["ts"] >= t + 0.01} == {"s2"}


def test_traffic_loss_thins_only_the_new_versions_requests():
    """A traffic_loss fault removes its fraction of the new version's requests, nothing else."""
    sc = scenario(
        '[[deploys]]\nservice = "stock"\nversion = "s2"\nat_s = 100\nstrategy = "blue_green"\n'
        '  [[deploys.faults]]\n  kind = "traffic_loss"\n  fraction = 0.6\n', duration_s=200
    )
    stock = requests(docs_of(sc), service="stock")
    before, after = len(between(stock, 0, 100)), len(between(stock, 100, 200))
    assert 0.3 < after / before < 0.5  # 40 % of the traffic is left
    assert all(d["version"] == "s2" for d in between(stock, 100.01, 200))


def test_canary_promotion_moves_all_traffic_and_reports_finished():
    """A canary with promote_after_s takes every request from then on, and a finished event marks it."""
    sc = scenario(
        '[[deploys]]\nid = "d-p"\nservice = "stock"\nversion = "s2"\nat_s = 50\nstrategy = "canary"\n'
        "canary_weight = 0.3\npromote_after_s = 100\n",
        duration_s=250,
    )
    docs = docs_of(sc)
    stock = requests(docs, service="stock")
    canary = between(stock, 51, 149)
    assert within(np.mean([d["version"] == "s2" for d in canary]), 0.3, len(canary))
    assert {d["version"] for d in between(stock, 150.01, 250)} == {"s2"}
    phases = [(d["phase"], d["ts"], d.get("canary_weight")) for d in docs if d["type"] == "deploy"]
    assert phases == [("started", T0 + 50, 0.3), ("finished", T0 + 150, 0.3)]


def test_paced_output_follows_event_time():
    """With speed N, writing takes about duration / N seconds of wall time instead of running flat out."""
    sc = scenario(duration_s=20)
    started = time.monotonic()
    write_jsonl(Simulator(sc).chunks(), io.BytesIO(), speed=50)
    elapsed_s = time.monotonic() - started
    assert 0.3 < elapsed_s < 3.0  # 20 s / 50 = 0.4 s, minus the first event's offset


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    """Output is a pure function of scenario and seed."""
    sc = scenario(CANARY, duration_s=200)
    paths = [tmp_path / f"{i}.jsonl" for i in range(3)]
    write_jsonl(Simulator(sc).chunks(), paths[0])
    write_jsonl(Simulator(sc).chunks(), paths[1])
    write_jsonl(Simulator(sc.with_overrides(seed=6)).chunks(), paths[2])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_arrival_order_is_out_of_order_by_at_most_the_bound(steady_docs):
    """Event time may go backwards between lines, but never by more than out_of_order_s."""
    ts = np.array([d["ts"] for d in steady_docs])
    lateness = np.maximum.accumulate(ts) - ts
    assert 0.2 < lateness.max() <= 0.5 + 1e-6


def test_logs_have_varied_realistic_shapes(steady_docs):
    """Logs carry INFO/WARN/ERROR lines whose variable parts (ids, uuids, IPs, durations) differ per line."""
    logs = [d for d in steady_docs if d["type"] == "log"]
    assert {d["level"] for d in logs} >= {"INFO", "WARN", "ERROR"}
    msgs = [d["message"] for d in logs]
    assert len(set(msgs)) > 0.95 * len(msgs)
    assert any("10." in m and "authenticated" in m for m in msgs)
    errors = [d for d in logs if d["level"] == "ERROR"]
    shop_5xx = sum(d["status"] >= 500 for d in requests(steady_docs, service="shop"))
    assert 0.75 * shop_5xx < sum(d["service"] == "shop" for d in errors) <= shop_5xx


def test_metrics_per_pod_every_interval(steady_docs):
    """Every pod reports cpu_utilization and labelled db_latency_ms once per metric interval."""
    metrics = [d for d in steady_docs if d["type"] == "metric"]
    per_pod = Counter((d["instance"], d["name"]) for d in metrics)
    assert len({i for i, _ in per_pod}) == 5 + 3
    assert set(per_pod.values()) == {60}  # 600 s / 10 s
    assert all(d["labels"] == {"db": "orders"} for d in metrics if d["name"] == "db_latency_ms")
    cpu = [d["value"] for d in metrics if d["name"] == "cpu_utilization"]
    assert 0.25 < np.mean(cpu) < 0.45


def test_infra_slowdown_hits_every_version_metric_and_log():
    """A slow shared db slows and fails both services in all versions, raises db_latency_ms and logs timeouts."""
    sc = scenario(
        CANARY
        + """
[[disturbances]]
kind = "infra_slowdown"
db = "orders"
start_s = 300
duration_s = 200
ramp_s = 10
latency_factor = 3
error_rate = 0.05
db_latency_factor = 10
""",
        duration_s=500,
    )
    docs = docs_of(sc)
    for svc, ver in (("shop", "v1"), ("shop", "v2"), ("stock", "s1")):
        rows = [d for d in requests(docs, service=svc, version=ver) if d["endpoint"] != "POST /pay"]
        inside, before = between(rows, 320, 480), between(rows, 150, 290)
        assert error_share(inside) > error_share(before) + 0.03, (svc, ver)
        assert np.percentile([d["latency_ms"] for d in inside], 99) >= 3000
    db = [d["value"] for d in docs if d["type"] == "metric" and d["name"] == "db_latency_ms"]
    db_in = [d["value"] for d in between(docs, 320, 480) if d["type"] == "metric" and d["name"] == "db_latency_ms"]
    db_before = [d["value"] for d in between(docs, 150, 290) if d["type"] == "metric" and d["name"] == "db_latency_ms"]
    assert db and np.median(db_in) > 5 * np.median(db_before)
    timeouts = [
        d
        for d in docs
        if d["type"] == "log" and d["message"].startswith("connection to db orders timed out after 3000 ms")
    ]
    assert {d["service"] for d in timeouts} == {"shop", "stock"}
    assert {d["version"] for d in timeouts} >= {"v1", "v2", "s1"}


def test_surge_and_retry_storm_raise_volume_and_latency_in_all_versions():
    """A traffic surge multiplies volume and slows every version; a retry storm adds 503s on its endpoint."""
    sc = scenario(
        """
[[disturbances]]
kind = "traffic_surge"
services = ["shop"]
start_s = 100
duration_s = 100
ramp_s = 0
multiplier = 2.5

[[disturbances]]
kind = "retry_storm"
services = ["stock"]
start_s = 100
duration_s = 100
ramp_s = 0
multiplier = 3
error_rate = 0.1
""",
        duration_s=300,
    )
    docs = docs_of(sc)
    items = requests(docs, endpoint="GET /items")
    surge = between(items, 100, 200)
    assert abs(len(surge) - 60 * 100 * 2.5) < 4 * math.sqrt(15000)
    assert median_ok_latency(surge) > 1.3 * median_ok_latency(between(items, 0, 100) + between(items, 200, 300))
    storm = between(requests(docs, service="stock"), 100, 200)
    assert abs(len(storm) - 30 * 100 * 3) < 4 * math.sqrt(9000)
    shed = np.mean([d["status"] == 503 for d in storm])
    assert within(shed, 0.1, len(storm), sigmas=5)


def test_pod_restart_blip_is_brief_and_on_new_pods_only():
    """A pod_restart_blip fails the new version for its duration_s at rollout and then stops."""
    sc = scenario(
        """
[[deploys]]
service = "shop"
version = "v2"
at_s = 60
strategy = "blue_green"
expect = "confirmed"

  [[deploys.faults]]
  kind = "pod_restart_blip"
  error_rate = 0.5
  duration_s = 5
""",
        duration_s=200,
    )
    t0 = T0 + 60
    shop = [d for d in requests(docs_of(sc), service="shop") if d["endpoint"] != "POST /pay"]
    blip = np.mean([d["status"] >= 500 for d in shop if t0 <= d["ts"] < t0 + 5])
    after = np.mean([d["status"] >= 500 for d in shop if t0 + 6 <= d["ts"]])
    assert blip > 0.35 and after < 0.01


def test_diurnal_cycle_ramps_up_in_the_morning_and_averages_to_rps():
    """The rate follows a daily cycle peaking at peak_hour whose daily mean is the scenario's rps."""
    text = BASE.format(duration_s=86400).replace("diurnal_amplitude = 0.0", "diurnal_amplitude = 0.4")
    sim = Simulator(parse_scenario_text(text, "unit.toml"))
    start_hour = 10.0
    hours = np.arange(0, 24, 0.25)
    t_s = ((hours - start_hour) % 24) * 3600.0
    rates = sim.rates(t_s)[0]  # POST /pay, rps 40
    assert abs(rates.mean() - 40) < 0.5
    assert rates[hours == 15.0][0] == pytest.approx(40 * 1.4)
    assert rates[hours == 3.0][0] == pytest.approx(40 * 0.6)
    morning = rates[(hours >= 6) & (hours <= 12)]
    assert np.all(np.diff(morning) > 0)


def test_truth_file_states_injections_overlaps_and_expectations(tmp_path):
    """The truth file lists each deploy's faults, onsets, endpoints, benign overlaps and expected verdict."""
    sc = scenario(
        CANARY
        + """
[[deploys]]
id = "d-2"
service = "stock"
version = "s2"
at_s = 200
rollout_s = 60
expect = "confirmed"

  [[deploys.faults]]
  kind = "pod_restart_blip"

[[disturbances]]
kind = "infra_slowdown"
db = "orders"
start_s = 250
duration_s = 100
""",
        duration_s=400,
    )
    out = tmp_path / "run.jsonl"
    truth = simulate_to_file(sc, out)
    assert truth_path_for(out) == tmp_path / "run.truth.json"
    assert orjson.loads((tmp_path / "run.truth.json").read_bytes()) == truth
    d1, d2 = truth["deploys"]
    t0 = T0
    assert (d1["deploy_id"], d1["expect"], d1["expect_root_cause"]) == ("d-1", "rollback", "code")
    assert d1["previous_version"] == "v1" and d1["canary_weight"] == 0.25 and d1["finished_ts"] is None
    assert d1["fault_kinds"] == ["drop_transactions", "error_increase", "latency_increase", "new_log_template"]
    err = next(f for f in d1["faults"] if f["kind"] == "error_increase")
    assert err == {
        "kind": "error_increase",
        "onset_ts": t0 + 150,
        "end_ts": None,
        "endpoints": ["POST /pay"],
        "all_endpoints": False,
        "params": {"error_rate": 0.2},
    }
    assert [b["kind"] for b in d1["benign"]] == ["infra_slowdown"]
    assert (d2["expect"], d2["expect_root_cause"], d2["faults"]) == ("confirmed", None, [])
    assert [b["kind"] for b in d2["benign"]] == ["pod_restart_blip", "infra_slowdown"]
    assert d2["finished_ts"] == t0 + 260
    lines = out.read_bytes().count(b"\n")
    assert (
        truth["counts"]["request"] + truth["counts"]["log"] + truth["counts"]["metric"] + truth["counts"]["deploy"]
        == lines
    )
    assert truth["counts"]["deploy"] == 3


def test_superseded_canary_hands_traffic_to_the_next_deploy():
    """A deploy that starts during an open canary supersedes it: the canary's version disappears."""
    sc = scenario(
        CANARY.replace("expect = ", "# expect = ")
        + '\n[[deploys]]\nid = "d-3"\nservice = "shop"\nversion = "v3"\nat_s = 300\nstrategy = "blue_green"\n',
        duration_s=400,
    )
    sim = Simulator(sc)
    docs = [orjson.loads(v) for v in sim.events()]
    t = T0 + 300
    assert {d["version"] for d in requests(docs, service="shop") if d["ts"] >= t + 0.01} == {"v3"}
    d3 = next(d for d in docs if d["type"] == "deploy" and d["deploy_id"] == "d-3")
    assert d3["previous_version"] == "v1"
    truth = build_truth(sc, sim.timeline)
    first = truth["deploys"][0]
    assert first["superseded_ts"] == first["next_deploy_ts"] == first["verification_end_ts"] == t


SHOP_V2 = '\n[[deploys]]\nservice = "shop"\nversion = "v2"\nat_s = 10\n'


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ("\n[trafic]\ndiurnal_amplitude = 0.1\n", "unit.toml: unknown key trafic"),
        (
            "\nbogus = 1\n",
            "unit.toml: unknown key services[1].endpoints[0].bogus (allowed here: client_error_rate, critical",
        ),
        (
            '\n[[deploys]]\nservice = "shop"\nversion = "v2"\nat_s = 10\nstrategy = "canary"\ncanary_weight = 1.5\n',
            "deploys[0].canary_weight must be a number > 0 and < 1 (got 1.5)",
        ),
        (
            '\n[[deploys]]\nservice = "shop"\nversion = "v2"\nat_s = "10"\n',
            "deploys[0].at_s must be a number >= 0 and < 300 (got '10')",
        ),
        (
            '\n[[deploys]]\nservice = "nope"\nversion = "v2"\nat_s = 10\n',
            "deploys[0].service must be one of the scenario's services (shop, stock) (got 'nope')",
        ),
        (
            SHOP_V2 + '[[deploys.faults]]\nkind = "error_increase"\nerror_rate = 0.1\nendpoints = ["GET /nope"]\n',
            "deploys[0].faults[0].endpoints must be an endpoint of service 'shop' (POST /pay, GET /items, GET /slow)",
        ),
        (
            SHOP_V2 + '[[deploys.faults]]\nkind = "new_log_template"\npattern = "bad {thing}"\n',
            "deploys[0].faults[0].pattern must be placeholders among {amount, db, dep,",
        ),
        (
            SHOP_V2 + '[[deploys.faults]]\nkind = "explode"\n',
            "deploys[0].faults[0].kind must be one of 'error_increase'",
        ),
        (
            SHOP_V2 + 'rollout_s = 100\n[[deploys]]\nservice = "shop"\nversion = "v3"\nat_s = 50\n',
            "before the rolling deploy 'd-shop-v2' of 'shop' finishes at 110 s",
        ),
        ('\n[[deploys]]\nservice = "shop"\nversion = "v1"\nat_s = 10\n', "re-deploys version 'v1'"),
        (
            '\n[[deploys]]\nservice = "shop"\nversion = "v2"\nat_s = 10\nexpect = "maybe"\n',
            "deploys[0].expect must be one of 'rollback', 'page'",
        ),
        (
            '\n[[disturbances]]\nkind = "infra_slowdown"\ndb = "redis"\nstart_s = 1\nduration_s = 100\n',
            "disturbances[0].db must be a database some service uses",
        ),
    ],
)
def test_invalid_scenarios_are_rejected_with_file_key_value_and_expectation(extra, fragment):
    """Unknown keys, wrong types and impossible values raise a ScenarioError naming file, key, value and expectation."""
    with pytest.raises(ScenarioError) as err:
        scenario(extra)
    assert fragment in str(err.value)
    assert str(err.value).startswith("unit.toml: ")


def test_wrong_types_in_services_are_named():
    """A service-level type error names the nested key path."""
    text = BASE.format(duration_s=100).replace("rps = 60", 'rps = "sixty"')
    with pytest.raises(
        ScenarioError, match=r"services\[0\]\.endpoints\[1\]\.rps must be a number > 0 and <= 100000 \(got 'sixty'\)"
    ):
        parse_scenario_text(text, "unit.toml")


def test_shipped_scenarios_load_and_demo_fits_its_budget():
    """Every shipped scenario validates; the demo has >= 10 min of history, varied deploys and < 1.5 M events."""
    files = sorted(SCENARIOS.glob("*.toml"))
    names = {f.stem for f in files}
    assert {
        "demo",
        "baseline_day",
        "config_fault",
        "code_fault_canary",
        "benign_surge",
        "infra_slowdown",
        "low_traffic",
    } <= names
    for f in files:
        load_scenario(f)
    demo = load_scenario(SCENARIOS / "demo.toml")
    assert min(d.at_s for d in demo.deploys) >= 600
    assert {d.expect for d in demo.deploys} >= {"rollback", "confirmed"}
    assert {d.strategy for d in demo.deploys} >= {"rolling", "canary"}
    assert {d.kind for d in demo.disturbances} >= {"infra_slowdown"}
    sim = Simulator(demo)
    rate = sim.rates(np.arange(0, demo.duration_s, 60.0)).sum(axis=0).mean()
    logs_per_request = max(s.info_log_rate + s.warn_log_rate for s in demo.services) + 0.02
    assert rate * demo.duration_s * (1 + logs_per_request) < 1.5e6
    baseline = load_scenario(SCENARIOS / "baseline_day.toml")
    assert baseline.duration_s >= 86400 and not baseline.deploys


def test_cli_writes_events_and_truth_and_reports_bad_scenarios(tmp_path, capsys):
    """`detector simulate` writes JSONL plus truth for a shipped scenario name, and exits 2 on an invalid file."""
    out = tmp_path / "cf.jsonl"
    assert simulate_main(["config_fault", "--out", str(out), "--duration-s", "660", "--seed", "3"]) == 0
    truth = orjson.loads((tmp_path / "cf.truth.json").read_bytes())
    assert truth["seed"] == 3 and truth["deploys"][0]["expect"] == "rollback"
    assert b'"phase":"started"' in out.read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text("bogus = 1\n" + BASE.format(duration_s=100))
    assert simulate_main([str(bad), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert f"{bad}: unknown key bogus" in capsys.readouterr().err


def test_generation_is_fast_enough(tmp_path):
    """Writing JSONL costs at most 10 us of CPU per event (>= 100k events/s) on the demo's traffic mix."""
    sc = load_scenario(SCENARIOS / "demo.toml", duration_s=600)
    started = time.process_time()  # CPU time: other work on the machine does not count
    counts = write_jsonl(Simulator(sc).chunks(), tmp_path / "demo.jsonl")
    rate = counts.total / (time.process_time() - started)
    assert rate > 100_000, f"{rate:.0f} events/s"


@pytest.mark.kafka
async def test_kafka_output_is_keyed_by_service_on_per_type_topics(kafka_bootstrap, unique_topic):
    """Kafka output puts each type on its topic, keyed and partitioned by service, in order, with nothing lost."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.partitioner import DefaultPartitioner

    sc = scenario(CANARY, duration_s=150)
    topics = {k: unique_topic(k) for k in ("request", "log", "metric", "deploy")}
    sim = Simulator(sc)
    counts = await produce_kafka(sim.chunks(), kafka_bootstrap, sim.service_names, topics=topics, create_partitions=3)
    expected = {v: i for i, v in enumerate(Simulator(sc).events())}
    consumer = AIOKafkaConsumer(
        *topics.values(), bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < counts.total and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    assert len(got) == counts.total == len(expected)
    assert Counter(r.topic for r in got) == {topics[k]: n for k, n in counts.by_kind.items() if n}
    last_index: dict[tuple[str, int], int] = {}
    for r in got:
        d = orjson.loads(r.value)
        assert r.key == d["service"].encode() and topics[d["type"]] == r.topic
        assert r.partition == DefaultPartitioner()(r.key, [0, 1, 2], [0, 1, 2])
        index = expected[r.value]
        assert index > last_index.get((r.topic, r.partition), -1)  # arrival order kept per partition
        last_index[(r.topic, r.partition)] = index


def test_module_runs_as_a_script(tmp_path):
    """`python -m detector.simulate.main` works without the top-level CLI (used by scripts and make targets)."""
    out = tmp_path / "lt.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "detector.simulate.main", "low_traffic", "--out", str(out), "--duration-s", "120"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "simulated low_traffic" in proc.stderr and out.stat().st_size > 0
