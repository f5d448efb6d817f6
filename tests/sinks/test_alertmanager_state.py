"""The Alertmanager sink's posted verdict alerts across a restart (a new sink on the same state file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from detector.config import ConfigError, parse_pipeline
from detector.records import RootCause
from detector.sinks import AlertmanagerSink, AlertStateError
from detector.sinks.alertstate import verdict_from_dict
from detector.sinks.describe import rfc3339

from sinkkit import EVENT_TS, Recorder, client, verdict


class FakeClock:
    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def am_sink(server: Recorder, clock: FakeClock, state: Path | None) -> AlertmanagerSink:
    return AlertmanagerSink(url=server.url, client=client(), clock=clock, resend_s=60, resolve_s=600,
                            state_path=state)


def root_cause(deploy_id: str = "d-981") -> RootCause:
    return RootCause(ts=EVENT_TS + 20, service="checkout", deploy_id=deploy_id, root_cause="code",
                     evidence=("new log template: TypeError: <*> in pay_handler line <NUM>",))


async def post_then_stop(server: Recorder, clock: FakeClock, state: Path, *records) -> dict:
    """One sink's life: submit `records`, deliver, stop. Returns the verdict alert it posted first."""
    sink = am_sink(server, clock, state)
    await sink.start()
    for r in records:  # one pass each
        sink.submit(r)
        assert await sink.flush(5)
    await sink.close(1)
    return server.bodies()[0][0]


async def restart_holding_nothing_then_root_cause(server: Recorder, clock: FakeClock, state: Path) -> None:
    """A new sink on `state` that holds no alert as firing takes the verdict's root_cause record and stops."""
    sink = am_sink(server, clock, state)
    assert sink.firing == []
    await sink.start()
    sink.submit(root_cause())
    assert await sink.flush(5)
    await sink.close(1)


async def test_after_a_restart_the_root_cause_record_updates_the_alert_in_place(server: Recorder,
                                                                                tmp_path: Path) -> None:
    """The verdict is posted by one sink; a new sink on the same state file takes its root_cause record and
    posts the same alert (labels, startsAt) with the completed root cause, and keeps re-sending it."""
    clock, state = FakeClock(), tmp_path / "am-state.json"
    first = await post_then_stop(server, clock, state, verdict())
    started = clock.now_s
    clock.now_s += 30  # the restart, well within the alert's endsAt
    sink = am_sink(server, clock, state)
    assert sink.firing == [first["labels"]]
    await sink.start()
    sink.submit(root_cause())
    assert await sink.flush(5)
    updated = server.bodies()[-1][0]
    assert updated["labels"] == first["labels"] and updated["startsAt"] == rfc3339(started)
    notes = updated["annotations"]
    assert notes["root_cause"] == "code" and notes["root_cause_record_id"] == "v-d-981-rc"
    assert "root cause: code" in notes["description"]
    clock.now_s += 61
    assert await sink.flush(5)
    resent = server.bodies()[-1][0]
    assert resent["labels"] == first["labels"] and resent["annotations"]["root_cause"] == "code"
    assert resent["endsAt"] == rfc3339(clock.now_s + 4 * 60)
    await sink.close(1)
    # the completed root cause is in the file too: a second restart keeps it
    saved = orjson.loads(state.read_bytes())["alerts"]
    assert [a["annotations"]["root_cause"] for a in saved] == ["code"]


async def test_a_restored_alert_is_re_sent_when_due_without_any_record(server: Recorder, tmp_path: Path) -> None:
    """Restored alerts keep firing on their own: re-sent once resend_s after their last send."""
    clock, state = FakeClock(), tmp_path / "am-state.json"
    first = await post_then_stop(server, clock, state, verdict())
    clock.now_s += 90
    sink = am_sink(server, clock, state)
    await sink.start()
    assert await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 2
    [again] = server.bodies()[1]
    assert again["labels"] == first["labels"] and again["startsAt"] == first["startsAt"]


async def test_an_alert_expired_while_down_does_not_fire_again(server: Recorder, tmp_path: Path) -> None:
    """Down past the alert's endsAt: Alertmanager resolved it, so the new sink neither re-sends it nor posts
    its root_cause record (that would page again)."""
    clock, state = FakeClock(), tmp_path / "am-state.json"
    await post_then_stop(server, clock, state, verdict())
    clock.now_s += 4 * 60 + 1
    await restart_holding_nothing_then_root_cause(server, clock, state)
    assert len(server.requests) == 1
    assert orjson.loads(state.read_bytes())["alerts"] == []


async def test_a_resolved_alert_leaves_the_file_and_stays_resolved(server: Recorder, tmp_path: Path) -> None:
    """A later deploy's verdict resolves the alert; after a restart there is nothing to re-send or update."""
    clock, state = FakeClock(), tmp_path / "am-state.json"
    await post_then_stop(server, clock, state, verdict(), verdict("d-982", "confirmed", ts=EVENT_TS + 600))
    [[fired], [resolved]] = server.bodies()
    assert resolved["labels"] == fired["labels"] and resolved["endsAt"] == rfc3339(clock.now_s)
    assert orjson.loads(state.read_bytes())["alerts"] == []
    await restart_holding_nothing_then_root_cause(server, clock, state)
    assert len(server.requests) == 2


async def test_a_later_deploys_verdict_after_the_restart_resolves_the_restored_alert(server: Recorder,
                                                                                     tmp_path: Path) -> None:
    """The restored verdict is the service's open one: the next deploy's verdict resolves it."""
    clock, state = FakeClock(), tmp_path / "am-state.json"
    first = await post_then_stop(server, clock, state, verdict())
    clock.now_s += 10
    sink = am_sink(server, clock, state)
    await sink.start()
    sink.submit(verdict("d-982", "confirmed", ts=EVENT_TS + 600))
    assert await sink.flush(5)
    await sink.close(1)
    [resolved] = server.bodies()[-1]
    assert resolved["labels"] == first["labels"] and resolved["endsAt"] == rfc3339(clock.now_s)
    assert sink.firing == []


def test_the_verdict_comes_back_from_its_record_dict() -> None:
    v = dataclasses.replace(verdict(), detail={"smoke": {"failed": 2}})
    assert verdict_from_dict(orjson.loads(orjson.dumps(v.to_dict()))) == v


def test_an_unreadable_state_file_fails_naming_file_key_and_what_to_do(server: Recorder, tmp_path: Path) -> None:
    state = tmp_path / "am-state.json"
    state.write_text('{"version": 1, "alerts": [{"labels": {}}]}')
    with pytest.raises(AlertStateError, match=r"am-state\.json \(sinks\.alertmanager_state_path\) is unreadable "
                                              r"\(KeyError.*delete it knowing"):
        am_sink(server, FakeClock(), state)


def test_the_state_file_must_not_be_the_rollback_hooks() -> None:
    with pytest.raises(ConfigError, match=r"m\.toml: sinks\.alertmanager_state_path must be a file of its own"):
        parse_pipeline('[sinks]\nalertmanager_state_path = "s.json"\nrollback_state_path = "s.json"\n', "m.toml")
    assert parse_pipeline('[sinks]\nalertmanager_state_path = ""\n', "m.toml").sinks.alertmanager_state_path == ""


async def test_a_state_file_that_cannot_be_written_does_not_stop_delivery(server: Recorder, tmp_path: Path) -> None:
    """The file's directory is a file: the alert is still posted and re-sent; only the restart would lose it."""
    (tmp_path / "not-a-dir").write_text("")
    clock = FakeClock()
    sink = am_sink(server, clock, tmp_path / "not-a-dir" / "am-state.json")
    await sink.start()
    sink.submit(verdict())
    assert await sink.flush(5)
    clock.now_s += 61
    assert await sink.flush(5)
    await sink.close(1)
    assert len(server.requests) == 2 and sink.stats.sent == 2 and sink.stats.failed == 0
