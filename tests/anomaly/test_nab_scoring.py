"""NAB's scoring rules as reimplemented in benchmarks/nab_scoring.py, and a short NAB run through replay."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import nab_scoring as ns  # noqa: E402

STANDARD = ns.Profile("standard", 1.0, 0.11, 1.0)


def _file(n=2000, windows=(("2020-01-01T10:00:00", "2020-01-01T11:39:00"),)):
    times = np.datetime64("2020-01-01T00:00:00") + np.arange(n).astype("timedelta64[m]")
    return times, ns.file_rows("f.csv", times, [tuple(w) for w in windows])


def test_probation_window_edges_and_weights():
    """Rows before min(15 %, 750) are not scored; a window's left edge is worth +1, its right edge ~0."""
    times, rows = _file()
    assert rows.scorable.sum() == 2000 - 300
    left, right = 600, 699
    assert rows.window[left] == 0 and rows.window[right] == 0 and rows.window[left - 1] == -1
    assert rows.value[left] == pytest.approx(1.0)
    assert 0 < rows.value[right] < 0.1
    assert rows.value[400] == -1.0  # before the first window: a full false positive
    assert rows.value[right + 1] == pytest.approx(0.0, abs=0.05)  # just after: nearly free
    assert rows.value[right + 400] == -1.0  # > 3 window widths later


def test_score_counts_the_earliest_detection_once_and_every_false_positive():
    _, rows = _file()
    s = np.zeros(2000)
    assert ns.score_file(rows, s, 0.5, STANDARD)["score"] == -1.0  # the window is missed
    s[[600, 650, 699]] = 1.0
    assert ns.score_file(rows, s, 0.5, STANDARD)["score"] == pytest.approx(1.0)
    s[400] = 1.0
    s[100] = 1.0  # probationary: ignored
    assert ns.score_file(rows, s, 0.5, STANDARD)["score"] == pytest.approx(1.0 - 0.11)


def test_outcomes_split_the_file_score_into_windows_and_false_positives():
    """Found windows' best weights, minus the misses, plus the false positives' cost give score_file's total."""
    _, rows = _file(windows=(("2020-01-01T10:00:00", "2020-01-01T11:39:00"),
                             ("2020-01-01T20:00:00", "2020-01-01T21:39:00")))
    s = np.zeros(2000)
    s[[650, 620, 690]] = 1.0  # the first window, detected three times: its earliest detection counts
    s[[400, 720, 1500]] = 1.0  # false positives: before the window (full cost), just after (almost free), later
    s[100] = 1.0  # probationary: ignored
    o = ns.outcomes(rows, s, 0.5, STANDARD)
    assert [(k, first) for k, first, _w in o.windows] == [(0, 620), (1, None)]
    assert o.windows[0][2] == pytest.approx(rows.value[620]) and o.windows[1][2] == 0.0
    assert o.fp_rows.tolist() == [400, 720, 1500]
    assert o.fp_cost == pytest.approx(0.11 * (rows.value[400] + rows.value[720] + rows.value[1500]))
    total = sum(w for _k, first, w in o.windows if first is not None) - 1 + o.fp_cost
    assert total == pytest.approx(ns.score_file(rows, s, 0.5, STANDARD)["score"])


def test_sweep_finds_the_best_threshold():
    _, rows = _file()
    s = np.zeros(2000)
    s[650] = 0.9  # inside the window
    s[400] = 0.95  # a false positive above it
    s[900:950] = 0.3  # a swarm of late false positives
    th, raw = ns.sweep({"f": rows}, {"f": s}, STANDARD)
    assert th == 0.9
    assert raw == pytest.approx(ns.score_file(rows, s, 0.9, STANDARD)["score"])


def test_windows_must_start_and_end_on_rows():
    times = np.datetime64("2020-01-01T00:00:00") + np.arange(100).astype("timedelta64[m]")
    with pytest.raises(ValueError, match="does not start and end on rows"):
        ns.file_rows("f.csv", times, [("2020-01-01T00:10:30", "2020-01-01T00:20:00")])


def test_short_nab_run_through_replay(tmp_path):
    """Two NAB files through the replay path: every window found at the shipped threshold, null at 0."""
    import nab

    out = tmp_path / "table.json"
    assert nab.main(["--files", "realKnownCause/ec2_request_latency_system_failure.csv",
                     "realTraffic/speed_t4013.csv", "--no-river", "--out", str(tmp_path), "--json", str(out)]) == 0
    import json

    rows = {r["detector"]: r for r in json.loads(out.read_text())["rows"]}
    shipped = rows["detector, shipped threshold (records)"]
    assert shipped["windows_detected"] == shipped["windows"] == 5
    assert shipped["standard"] > 80
    assert rows["null"]["standard"] == 0.0
    assert (tmp_path / "detector" / "realTraffic" / "detector_speed_t4013.csv").exists()


def test_dev_and_holdout_halves_split_every_file_once():
    """The split is fixed by the file names: both halves non-empty, disjoint, covering NAB, stable."""
    import json

    import nab

    names = sorted(json.loads((nab.DATA / "labels" / "combined_windows.json").read_text()))
    dev = [r for r in names if nab.split_of(r) == "dev"]
    holdout = [r for r in names if nab.split_of(r) == "holdout"]
    assert len(dev) == 32 and len(holdout) == 26 and not set(dev) & set(holdout)
    assert nab.split_of("realTweets/Twitter_volume_IBM.csv") == "dev"
    assert nab.split_of("realKnownCause/nyc_taxi.csv") == "holdout"


def test_fast_design_harness_gives_the_records_of_the_replay_path(tmp_path):
    """benchmarks/nab_dev.py (the detector stepped without events) emits exactly replay's records."""
    import nab
    import nab_dev

    from detector.config import load_pipeline

    rels = ["realKnownCause/ec2_request_latency_system_failure.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
    series = {}
    for rel in rels:
        ts, values = nab.read_series(nab.DATA / "data" / rel)
        series[rel] = (nab.to_seconds(ns.parse_times(ts)), values)
    pipeline = load_pipeline()
    fast = nab_dev.records(rels, series, pipeline.metrics)
    for rel in rels:
        decision, _score, _starts = nab.run_detector(rel, *series[rel], pipeline, tmp_path)
        assert decision.sum() >= 1
        np.testing.assert_array_equal(fast[rel], decision)
