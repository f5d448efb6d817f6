"""Hostile input: misdated events, blank lines, garbage, a BOM, failed replays, user mistakes.

Each bad line goes to the dead letters with its true line number and a
reason; nothing else changes: the records equal those of the clean stream.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from detector.config import load_pipeline
from detector.simulate.scoring import pipeline_for
from detector.replay import replay, run_replay
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario
from detector.ingest.timeguard import Recent, guard, human_span

YEAR_3000 = 32503680000


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A scenario with a deploy that must be rolled back, and its records from a clean replay."""
    d = tmp_path_factory.mktemp("hostile")
    events = d / "clean.jsonl"
    truth = simulate_to_file(load_scenario(resolve_scenario("config_fault")), events)
    pipeline = pipeline_for(truth, None)
    return events, pipeline, _records(events, pipeline)


def _records(path: Path, pipeline, partitions: int = 1, dead: list | None = None) -> list[bytes]:
    from detector.records import encode

    out: list[bytes] = []

    def reject(src, line, value, reason):
        if dead is not None:
            dead.append((line, value, reason))

    replay([path], pipeline, lambda r: out.append(encode(r)), reject, partitions=partitions)
    return out


def _with(event: bytes, **fields) -> bytes:
    d = orjson.loads(event)
    d.update(fields)
    return orjson.dumps(d)


def _poison(src: Path, dst: Path, first: bytes | None = None) -> dict[str, int]:
    """Copy `src` with hostile lines inserted; returns the 1-based line number of each."""
    lines = src.read_bytes().splitlines()
    out: list[bytes] = []
    where: dict[str, int] = {}
    if first is not None:
        out.append(first)
        where["first"] = 1
    for i, line in enumerate(lines):
        if i == 0 and first is None:
            line = b"\xef\xbb\xbf" + line  # a byte-order mark on the first line
        out.append(line)
        if i == 100:
            out += [b"", b"   \t"]
        if i == 2000:
            out.append(_with(line, ts=YEAR_3000))
            where["future"] = len(out)
        if i == 3000:
            out.append(_with(line, ts=1))
            where["past"] = len(out)
        if i == len(lines) // 2:
            out.append(b"\x00\xff\xfe binary garbage \x80")
            where["garbage"] = len(out)
        if i == 2 * len(lines) // 3:
            out.append(_with(line, ts=YEAR_3000 + 12345))
            where["future2"] = len(out)
    dst.write_bytes(b"\n".join(out) + b"\n")
    return where


def test_the_clean_stream_has_a_rollback_to_protect(clean):
    _events, _pipeline, records = clean
    assert any(b'"decision":"rollback"' in r for r in records)


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_poisoned_stream_gives_the_clean_records_and_dead_letters_with_true_lines(clean, tmp_path, partitions):
    events, pipeline, records = clean
    bad = tmp_path / "poisoned.jsonl"
    where = _poison(events, bad)
    dead: list = []
    got = _records(bad, pipeline, partitions, dead)
    assert got == (records if partitions == 1 else _records(events, pipeline, partitions))
    lines = {line: (value, reason) for line, value, reason in dead}
    assert set(lines) == {where["future"], where["future2"], where["garbage"]}
    assert "ahead of the stream" in lines[where["future"]][1] and "years" in lines[where["future"]][1]
    assert b"\x80" in lines[where["garbage"]][0]
    raw = bad.read_bytes().splitlines()
    for line, (value, _reason) in lines.items():
        assert raw[line - 1] == value  # the original bytes, found at the reported line


@pytest.mark.parametrize("first", ["future", "past"])
def test_a_misdated_first_event_does_not_set_the_clock(clean, tmp_path, first):
    events, pipeline, records = clean
    head = events.read_bytes().splitlines()[0]
    bad = tmp_path / "first.jsonl"
    _poison(events, bad, first=_with(head, ts=YEAR_3000 if first == "future" else 1))
    dead: list = []
    assert _records(bad, pipeline, 1, dead) == records
    assert (1 in {line for line, _, _ in dead}) == (first == "future")


def test_the_replay_command_writes_dead_letters_with_value_or_base64(clean, tmp_path):
    events, _pipeline, _records_ = clean
    bad = tmp_path / "poisoned.jsonl"
    where = _poison(events, bad)
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    res = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--input", str(bad), "--output", str(out),
                          "--dlq", str(dlq)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "2 blank lines skipped" in res.stderr and "3 rejected" in res.stderr
    dead = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    by_line = {d["line"]: d for d in dead}
    assert base64.b64decode(by_line[where["garbage"]]["value_b64"]) == b"\x00\xff\xfe binary garbage \x80"
    assert orjson.loads(by_line[where["future"]]["value"])["ts"] == YEAR_3000
    assert by_line[where["future"]]["error"].startswith(f"ts {YEAR_3000} is ")


def test_blank_lines_are_numbered_and_a_bom_is_no_bad_event(tmp_path):
    good = orjson.dumps({"type": "metric", "ts": 1764140400.0, "service": "a", "name": "cpu", "value": 1.0})
    lines = [b"\xef\xbb\xbf" + good, b"", good, b"  ", b"{not json", good]
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    dead: list = []
    res = replay([f], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append(line))
    assert dead == [5]
    assert res.events == 4 and res.skipped == 2 and res.rejected == 1


# --- the guard itself ---------------------------------------------------------------------------

def _g(ts, progress=None, skew=300.0, now=None):
    ts = np.asarray(ts, dtype=np.float64)
    return guard(ts, np.arange(len(ts)), progress, skew, now)


def test_hourly_samples_are_a_stream_not_a_series_of_jumps():
    ts = 1.7e9 + 3600.0 * np.arange(500)
    g = _g(ts, progress=1.7e9 - 3600)
    assert not g.reject and not len(g.late)
    g = _g(ts)  # first batch too
    assert not g.reject and not len(g.late)


def test_a_real_gap_in_busy_traffic_is_confirmed_by_the_events_after_it():
    before = 1.7e9 + np.arange(0, 100, 0.1)
    after = 1.7e9 + 3600 + np.arange(0, 100, 0.1)  # an hour of silence, then traffic again
    assert not _g(np.concatenate([before, after]), progress=1.7e9).reject
    assert not _g(after, progress=float(before[-1])).reject


def test_millisecond_timestamps_mixed_into_a_stream_are_refused_one_by_one():
    ts = 1.7e9 + np.arange(0, 200, 0.5)
    bad = np.arange(5, len(ts), 7)
    ts[bad] *= 1000
    g = _g(ts, progress=1.7e9)
    assert sorted(g.reject) == bad.tolist()


def test_the_wall_clock_refuses_what_the_stream_cannot_judge():
    now = 1.7e9
    assert not _g([now + 10], progress=now - 3600, now=now).reject  # a quiet stream's next event
    g = _g([now + 3600], progress=now - 10, now=now)
    assert list(g.reject.values()) == ["ts 1700003600 is 1 hour ahead of the wall clock"]
    assert _g([now + 3600], progress=now - 10).reject  # no clock, no events after it: refused


def test_events_refused_for_want_of_followers_still_confirm_the_ones_before_them():
    """A sparse stream (deploys in a file of their own): the last two events have too few events
    after them to be confirmed; refusing them took the followers of the two before, which had
    been confirmed, and those were refused too."""
    ts = 1764511940 + np.array([0, 53, 111, 87220, 87319, 87716, 87749, 88840, 88868, 91705, 91737], np.float64)
    g = _g(ts)
    assert sorted(g.reject) == [9, 10] and "47 minutes ahead of the stream" in g.reject[9]
    # more events of the stream follow (a replay's next chunk): they will judge the last two
    g = guard(ts, np.arange(len(ts)), None, 300.0, None, more=True)
    assert not g.reject and g.defer.tolist() == [9, 10]
    assert not _g(ts, now=float(ts[-1])).reject  # live, the clock vouches for them


@pytest.mark.parametrize("chunk_lines", [8192, 51, 50, 49])
def test_a_gap_at_a_chunk_boundary_loses_no_event(tmp_path, monkeypatch, chunk_lines):
    """Two hours of silence between two bursts. With the first event after the gap the last line
    of a chunk, nothing in its batch could confirm the jump and it went to the dead letters
    ("2 hours ahead of the stream"); it waits for the next chunk now."""
    import detector.replay as replay_mod

    t0 = 1764140400.0
    events = [{"type": "request", "ts": t0 + i + (7200 if i >= 50 else 0), "service": "a", "endpoint": "/",
               "status": 200, "latency_ms": 5} for i in range(100)]
    path = tmp_path / "gap.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    dead: list = []
    res = replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append((line, why)))
    assert dead == [] and res.events == 100 and res.rejected == 0 and res.late == 0


@pytest.mark.parametrize("chunk_lines", [8192, 97])
def test_a_stream_that_begins_pauses_and_resumes_keeps_its_beginning(tmp_path, monkeypatch, chunk_lines):
    """30 events, six hours of silence, then 2,000 more. Judged against its whole first batch, the
    beginning was "far older than the events around it": a replay read in one chunk counted those
    30 late (and the metric baselines learnt without them), one read in chunks of 97 lines kept
    them. The beginning's neighbours are its own events: kept, whatever the batching."""
    import detector.replay as replay_mod

    t0 = 1764140400.0
    events = [{"type": "metric", "ts": t0 + i + (21600 if i >= 30 else 0), "service": "a", "name": "m",
               "value": 1.0} for i in range(2030)]
    events.insert(1000, {"type": "metric", "ts": 1.0, "service": "a", "name": "m", "value": 1.0})
    path = tmp_path / "pause.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    res = replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: None)
    # the event dated 1970 is alone among far newer ones: late in the one-chunk replay (in the
    # other it comes after the first batch, where the windows count it late)
    assert res.late == 1 and res.rejected == 0


def test_a_misdated_event_in_a_small_batch_does_not_set_the_step_it_is_judged_by():
    """A last chunk of three lines with a millisecond timestamp in the middle: in arrival order both
    gaps were ~1.8e12 s, so the typical step (and the jump's threshold, ten steps) was far beyond
    the event, which was taken. The step is the lower median gap of the times in order now."""
    t = 1764349776.0
    g = _g([t + 0.5, t * 1000, t + 0.3], progress=t - 6)
    assert list(g.reject) == [1] and "ahead of the stream" in g.reject[1]


@pytest.mark.parametrize("chunk_lines", [8192, 97])
def test_a_millisecond_timestamp_in_the_last_chunk_is_dead_lettered(tmp_path, monkeypatch, chunk_lines):
    """Stress seed 118: the same stream read in one chunk refused the line, in chunks of 97 took it."""
    import detector.replay as replay_mod

    t0 = 1764349000.0
    events = [{"type": "request", "ts": t0 + 2 * i, "service": "a", "endpoint": "/", "status": 200,
               "latency_ms": 5} for i in range(196)]
    events.insert(195, {**events[0], "ts": (t0 + 390.5) * 1000})
    path = tmp_path / "ms.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    dead: list = []
    res = replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append((line, why)))
    assert [line for line, _ in dead] == [196] and "ahead of the stream" in dead[0][1]
    assert res.events == 197 and res.late == 0


@pytest.mark.parametrize("chunk_lines", [8192, 97])
def test_the_last_of_hourly_samples_is_judged_in_the_steps_before_it_whatever_the_chunking(
        tmp_path, monkeypatch, chunk_lines):
    """97 hourly samples, then one five hours after the last, at the very end of the input: well
    within ten of the stream's steps. Measured in the steps of its batch, it was taken from the
    input read whole and refused ("5 hours ahead of the stream") in chunks of 97 lines, where it was
    alone in its last chunk. It is measured in the steps of the events before it now."""
    import detector.replay as replay_mod

    t0 = 1764140400.0
    events = [{"type": "metric", "ts": t0 + 3600 * i, "service": "a", "name": "m", "value": 1.0} for i in range(97)]
    events.append({**events[0], "ts": t0 + 3600 * 101})
    path = tmp_path / "hourly.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    monkeypatch.setattr(replay_mod, "CHUNK_LINES", chunk_lines)
    dead: list = []
    res = replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append((line, why)))
    assert dead == [] and res.events == 98 and res.late == 0


def test_a_jump_is_measured_in_the_steps_of_the_events_accepted_before_it():
    """The same event, alone in its batch or after its stream's hourly samples: the same threshold
    when the guard is told the stream's last accepted events (a replay's previous chunk)."""
    hourly = 1.7e9 + 3600.0 * np.arange(20)
    last = np.array([hourly[-1] + 5 * 3600])
    assert not _g(np.concatenate([hourly, last]), progress=hourly[0] - 3600).reject
    assert _g(last, progress=float(hourly[-1])).reject  # alone, nothing tells its steps
    recent = Recent()
    recent.take(np.arange(20), hourly)
    g = guard(last, np.arange(1), float(hourly[-1]), 300.0, None, recent=recent, keys=np.array([20]))
    assert not g.reject
    # a year 3000 event stays far ahead in any steps
    g = guard(np.array([32503680000.0]), np.arange(1), float(hourly[-1]), 300.0, None, recent=recent,
              keys=np.array([20]))
    assert list(g.reject) == [0]


def test_a_misdated_event_first_among_a_stretch_is_late_and_the_stretch_is_kept():
    ts = np.concatenate(([1.0, 2.0], 1764140400.0 + np.arange(40.0), [5.0], 1764140440.0 + np.arange(40.0)))
    g = _g(ts)
    assert sorted(g.late.tolist()) == [0, 1, 42] and not g.reject


def test_the_last_event_of_a_replay_after_a_jump_is_still_refused(tmp_path):
    """No clock and nothing after it: an event far ahead at the very end cannot be confirmed."""
    t0 = 1764140400.0
    events = [{"type": "metric", "ts": t0 + i, "service": "a", "name": "m", "value": 1.0} for i in range(20)]
    events.append({"type": "metric", "ts": YEAR_3000, "service": "a", "name": "m", "value": 1.0})
    path = tmp_path / "tail.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    dead: list = []
    replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append((line, why)))
    assert [line for line, _ in dead] == [21] and "years ahead of the stream" in dead[0][1]


@pytest.mark.parametrize("partitions", [1, 3])
def test_misdated_events_at_a_quiet_services_end_are_refused_over_partitions(tmp_path, partitions):
    """A service goes quiet; its last three events are dated in the year 3000 while the other services
    go on. Over partitions, that service's partition saw nothing after them but each other, and they
    vouched for each other: the first was taken and the partition's clock moved 974 years. A replay screens each
    chunk of an input whole now, so every partition's events contradict them."""
    from detector.ingest.partitioning import partition_of

    services = ["quiet"] + [s for s in (f"busy-{i}" for i in range(40))
                            if partition_of(s, 3) != partition_of("quiet", 3)][:2]
    t0 = 1764140400.0
    events = [{"type": "request", "ts": t0 + i, "service": services[i % 3], "endpoint": "/", "status": 200,
               "latency_ms": 5} for i in range(300)]
    for at in (200, 230, 260):  # the quiet service's last events
        events.insert(at, {"type": "request", "ts": YEAR_3000, "service": "quiet", "endpoint": "/",
                           "status": 200, "latency_ms": 5})
    events = [e for i, e in enumerate(events) if e["service"] != "quiet" or e["ts"] == YEAR_3000 or i < 150]
    path = tmp_path / "quiet.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    dead: list = []
    res = replay([path], load_pipeline(), lambda r: None, lambda s, line, v, why: dead.append((line, why)),
                 partitions=partitions)
    misdated = [i + 1 for i, e in enumerate(events) if e["ts"] == YEAR_3000]
    assert [line for line, _ in dead] == misdated
    assert all("years ahead of the stream" in why for _, why in dead)
    assert res.rejected == 3 and res.late == 0


def test_spans_read_as_a_person_would_say_them():
    assert human_span(30_000 * 365.25 * 86400) == "30,000 years"
    assert human_span(7200) == "2 hours" and human_span(90) == "2 minutes" and human_span(5) == "5 seconds"


# --- replays that fail leave files alone; user mistakes get one line -----------------------------

def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detector.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_a_failed_replay_leaves_existing_outputs_untouched(tmp_path):
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    out.write_text("earlier output\n")
    dlq.write_text("earlier dead letters\n")
    res = _cli("replay", "--input", str(tmp_path / "missing.jsonl"), "--output", str(out), "--dlq", str(dlq))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "missing.jsonl: no such file" in res.stderr
    assert out.read_text() == "earlier output\n" and dlq.read_text() == "earlier dead letters\n"


def test_a_replay_that_fails_midway_renames_nothing_into_place(tmp_path, monkeypatch):
    f = tmp_path / "in.jsonl"
    f.write_bytes(orjson.dumps({"type": "metric", "ts": 1.7e9, "service": "a", "name": "m", "value": 1}) + b"\n")
    out = tmp_path / "out.jsonl"
    out.write_text("earlier\n")

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("detector.replay.replay", boom)
    with pytest.raises(RuntimeError):
        run_replay([str(f)], str(out), load_pipeline(), quiet=True)
    assert out.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize("case", ["output_is_input", "dlq_is_input", "dlq_is_output"])
def test_a_replay_never_writes_over_its_input(tmp_path, case):
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"type":"metric","ts":1700000000,"service":"a","name":"m","value":1}\n')
    before = f.read_bytes()
    out = {"output_is_input": f, "dlq_is_input": tmp_path / "o.jsonl", "dlq_is_output": tmp_path / "o.jsonl"}[case]
    dlq = {"output_is_input": tmp_path / "d.jsonl", "dlq_is_input": f, "dlq_is_output": out}[case]
    res = _cli("replay", "--input", str(f), "--output", str(out), "--dlq", str(dlq))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f.read_bytes() == before


@pytest.mark.parametrize("args, expected", [
    (["--input", "{dir}"], "is a directory"),
    (["--input", "{f}", "--output", "{dir}/nosuchdir/out.jsonl"], "does not exist"),
    (["--input", "{f}", "--partitions", "0"], "--partitions 0"),
    (["--input", "{f}", "--partitions", "-2"], "--partitions -2"),
    (["--input", "{f}", "--pipeline", "{dir}/warm.toml"], "cannot read baseline file"),
    (["--input", "{f}", "--pipeline", "{dir}/corrupt.toml"], "corrupt.npz"),
])
def test_user_mistakes_get_one_line_and_exit_2(tmp_path, args, expected):
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"type":"metric","ts":1700000000,"service":"a","name":"m","value":1}\n')
    (tmp_path / "warm.toml").write_text(f'[baselines]\nwarm_start = "{tmp_path}/none.npz"\n')
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "corrupt.toml").write_text(f'[baselines]\nwarm_start = "{tmp_path}/corrupt.npz"\n')
    full = ["replay", "--output", str(tmp_path / "out.jsonl")]
    full += [a.format(dir=tmp_path, f=f) for a in args]
    res = _cli(*full)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert expected in res.stderr


def test_the_command_line_helps_a_newcomer():
    res = _cli()
    assert res.returncode == 2 and "replay" in res.stdout and "simulate" in res.stdout
    assert _cli("--version").stdout.startswith("detector ")
    assert "Run the detector live next to Kafka" in _cli("run", "--help").stdout
    assert "Replay history" in _cli("replay", "--help").stdout
    res = _cli("simulate", "nosuch", "--out", "x.jsonl")
    assert res.returncode == 2 and "config_fault" in res.stderr and "Traceback" not in res.stderr
