"""Deploy events that arrive late (after windows following them closed) are judged from history.

Both of a deploy's events (`started`, `finished`) can be late, for instance when
the deploys topic is read after a backlog. The `finished` event once made the
judge evaluate the windows it had already judged a second time: the counts
doubled, and from about 400 s late the core stopped with "span of window
starts ... is not a run of consecutive slices".
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from detector.config import load_pipeline
from detector.records import encode
from detector.replay import replay
from detector.simulate.scoring import replay_scenario


def _delay_deploys(events: bytes, late_s: float) -> bytes:
    """The same events, each deploy event moved to where the stream reached its ts + late_s."""
    out, held = [], []
    for line in events.splitlines():
        e = orjson.loads(line)
        if e["type"] == "deploy":
            held.append((e["ts"] + late_s, line))
            continue
        while held and e["ts"] >= held[0][0]:
            out.append(held.pop(0)[1])
        out.append(line)
    out.extend(line for _, line in held)
    return b"\n".join(out) + b"\n"


def _pipeline():
    # a verification short enough to end inside the scenario, so a verdict says what it counted
    p = load_pipeline()
    return dataclasses.replace(p, verification=dataclasses.replace(p.verification, period_s=600.0))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("late")
    _truth, _records, events = replay_scenario("shared_db_three_services", work, rate_scale=0.5)
    return events, _replay(events)


def _replay(path) -> list[dict]:
    out: list[dict] = []
    replay([path], _pipeline(), lambda r: out.append(orjson.loads(encode(r))))
    return out


def _verdicts(records: list[dict]) -> dict[str, dict]:
    return {r["deploy_id"]: r for r in records if r["type"] == "verdict"}


@pytest.mark.parametrize("late_s", [120, 400, 1000])
def test_late_deploy_events_are_judged_once_without_stopping(scenario, tmp_path, late_s):
    events, on_time = scenario
    late = tmp_path / "late.jsonl"
    late.write_bytes(_delay_deploys(events.read_bytes(), late_s))
    got = _replay(late)
    ids = [r["deploy_id"] for r in got if r["type"] == "verdict"]
    assert len(ids) == len(set(ids)) == 1
    want, have = _verdicts(on_time), _verdicts(got)
    assert set(want) == set(have)
    for dep, v in want.items():
        # every window of the new version counted once, as on time (the reference before the
        # deploy may be cut short by the history a core keeps, so other figures can differ)
        assert have[dep]["detail"]["new_version_requests"] == v["detail"]["new_version_requests"]
