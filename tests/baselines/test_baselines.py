"""Seasonal baselines: calibration on simulated diurnal traffic, adaptation, readiness, snapshots."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from river import stats as river_stats

from detector.baselines import DAY_S, BaselineBank, BaselineConfig, BaselineFormatError, SeasonalBaseline, latency_signal
from detector.baselines.recursions import _ew_welford

MIDNIGHT = 1_764_028_800.0  # a UTC midnight, so hour-of-day arithmetic below is exact
WINDOW_S = 10.0
WINDOWS_PER_DAY = int(DAY_S / WINDOW_S)
N_SERIES = 16
PHI = 0.05  # overdispersion of the NB series: variance = mean + PHI * mean^2


def diurnal_shape(ts):
    """Night trough, morning ramp around 07:30, afternoon bump, evening decline (peak ~1)."""
    h = np.mod(ts, DAY_S) / 3600.0
    ramp = 1 / (1 + np.exp(-(h - 7.5) * 2.0)) - 1 / (1 + np.exp(-(h - 21.0) * 1.5))
    return 0.15 + 0.85 * ramp * (1 + 0.2 * np.sin(2 * np.pi * (h - 10) / 24))


class Traffic:
    """Requests per window for N_SERIES series: half negative binomial (PHI), half Poisson."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.base = np.random.default_rng(1234).uniform(5, 200, N_SERIES)  # same services in every run
        self.phi = np.where(np.arange(N_SERIES) % 2 == 0, PHI, 0.0)

    def mean(self, ts: float, multiplier: float = 1.0) -> np.ndarray:
        return self.base * diurnal_shape(ts) * multiplier

    def sd(self, ts: float, multiplier: float = 1.0) -> np.ndarray:
        lam = self.mean(ts, multiplier)
        return np.sqrt(lam + self.phi * lam * lam)

    def counts(self, ts: float, multiplier: float = 1.0) -> np.ndarray:
        lam = self.mean(ts, multiplier)
        nb = self.phi > 0
        rate = lam.copy()
        rate[nb] = self.rng.gamma(1 / self.phi[nb], self.phi[nb] * lam[nb])
        return self.rng.poisson(rate).astype(np.float64)


SERIES = np.arange(N_SERIES)


@pytest.fixture(scope="module")
def trained() -> bytes:
    """Snapshot of a volume baseline after two simulated days of 10 s windows."""
    baseline = SeasonalBaseline(BaselineConfig(kind="count", window_s=WINDOW_S))
    traffic = Traffic(seed=1)
    for k in range(2 * WINDOWS_PER_DAY):
        end = MIDNIGHT + (k + 1) * WINDOW_S
        baseline.update(SERIES, end, traffic.counts(end - WINDOW_S / 2))
    return baseline.to_bytes()


@pytest.fixture(scope="module")
def day3(trained: bytes) -> dict[str, np.ndarray]:
    """The whole third day forecast from the two-day state (one vectorised call), with simulated truth."""
    baseline = SeasonalBaseline.from_bytes(trained)
    traffic = Traffic(seed=2)
    ends = MIDNIGHT + 2 * DAY_S + WINDOW_S * np.arange(1, WINDOWS_PER_DAY + 1)
    e = baseline.expect(np.tile(SERIES, WINDOWS_PER_DAY), np.repeat(ends, N_SERIES))
    shape = (WINDOWS_PER_DAY, N_SERIES)
    mids = ends - WINDOW_S / 2
    return {"y": np.stack([traffic.counts(t) for t in mids]), "true_sd": np.stack([traffic.sd(t) for t in mids]),
            "mean": e.mean.reshape(shape), "std": e.std.reshape(shape), "disp": e.dispersion.reshape(shape),
            "seasonal": e.seasonal.reshape(shape)}


def test_third_day_volume_falls_within_stated_uncertainty(day3):
    """Trained on two days, >= 90 % of third-day windows fall within mean +- 2 std, in every hour of the day."""
    assert day3["seasonal"].all()
    inside = np.abs(day3["y"] - day3["mean"]) <= 2 * day3["std"]
    assert inside.mean() >= 0.92
    per_hour = inside.reshape(24, -1).mean(axis=1)
    assert per_hour.min() >= 0.88, per_hour


def test_third_day_uncertainty_is_not_inflated(day3):
    """The stated std is close to the generator's true std, not a wide band that trivially covers."""
    ratio = day3["std"] / day3["true_sd"]
    assert 0.9 <= ratio.mean() <= 1.15
    assert np.quantile(ratio, 0.99) <= 1.3


def test_overdispersion_is_learnt_per_series(day3):
    """NB series report dispersion near the true 0.05; Poisson series report dispersion near 0."""
    disp = np.median(day3["disp"], axis=0)
    nb = np.arange(N_SERIES) % 2 == 0
    assert np.all((disp[nb] > 0.035) & (disp[nb] < 0.07)), disp[nb]
    assert np.all(disp[~nb] < 0.006), disp[~nb]


def test_profile_learns_time_of_day_shape(trained):
    """Expectations at 03:00 and 14:00 of the next day differ by the true diurnal ratio, not by recency."""
    baseline = SeasonalBaseline.from_bytes(trained)
    night, afternoon = MIDNIGHT + 2 * DAY_S + 3 * 3600, MIDNIGHT + 2 * DAY_S + 14 * 3600
    e_night, e_afternoon = baseline.expect(SERIES, night), baseline.expect(SERIES, afternoon)
    assert e_night.seasonal.all() and e_afternoon.seasonal.all()
    true_ratio = diurnal_shape(afternoon) / diurnal_shape(night)
    np.testing.assert_allclose(e_afternoon.mean / e_night.mean, true_ratio, rtol=0.1)


def test_level_shift_is_absorbed_within_two_hours(trained):
    """Traffic doubling for good is not absorbed by a few windows but is within 720 windows (2 h)."""
    baseline = SeasonalBaseline.from_bytes(trained)
    traffic = Traffic(seed=3)
    start = MIDNIGHT + 2 * DAY_S
    ratios = []
    for k in range(1080):
        end = start + (k + 1) * WINDOW_S
        mid = end - WINDOW_S / 2
        ratios.append(baseline.expect(SERIES, end).mean / traffic.mean(mid, 2.0))
        baseline.update(SERIES, end, traffic.counts(mid, 2.0))
    ratios = np.asarray(ratios)
    assert np.median(ratios[6]) < 0.6  # a few windows do not move the level much
    settled = ratios[720:]
    assert 0.9 <= np.median(settled) <= 1.1
    assert np.quantile(settled, 0.05) >= 0.8


def test_not_ready_until_enough_history_then_seasonal_after_a_day():
    """ready needs min_obs and min_history_s; seasonal also needs a day and coverage of this time of day."""
    config = BaselineConfig(kind="count", slot_s=21600.0, window_s=60.0, min_obs=30, min_history_s=1800.0,
                            min_slot_obs=20.0)
    baseline = SeasonalBaseline(config)
    rng = np.random.default_rng(4)
    one = np.array([0])
    for k in range(25):
        baseline.update(one, MIDNIGHT + (k + 1) * 60.0, rng.poisson(20, 1))
    e = baseline.expect(one, MIDNIGHT + 25 * 60.0)
    assert not e.ready[0] and not e.seasonal[0] and e.n_obs[0] == 25
    for k in range(25, 60):
        baseline.update(one, MIDNIGHT + (k + 1) * 60.0, rng.poisson(20, 1))
    e = baseline.expect(one, MIDNIGHT + 60 * 60.0)
    assert e.ready[0] and not e.seasonal[0]
    # Fallback: recent level with the uncertainty inflated by fallback_std_factor.
    assert abs(e.mean[0] - 20) < 3 and e.std[0] >= config.fallback_std_factor * np.sqrt(20) * 0.8
    for k in range(60, 1441):
        baseline.update(one, MIDNIGHT + (k + 1) * 60.0, rng.poisson(20, 1))
    e = baseline.expect(one, MIDNIGHT + 1442 * 60.0)
    assert e.ready[0] and e.seasonal[0]
    assert abs(e.mean[0] - 20) < 2 and 0.8 * np.sqrt(20) < e.std[0] < 1.25 * np.sqrt(20)
    unseen = baseline.expect(np.array([7]), MIDNIGHT + 1442 * 60.0)
    assert not unseen.ready[0] and np.isnan(unseen.mean[0]) and np.isinf(unseen.std[0]) and unseen.n_obs[0] == 0


def test_time_of_day_never_seen_is_not_seasonal():
    """A series only ever seen in the afternoon gets a seasonal expectation at 15:00 but not at 03:00."""
    config = BaselineConfig(kind="count", slot_s=10800.0, window_s=60.0, neighbour_weight=0.0)
    baseline = SeasonalBaseline(config)
    rng = np.random.default_rng(5)
    one = np.array([0])
    for day in range(2):
        for k in range(6 * 60):  # 12:00-18:00
            baseline.update(one, MIDNIGHT + day * DAY_S + 12 * 3600 + (k + 1) * 60.0, rng.poisson(50, 1))
    day3 = MIDNIGHT + 2 * DAY_S
    assert baseline.expect(one, day3 + 15 * 3600).seasonal[0]
    night = baseline.expect(one, day3 + 3 * 3600)
    assert night.ready[0] and not night.seasonal[0]


def test_error_rate_baseline_tracks_a_constant_rate():
    """An additive baseline weighted by requests learns a constant 1 % error rate with binomial-sized noise."""
    rate = 0.01
    config = BaselineConfig(kind="additive", window_s=60.0)
    baseline = SeasonalBaseline(config)
    rng = np.random.default_rng(6)
    series = np.arange(8)
    for k in range(2 * 1440):
        end = MIDNIGHT + (k + 1) * 60.0
        requests = rng.poisson(400 * diurnal_shape(end), len(series)) + 1
        baseline.update(series, end, rng.binomial(requests, rate) / requests, weights=requests)
    inside = []
    for k in range(240):
        end = MIDNIGHT + 2 * DAY_S + (k + 1) * 60.0
        requests = rng.poisson(400 * diurnal_shape(end), len(series)) + 1
        y = rng.binomial(requests, rate) / requests
        e = baseline.update(series, end, y, weights=requests)
        assert e.seasonal.all()
        # The recent level is an estimate: off by no more than its stated uncertainty says.
        assert np.all(np.abs(e.mean - rate) <= 4 * e.mean_std)
        assert np.all(e.mean_std < 0.25 * rate)
        np.testing.assert_allclose(e.std, np.sqrt(rate * (1 - rate) / requests), rtol=0.25)
        inside.append(np.abs(y - e.mean) <= 2 * e.std)
    assert np.mean(inside) >= 0.9
    small, large = baseline.expect(series[:1], end, weights=[50]), baseline.expect(series[:1], end, weights=[5000])
    assert small.std[0] > 5 * large.std[0]
    assert np.isnan(small.dispersion[0])


def test_snapshot_round_trip_gives_identical_expectations_and_continuation(trained, tmp_path):
    """Restoring a snapshot reproduces every expectation exactly, and both copies keep learning identically."""
    original = SeasonalBaseline.from_bytes(trained)
    path = tmp_path / "models" / "volume.npz"
    original.save(path)
    restored = SeasonalBaseline.load(path)
    times = MIDNIGHT + 2 * DAY_S + np.arange(0, DAY_S, 997.0)
    for ts in times:
        a, b = original.expect(SERIES, ts), restored.expect(SERIES, ts)
        for field in ("mean", "std", "mean_std", "dispersion", "n_obs", "ready", "seasonal"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    traffic = Traffic(seed=8)
    for k in range(50):
        end = MIDNIGHT + 2 * DAY_S + (k + 1) * WINDOW_S
        y = traffic.counts(end)
        original.update(SERIES, end, y)
        restored.update(SERIES, end, y)
    assert original.to_bytes() == restored.to_bytes()


def test_many_windows_per_series_in_one_call_equal_one_call_per_window():
    """Several windows per series in one shuffled call learn, and are judged, exactly as window-by-window calls."""
    rng = np.random.default_rng(9)
    config = BaselineConfig(kind="scale", window_s=WINDOW_S, min_history_s=0.0, min_obs=1)
    stepwise, batched = SeasonalBaseline(config), SeasonalBaseline(config)
    ends = MIDNIGHT + WINDOW_S * np.arange(1, 201)
    values = rng.lognormal(3.0, 0.3, (200, 5))
    stepwise_means = np.empty((200, 5))
    for k, end in enumerate(ends):
        before = stepwise.expect(np.arange(5), end)
        judged = stepwise.update(np.arange(5), end, values[k])
        np.testing.assert_array_equal(judged.std, before.std)
        stepwise_means[k] = judged.mean
    rows_idx = np.tile(np.arange(5), 200)
    rows_ts = np.repeat(ends, 5)
    perm = rng.permutation(len(rows_idx))
    judged = batched.update(rows_idx[perm], rows_ts[perm], values.reshape(-1)[perm])
    assert stepwise.to_bytes() == batched.to_bytes()
    np.testing.assert_array_equal(judged.mean, stepwise_means.reshape(-1)[perm])
    e = batched.expect(np.arange(5), ends[-1])
    np.testing.assert_allclose(e.mean, np.exp(3.0 + 0.3 ** 2 / 2), rtol=0.15)


def test_forgetting_matches_river_ewmean_and_ewvar():
    """The array form of exponential forgetting agrees with river's EWMean / EWVar on the same stream."""
    rng = np.random.default_rng(10)
    xs = rng.normal(50, 7, 400)
    alpha = 0.1
    mean_r, var_r = river_stats.EWMean(fading_factor=alpha), river_stats.EWVar(fading_factor=alpha)
    w_sum = w2 = m = m2 = np.zeros(1)
    for x in xs:
        mean_r.update(x)
        var_r.update(x)
        w_sum, w2, m, m2 = _ew_welford(w_sum, w2, m, m2, np.array([1 - alpha]), np.ones(1), np.array([x]))
    # The two differ only in how the first value is weighted, which fades as (1 - alpha)^n.
    assert m[0] == pytest.approx(mean_r.get(), rel=1e-9)
    assert (m2 / w_sum)[0] == pytest.approx(var_r.get(), rel=1e-6)


def test_weight_zero_rows_are_ignored_and_bad_values_rejected():
    """Weight-0 rows (e.g. an excluded incident window) change nothing; NaN or negative counts raise with the value."""
    baseline = SeasonalBaseline(BaselineConfig(kind="count"))
    baseline.update(np.array([0, 1]), MIDNIGHT, np.array([5.0, 6.0]))
    before = baseline.to_bytes()
    baseline.update(np.array([0, 1]), MIDNIGHT + 10, np.array([np.nan, 1e9]), weights=np.array([0.0, 0.0]))
    assert baseline.to_bytes() == before
    with pytest.raises(ValueError, match="finite.*nan"):
        baseline.update(np.array([0]), MIDNIGHT + 20, np.array([np.nan]))
    with pytest.raises(ValueError, match=r"values >= 0 \(got -1.0"):
        baseline.update(np.array([0]), MIDNIGHT + 20, np.array([-1.0]))
    with pytest.raises(ValueError, match="slot_s=700"):
        BaselineConfig(slot_s=700.0)


def test_corrupt_or_foreign_files_raise_errors_naming_the_file(tmp_path):
    """Garbage, a future format version and a bank read as a single baseline each fail with the path in the message."""
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(BaselineFormatError, match="garbage.npz"):
        SeasonalBaseline.load(garbage)

    baseline = SeasonalBaseline()
    baseline.update(np.array([0]), MIDNIGHT, np.array([3.0]))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(baseline.to_bytes()[:-40])
    with pytest.raises(BaselineFormatError, match="truncated.npz"):
        SeasonalBaseline.load(truncated)

    future = tmp_path / "future.npz"
    buf = io.BytesIO()
    header = {"format": "detector.baseline", "version": 99, "config": {}, "n_series": 0}
    np.savez(buf, __header__=np.frombuffer(orjson.dumps(header), dtype=np.uint8))
    future.write_bytes(buf.getvalue())
    with pytest.raises(BaselineFormatError, match=r"future.npz.*version 99"):
        SeasonalBaseline.load(future)

    bank_file = tmp_path / "bank.npz"
    BaselineBank.for_signals().save(bank_file)
    with pytest.raises(BaselineFormatError, match="bank.npz.*BaselineBank"):
        SeasonalBaseline.load(bank_file)
    with pytest.raises(BaselineFormatError, match="missing.npz"):
        BaselineBank.load(tmp_path / "missing.npz")


def test_bank_warm_start_keeps_series_keys_and_state(tmp_path):
    """A bank saved by one process and loaded by another maps the same keys to the same expectations."""
    bank = BaselineBank.for_signals(latency_quantiles=(0.5, 0.99), window_s=60.0, min_history_s=0.0, min_obs=2)
    assert set(bank.signals) >= {"volume", "error_rate", latency_signal(0.5), latency_signal(0.99)}
    keys = ["checkout", "checkout\x1fPOST /pay", "search"]
    idx = bank.series_index(keys)
    rng = np.random.default_rng(11)
    for k in range(30):
        end = MIDNIGHT + (k + 1) * 60.0
        bank["volume"].update(idx, end, rng.poisson(100, 3))
        bank[latency_signal(0.99)].update(idx, end, rng.lognormal(5, 0.2, 3))
    path = tmp_path / "baselines-p0.npz"
    bank.save(path)
    warm = BaselineBank.load(path)
    assert warm.series_keys == keys
    assert warm.lookup(["search", "unknown"]).tolist() == [2, -1]
    np.testing.assert_array_equal(warm.series_index(["search", "cart"]), [2, 3])
    for signal in ("volume", latency_signal(0.99)):
        a, b = bank[signal].expect(idx, MIDNIGHT + 1860.0), warm[signal].expect(idx, MIDNIGHT + 1860.0)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)
        assert a.ready.all()
    with pytest.raises(KeyError, match="no baseline for signal 'latency'"):
        warm["latency"]


def test_bank_warm_start_under_new_settings_keeps_state_and_refuses_incompatible_slots(tmp_path):
    """Loading with the current configs adopts tuned settings, adds new signals cold, and rejects a changed slot_s."""
    bank = BaselineBank({"volume": BaselineConfig(kind="count", min_obs=2, min_history_s=0.0)})
    idx = bank.series_index(["checkout"])
    for k in range(10):
        bank["volume"].update(idx, MIDNIGHT + 10.0 * (k + 1), np.array([40.0 + k]))
    path = tmp_path / "baselines.npz"
    bank.save(path)
    tuned = {"volume": BaselineConfig(kind="count", min_obs=2, min_history_s=0.0, level_half_life_s=600.0),
             "transactions": BaselineConfig(kind="count")}
    warm = BaselineBank.load(path, configs=tuned)
    assert warm.signals == ["volume", "transactions"]
    assert warm["volume"].config.level_half_life_s == 600.0
    assert warm["volume"].expect(idx, MIDNIGHT + 110.0).n_obs[0] == 10
    assert warm["transactions"].expect(idx, MIDNIGHT + 110.0).n_obs[0] == 0
    with pytest.raises(BaselineFormatError, match=r"baselines.npz.*'volume'.*slot_s.*\(1800.0 -> 900.0\)"):
        BaselineBank.load(path, configs={"volume": BaselineConfig(kind="count", slot_s=900.0)})
