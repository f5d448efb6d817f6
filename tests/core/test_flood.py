"""A cardinality flood neither crashes the core nor hides what changed elsewhere."""

from __future__ import annotations

import orjson
import pytest

from detector.simulate.scoring import pipeline_for
from detector.records import encode
from detector.replay import replay
from detector.simulate.flood import flood
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    d = tmp_path_factory.mktemp("flood")
    events = d / "clean.jsonl"
    truth = simulate_to_file(load_scenario(resolve_scenario("config_fault")), events)
    lines = events.read_bytes().splitlines()
    start = orjson.loads(lines[0])["ts"] + 600  # from minute 10
    return d, lines, start, pipeline_for(truth, None)


def _run(path, pipeline) -> list[dict]:
    out: list[dict] = []
    replay([path], pipeline, lambda r: out.append(orjson.loads(encode(r))))
    return out


def test_a_flood_of_new_endpoints_and_random_logs_during_a_deploy_is_survived(scenario):
    d, lines, start, pipeline = scenario
    path = d / "flood-all.jsonl"
    path.write_bytes(b"\n".join(flood(lines, start)) + b"\n")
    records = _run(path, pipeline)
    deploys = {orjson.loads(x)["deploy_id"] for x in lines if b'"type":"deploy"' in x}
    assert {r["deploy_id"] for r in records if r["type"] == "verdict"} == deploys


def test_a_flood_in_one_service_changes_nothing_the_detector_says_of_another(scenario):
    d, lines, start, pipeline = scenario
    clean = d / "clean.jsonl"
    path = d / "flood-catalog.jsonl"
    path.write_bytes(b"\n".join(flood(lines, start, services={"catalog"})) + b"\n")
    payments = lambda recs: [r for r in recs if r["service"] == "payments"]  # noqa: E731
    before, after = payments(_run(clean, pipeline)), payments(_run(path, pipeline))
    assert any(r["type"] == "verdict" and r["decision"] in ("rollback", "page") for r in before)
    assert after == before  # the deploy's new templates and failing endpoints are still seen, the same way
