"""The streaming metric detector (detector/anomaly): calibration, robustness, seasonality, state, wiring."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest

from detector.anomaly.detector import MetricDetector
from detector.config import ConfigError, Metrics, load_pipeline, parse_pipeline
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.replay import run_replay

IDX = np.zeros(1, dtype=np.int64)


def run(values, times, settings: Metrics | None = None, detector: MetricDetector | None = None):
    d = detector or MetricDetector(settings or Metrics())
    out = [d.step(IDX, np.array([t]), np.array([v])) for t, v in zip(times, values)]
    return d, out


def test_scores_of_normal_noise_are_calibrated():
    """On i.i.d. noise a score >= s occurs in about 10^-s of the windows (checked at s = 2)."""
    rng = np.random.default_rng(1)
    _, out = run(rng.normal(100, 5, 20_000), np.arange(20_000) * 60.0)
    scores = np.array([r.score[0] for r in out])[500:]
    assert 0.004 < np.mean(scores >= 2.0) < 0.025
    assert np.mean(scores >= 4.0) < 0.001


def test_heavy_tailed_noise_learns_its_own_tail():
    """Student-t(3) noise alarms far less often than a normal tail would make it (POT calibration)."""
    rng = np.random.default_rng(2)
    _, out = run(100 + 5 * rng.standard_t(3, 20_000), np.arange(20_000) * 60.0)
    scores = np.array([r.score[0] for r in out])[3000:]
    assert np.mean(scores >= 4.0) < 0.002


def test_a_spike_opens_one_episode_and_does_not_drag_the_baseline():
    rng = np.random.default_rng(3)
    values = rng.normal(50, 2, 600)
    values[400] = 500.0
    _, out = run(values, np.arange(600) * 300.0)
    onsets = [i for i, r in enumerate(out) if r.onset[0]]
    assert onsets == [400]
    assert out[400].score[0] >= Metrics().score_threshold
    # bounded influence: the next expectation moved by well under one noise sd
    assert abs(out[401].expected[0] - out[399].expected[0]) < 2.0


def test_the_score_is_the_larger_of_its_point_and_sustained_parts():
    """A spike scores through the point test; a shift of 2.5 sd, small for any one value, through the sustained one."""
    rng = np.random.default_rng(5)
    values = rng.normal(50, 2, 900)
    values[400] = 80.0
    values[700:730] += 5.0
    _, out = run(values, np.arange(900) * 60.0)
    for r in out:
        assert r.score[0] == max(r.point[0], r.sustained[0])
    assert out[400].point[0] >= 4.0 > out[400].sustained[0]
    onsets = [i for i, r in enumerate(out) if r.onset[0]]
    assert onsets[0] == 400 and len(onsets) == 2 and 700 < onsets[1] < 730
    late = out[onsets[1]]
    assert late.sustained[0] >= 4.0 > late.point[0]


def test_a_persistent_level_shift_is_adopted():
    """One record at the shift, then the new level is normal: the episode ends, no further records."""
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(10, 1, 500), rng.normal(30, 1, 500)])
    _, out = run(values, np.arange(1000) * 60.0)
    onsets = [i for i, r in enumerate(out) if r.onset[0]]
    assert onsets == [500]
    assert any(r.shifted[0] for r in out[500:520])
    assert all(r.score[0] < 4.0 for r in out[600:])
    assert not out[-1].open[0]


def test_daily_seasonality_is_detected_and_used():
    """A daily cycle is adopted after two days; then a value normal for noon but not for midnight stands out."""
    rng = np.random.default_rng(5)
    t = np.arange(6 * 288) * 300.0
    values = 100 + 40 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 2, len(t))
    d, out = run(values, t)
    assert out[-1].seasonal[0] == 1
    flat_d, flat = run(rng.normal(100, 2, len(t)), t)
    assert flat[-1].seasonal[0] == 0
    # a value at the daily maximum, at the time of the minimum
    t_min = t[-1] + 300.0 - np.mod(t[-1] + 300.0, 86400) + 86400 * 0.75
    r = d.step(IDX, np.array([t_min]), np.array([140.0]))
    assert r.score[0] >= 4.0


@pytest.mark.parametrize("interval_s", [10.0, 3600.0])
def test_any_sample_interval_with_gaps(interval_s):
    rng = np.random.default_rng(6)
    t = np.arange(800) * interval_s
    t[300:] += 50 * interval_s  # a gap
    values = rng.normal(0, 1, 800)
    values[600] = 12.0
    _, out = run(values, t)
    scores = np.array([r.score[0] for r in out])
    assert np.all(np.isfinite(scores))
    assert [i for i, r in enumerate(out) if r.onset[0]] == [600]


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(7)
    values = rng.normal(5, 1, 900)
    t = np.arange(900) * 300.0
    a, _ = run(values[:600], t[:600])
    b = MetricDetector(Metrics())
    b.load_state(a.to_state(), "test")
    _, ra = run(values[600:], t[600:], detector=a)
    _, rb = run(values[600:], t[600:], detector=b)
    assert [r.score[0] for r in ra] == [r.score[0] for r in rb]


def test_damaged_state_is_refused_with_its_source():
    a, _ = run([1.0, 2.0], [0.0, 60.0])
    state = a.to_state()
    state["baseline"]["level"] = np.zeros(5)
    with pytest.raises(ValueError, match="test snapshot"):
        MetricDetector(Metrics()).load_state(state, "test snapshot")


def test_metrics_section_is_validated():
    assert load_pipeline().metrics == Metrics()
    with pytest.raises(ConfigError, match=r"metrics.score_threshold must be a score"):
        parse_pipeline("[metrics]\nscore_threshold = 0\n", "p.toml")
    with pytest.raises(ConfigError, match=r"metrics.seasonality must be auto or off \(got 'daily'\)"):
        parse_pipeline('[metrics]\nseasonality = "daily"\n', "p.toml")
    with pytest.raises(ConfigError, match=r"metrics.bogus must be no such key"):
        parse_pipeline("[metrics]\nbogus = 1\n", "p.toml")


def _metric_lines(n: int, spike_at: int) -> list[bytes]:
    rng = np.random.default_rng(8)
    lines = []
    for i in range(n):
        for name, base in (("queue_depth", 20.0), ("cpu", 0.5)):
            v = base + rng.normal(0, base / 20)
            if i == spike_at and name == "queue_depth":
                v = 400.0
            lines.append(orjson.dumps({"type": "metric", "ts": 1_700_000_000 + 60 * i, "service": "db",
                                       "name": name, "value": v}))
    return lines


def test_replay_writes_scores_and_records_carry_them(tmp_path):
    """--scores: one row per series-window; the record of the spike has its score and a stable id."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(_metric_lines(300, 250)) + b"\n")
    outs = []
    for k in range(2):
        out, scores = tmp_path / f"out{k}.jsonl", tmp_path / f"scores{k}.jsonl"
        run_replay([str(src)], str(out), load_pipeline(), quiet=True, scores=str(scores))
        outs.append(out.read_bytes())
    rows = [orjson.loads(x) for x in scores.read_bytes().splitlines()]
    assert len(rows) == 600
    assert {r["metric"] for r in rows} == {"queue_depth", "cpu"}
    records = [orjson.loads(x) for x in outs[0].splitlines()]
    spikes = [r for r in records if r["type"] == "anomaly" and r["detail"].get("metric") == "queue_depth"]
    assert len(spikes) == 1 and spikes[0]["window"]["start"] == 1_700_000_000 + 60 * 250
    row = next(r for r in rows if r["metric"] == "queue_depth" and r["window_start"] == spikes[0]["window"]["start"])
    assert spikes[0]["score"] == pytest.approx(row["score"], rel=1e-5) and row["anomaly"]
    assert outs[0] == outs[1]


def test_core_snapshot_carries_the_metric_detector():
    """A core restored mid-stream emits the same metric records as one that never stopped."""
    pipeline = load_pipeline()
    lines = _metric_lines(300, 250)
    from detector.ingest.interner import Interner

    def feed(core, chunk):
        return [r.id for r in core.process(decode_batch(chunk, core.interner, 1 << 20))]

    whole = Core(pipeline, interner=Interner())
    ids_whole = feed(whole, lines[:200]) + feed(whole, lines[200:]) + [r.id for r in whole.finish()]
    first = Core(pipeline, interner=Interner())
    ids = feed(first, lines[:200])
    restored = Core.restore(pipeline, first.snapshot())
    ids += feed(restored, lines[200:]) + [r.id for r in restored.finish()]
    assert ids == ids_whole and ids
    assert restored.metricwatch.detector.cols.n == 2


def test_disabled_metrics_emit_nothing():
    pipeline = dataclasses.replace(load_pipeline(), metrics=Metrics(enabled=False))
    core = Core(pipeline)
    recs = core.process(decode_batch(_metric_lines(300, 250), core.interner, 1 << 20)) + core.finish()
    assert not [r for r in recs if getattr(r, "signal", "") == "metric"]


def _request_lines(windows: int, bad_from: int, deploy_at: float | None = None) -> list[bytes]:
    rng = np.random.default_rng(9)
    lines, t0 = [], 1_700_000_000
    for k in range(windows):
        rate = 0.4 if k >= bad_from else 0.01
        for j in range(60):
            lines.append(orjson.dumps({"type": "request", "ts": t0 + 10 * k + j / 6, "service": "api",
                                       "endpoint": "GET /", "version": "v1",
                                       "status": 500 if rng.random() < rate else 200,
                                       "latency_ms": float(rng.lognormal(3, 0.2))}))
        if deploy_at is not None and k == bad_from - 1:
            lines.append(orjson.dumps({"type": "deploy", "ts": deploy_at, "service": "api", "deploy_id": "d-1",
                                       "version": "v2"}))
    return lines


def _service_records(lines):
    core = Core(load_pipeline())
    recs = core.process(decode_batch(lines, core.interner, 1 << 20)) + core.finish()
    return [r for r in recs if getattr(r, "signal", "") in ("error_rate", "latency") and "series" in r.detail]


def test_service_error_rate_departs_outside_a_deploy():
    """A service's error rate jumping with no deploy in sight is one error_rate anomaly, deploy_id null."""
    recs = _service_records(_request_lines(200, 150))
    assert [(r.signal, r.window_start, r.deploy_id) for r in recs] == [("error_rate", 1_700_000_000 + 1500, None)]
    assert recs[0].score >= 4.0


def test_service_series_are_left_to_the_judge_during_a_verification():
    recs = _service_records(_request_lines(200, 150, deploy_at=1_700_000_000 + 1495))
    assert recs == []


def test_service_series_survive_a_core_snapshot():
    """Restored mid-stream, the service detectors and their keys continue: the same records come out."""
    lines = _request_lines(200, 150)
    pipeline = load_pipeline()
    whole = Core(pipeline)
    expected = [r.id for r in whole.process(decode_batch(lines, whole.interner, 1 << 20)) + whole.finish()]
    first = Core(pipeline)
    ids = [r.id for r in first.process(decode_batch(lines[:6000], first.interner, 1 << 20))]
    restored = Core.restore(pipeline, first.snapshot())
    assert restored.metricwatch.service_keys == first.metricwatch.service_keys == ["api\x1ferror_rate",
                                                                                  "api\x1flatency"]
    ids += [r.id for r in restored.process(decode_batch(lines[6000:], restored.interner, 1 << 20))]
    ids += [r.id for r in restored.finish()]
    assert ids == expected


def test_a_series_that_never_exceeds_keeps_a_finite_tail():
    """Exceedances stop decaying at a floor: p_U of a constant series never reaches 0 (score stays finite)."""
    from detector.anomaly.calibration import MIN_EXCEED, TailCalibration

    cal = TailCalibration()
    cal.cols.ensure(1)
    for _ in range(30_000):
        cal.learn(IDX, np.zeros(1), np.ones(1))
    assert cal.cols["n_exceed"][0] >= MIN_EXCEED * (1 - cal.eta)
    lp = cal.log10_p(IDX, np.array([0.5, 3.0]))
    assert np.all(np.isfinite(lp))
    assert -lp[0] < 2.0  # half a sigma stays far below any sensible threshold
    assert -lp[1] > 4.0  # three sigma, never seen in 30,000 values, is rare


def test_warm_start_file_carries_the_metric_detector(tmp_path):
    """--save-baselines then [baselines] warm_start: metric series are judged from their first window,
    with exactly the scores of a detector that never stopped; a cold one is still warming up."""
    lines = _metric_lines(300, 250)
    history, future = tmp_path / "history.jsonl", tmp_path / "future.jsonl"
    history.write_bytes(b"\n".join(lines[:400]) + b"\n")
    future.write_bytes(b"\n".join(lines[400:]) + b"\n")
    (tmp_path / "all.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    pipeline = load_pipeline()
    bank = tmp_path / "baselines.npz"
    run_replay([str(history)], str(tmp_path / "h.jsonl"), pipeline, quiet=True, save_baselines=str(bank))

    def scores(src, p):
        out = tmp_path / "s.jsonl"
        run_replay([str(src)], str(tmp_path / "o.jsonl"), p, quiet=True, scores=str(out))
        return [orjson.loads(x) for x in out.read_bytes().splitlines()]

    whole = [r for r in scores(tmp_path / "all.jsonl", pipeline) if r["window_start"] >= 1_700_000_000 + 60 * 200]
    warm_pipeline = dataclasses.replace(pipeline, baselines=dataclasses.replace(pipeline.baselines,
                                                                                warm_start=str(bank)))
    warm = scores(future, warm_pipeline)
    cold = scores(future, pipeline)
    assert len(warm) == len(whole) == 200
    assert warm == whole
    assert all(r["ready"] for r in warm)
    assert not any(r["ready"] for r in cold[:20])
    assert any(r["anomaly"] for r in warm if r["metric"] == "queue_depth")


def test_damaged_metric_state_in_a_warm_start_file_is_refused(tmp_path):
    from detector.baselines import BaselineBank, BaselineFormatError

    lines = _metric_lines(100, 99)
    src, bank_path = tmp_path / "in.jsonl", tmp_path / "b.npz"
    src.write_bytes(b"\n".join(lines) + b"\n")
    run_replay([str(src)], str(tmp_path / "o.jsonl"), load_pipeline(), quiet=True, save_baselines=str(bank_path))
    bank = BaselineBank.load(bank_path)
    header, arrays = bank.attachments["metric_detector"]
    assert header["metrics"] == ["db\x1fqueue_depth\x1f", "db\x1fcpu\x1f"]
    del arrays["metrics/baseline/level"]
    bank.save(bank_path)
    p = load_pipeline()
    p = dataclasses.replace(p, baselines=dataclasses.replace(p.baselines, warm_start=str(bank_path)))
    with pytest.raises(BaselineFormatError, match=r"b\.npz: metric detector array baseline/level is missing"):
        Core(p)


def test_a_warm_start_file_without_the_newer_columns_still_loads(tmp_path):
    """A file written before the recurring-excursion and regime columns existed warms its series the same
    (those columns start empty, as in a detector that has not seen either yet); other arrays stay required."""
    from detector.anomaly.detector import ADDED_COLUMNS
    from detector.baselines import BaselineBank

    lines = _metric_lines(300, 250)
    history, future = tmp_path / "history.jsonl", tmp_path / "future.jsonl"
    history.write_bytes(b"\n".join(lines[:400]) + b"\n")
    future.write_bytes(b"\n".join(lines[400:]) + b"\n")
    full, old = tmp_path / "full.npz", tmp_path / "old.npz"
    run_replay([str(history)], str(tmp_path / "h.jsonl"), load_pipeline(), quiet=True, save_baselines=str(full))
    bank = BaselineBank.load(full)
    _, arrays = bank.attachments["metric_detector"]
    for key in ADDED_COLUMNS:
        del arrays[f"metrics/{key}"]
    bank.save(old)

    def scores(bank_path):
        p = load_pipeline()
        p = dataclasses.replace(p, baselines=dataclasses.replace(p.baselines, warm_start=str(bank_path)))
        out = tmp_path / "s.jsonl"
        run_replay([str(future)], str(tmp_path / "o.jsonl"), p, quiet=True, scores=str(out))
        return [orjson.loads(x) for x in out.read_bytes().splitlines()]

    warm_old, warm_full = scores(old), scores(full)
    assert len(warm_old) == 200 and all(r["ready"] for r in warm_old)
    assert warm_old == warm_full
