"""Deviation measures: calibration under the null, power, exactness against scipy, edge cases.

The null simulations run as arrays (one trial per element) with fixed seeds. A
test at level 1e-3 must not flag more than 3e-3 of null trials; the discrete
tests are conservative, so most configurations sit well below 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps

from detector.aggregate import sketch as sk
from detector import stats as ds
from detector.stats.tails import _betabinom_log_sf

LEVEL = 1e-3
MAX_FPR = 3e-3


def _fpr(dev: ds.DeviationArray) -> float:
    return float(np.mean(dev.p_value <= LEVEL))


# --------------------------------------------------------------------------- calibration under the null


@pytest.mark.parametrize("rate", [0.0, 1e-3, 0.01, 0.2])
@pytest.mark.parametrize("requests, baseline", [(1, 0), (1, 2000), (5, 200), (50, 20_000), (2000, 20_000)])
def test_error_rate_vs_expected_false_positive_rate(rate, requests, baseline):
    """When errors come at the rate the baseline was measured at, the test flags at most ~1e-3 of windows."""
    rng = np.random.default_rng(11)
    trials = 200_000
    base_errors = rng.binomial(baseline, rate, trials)
    expected = base_errors / baseline if baseline else np.zeros(trials)
    dev = ds.error_rate_vs_expected_array(rng.binomial(requests, rate, trials), requests, expected, baseline)
    assert _fpr(dev) <= MAX_FPR


@pytest.mark.parametrize("rate", [1e-3, 0.02, 0.3])
@pytest.mark.parametrize("n_new, n_ref", [(1, 1), (1, 1000), (8, 8), (100, 3000), (2000, 2000)])
def test_two_sample_false_positive_rate(rate, n_new, n_ref):
    """With equal error rates on both sides, Fisher's test flags at most ~1e-3 of windows, even at one request."""
    rng = np.random.default_rng(12)
    trials = 200_000
    dev = ds.error_rate_two_sample_array(
        rng.binomial(n_new, rate, trials), n_new, rng.binomial(n_ref, rate, trials), n_ref
    )
    assert _fpr(dev) <= MAX_FPR


@pytest.mark.parametrize("mu, var", [(0.2, 0.2), (1.0, 1.0), (4.0, 30.0), (60.0, 60.0), (800.0, 4000.0)])
@pytest.mark.parametrize("direction", ds.DIRECTIONS)
def test_count_false_positive_rate(mu, var, direction):
    """Counts drawn from the baseline's own distribution are flagged at most ~1e-3 of the time, in every direction."""
    rng = np.random.default_rng(13)
    trials = 200_000
    if var > mu:
        r = mu**2 / (var - mu)
        x = rng.negative_binomial(r, r / (r + mu), trials)
    else:
        x = rng.poisson(mu, trials)
    assert _fpr(ds.count_deviation_array(x, mu, var, direction=direction)) <= MAX_FPR


@pytest.mark.parametrize("n_baseline", [2, 3, 5, 10, 60])
@pytest.mark.parametrize("direction", ds.METRIC_DIRECTIONS)
def test_robust_z_false_positive_rate(n_baseline, direction):
    """A new sample from the baseline's normal distribution is flagged at most ~1e-3 of the time, from 2 samples up."""
    rng = np.random.default_rng(14)
    trials = 100_000
    base = rng.normal(50.0, 4.0, (trials, n_baseline))
    med = np.median(base, axis=1)
    mad = np.median(np.abs(base - med[:, None]), axis=1)
    # No relative floor here: it would only make the test more conservative.
    dev = ds.robust_z_array(rng.normal(50.0, 4.0, trials), med, mad, n_baseline, direction=direction,
                            mad_floor_rel=0.0)
    assert _fpr(dev) <= MAX_FPR


@pytest.mark.parametrize("n_new, n_ref, trials", [(1, 1, 100_000), (2, 5, 100_000), (12, 12, 50_000),
                                                  (60, 200, 10_000)])
def test_latency_false_positive_rate(n_new, n_ref, trials):
    """Equal latency distributions trip neither the rank test nor any quantile test more than ~1e-3 of the time."""
    rng = np.random.default_rng(15)
    new = sk.group_values(np.repeat(np.arange(trials), n_new), rng.lognormal(3, 1, trials * n_new), trials)
    ref = sk.group_values(np.repeat(np.arange(trials), n_ref), rng.lognormal(3, 1, trials * n_ref), trials)
    shift = ds.latency_shift_grouped(new, ref)
    assert _fpr(shift.rank) <= MAX_FPR
    for dev in shift.by_quantile:
        assert _fpr(dev) <= MAX_FPR


# --------------------------------------------------------------------------- power


def test_clear_error_regression_is_detected():
    """0.5 % -> 5 % errors over 2,000 requests is found at p < 1e-6 by both error-rate tests in every trial."""
    rng = np.random.default_rng(21)
    trials = 2000
    k_new = rng.binomial(2000, 0.05, trials)
    k_ref = rng.binomial(2000, 0.005, trials)
    vs_expected = ds.error_rate_vs_expected_array(k_new, 2000, k_ref / 2000, 2000)
    two_sample = ds.error_rate_two_sample_array(k_new, 2000, k_ref, 2000)
    assert np.all(vs_expected.p_value < 1e-6)
    assert np.all(two_sample.p_value < 1e-6)
    assert np.all(two_sample.effect > 2.0) and np.all(two_sample.enough_data)


def test_latency_regression_is_detected():
    """A 1.5x slowdown over 3,000 requests is found by the rank test and the p50/p95 tests, with ratios near 1.5."""
    rng = np.random.default_rng(22)
    ref = sk.from_values(rng.lognormal(3, 0.8, 3000))
    new = sk.from_values(rng.lognormal(3, 0.8, 3000) * 1.5)
    shift = ds.latency_shift(new, ref)
    assert shift.rank.p_value < 1e-10 and shift.rank.effect > 0.1
    for q, dev in zip(shift.quantiles, shift.by_quantile):
        assert dev.effect == pytest.approx(1.5, rel=0.15)
        if q <= 0.95:
            assert dev.p_value < 1e-6
    assert not ds.latency_shift(ref, new).rank.p_value < 0.5  # faster is not "worse"


def test_volume_drop_is_detected_and_surge_is_not_a_drop():
    """A drop to a third of the expected volume scores high as a drop and zero as a surge."""
    drop = ds.count_deviation(330, 1000.0, 2000.0, direction="drop")
    surge = ds.count_deviation(330, 1000.0, 2000.0, direction="surge")
    assert drop.p_value < 1e-6 and drop.effect == pytest.approx(-0.67)
    assert surge.score == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- zero baselines and floors


@pytest.mark.parametrize("baseline", [10, 1000, 100_000])
def test_single_error_on_zero_error_baseline_is_finite(baseline):
    """One error in one request against a zero-error baseline of m requests has p = 0.5 / (m + 1), not 0."""
    dev = ds.error_rate_vs_expected(1, 1, 0.0, baseline)
    assert dev.p_value == pytest.approx(0.5 / (baseline + 1), rel=1e-9)
    assert dev.score == pytest.approx(math.log10(2 * (baseline + 1)), rel=1e-9)
    assert dev.effect == pytest.approx(100.0) and not dev.enough_data


def test_no_errors_and_no_requests_are_not_anomalous():
    """Zero errors, or zero requests, give p = 1 and score 0."""
    for dev in (ds.error_rate_vs_expected(0, 500, 0.01, 1000), ds.error_rate_vs_expected(0, 0, 0.0, 1000),
                ds.error_rate_two_sample(0, 0, 3, 10)):
        assert dev.p_value == 1.0 and dev.score == 0.0


def test_count_with_zero_expectation_uses_floor():
    """A series expected to be silent is tested against the floor mean: a few events are not infinitely surprising."""
    dev = ds.count_deviation(3, 0.0, 0.0, direction="surge", expected_floor=0.5)
    assert dev.p_value == pytest.approx(sps.poisson.sf(2, 0.5), rel=1e-9)
    assert not dev.enough_data


def test_count_drop_to_zero_score_stays_exact_when_p_underflows():
    """Zero events against 1,000 expected scores mu / ln 10 even though p underflows to 0."""
    dev = ds.count_deviation(0, 1000.0, 1000.0, direction="drop")
    assert dev.score == pytest.approx(1000.0 / math.log(10), rel=1e-9)


def test_robust_z_floors_flat_baselines():
    """A flat baseline (MAD 0) uses the relative floor, so z stays finite and proportional to the change."""
    dev = ds.robust_z(110.0, np.full(20, 100.0), mad_floor_rel=0.01)
    assert dev.effect == pytest.approx(10.0 / (1.4826 * 1.0))
    assert ds.robust_z(90.0, np.full(20, 100.0), direction="up").p_value > 0.5


def test_robust_z_without_baseline_is_not_anomalous():
    """With fewer than two baseline samples there is no scale: p = 1 and not enough data."""
    for base in (np.array([]), np.array([3.0])):
        dev = ds.robust_z(1e6, base)
        assert dev.p_value == 1.0 and not dev.enough_data


# --------------------------------------------------------------------------- exactness


def test_beta_binomial_tail_matches_scipy_and_brute_force():
    """The beta-binomial tail equals scipy where scipy is precise, and a brute-force log sum in the far tail."""
    rng = np.random.default_rng(31)
    n = rng.integers(0, 3000, 3000)
    k = np.minimum(rng.binomial(n, 0.01) + rng.integers(0, 30, n.size), n)
    a = rng.uniform(0.5, 60, n.size)
    b = rng.uniform(1, 8000, n.size)
    mine = _betabinom_log_sf(k, n, a, b)
    # scipy sums the pmf up to k and subtracts from 1: about 1e-11 absolute error.
    ref = sps.betabinom.sf(k - 1, n, a, b)
    moderate = ref > 1e-2
    np.testing.assert_allclose(np.exp(mine[moderate]), ref[moderate], rtol=1e-8)
    for i in np.flatnonzero(~moderate)[:60]:
        brute = np.logaddexp.reduce(sps.betabinom.logpmf(np.arange(k[i], n[i] + 1), n[i], a[i], b[i]))
        assert mine[i] == pytest.approx(brute, rel=1e-9)


def test_two_sample_matches_scipy_fisher_exact():
    """The one-sided p-value equals scipy.stats.fisher_exact(alternative='greater') table by table."""
    rng = np.random.default_rng(32)
    n1 = rng.integers(0, 400, 300)
    n2 = rng.integers(0, 400, 300)
    k1 = rng.binomial(n1, 0.08)
    k2 = rng.binomial(n2, 0.03)
    got = ds.error_rate_two_sample_array(k1, n1, k2, n2).p_value
    want = [sps.fisher_exact([[a, n - a], [b, m - b]], alternative="greater").pvalue
            for a, n, b, m in zip(k1, n1, k2, n2)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_rank_test_matches_scipy_mannwhitneyu_on_bucket_values():
    """The histogram Mann-Whitney test equals scipy's tie-corrected asymptotic test on the bucket representatives."""
    rng = np.random.default_rng(33)
    for n_new, n_ref, shift in [(5, 7, 1.0), (200, 300, 1.1), (2000, 40, 0.9)]:
        x = rng.lognormal(2, 1, n_new) * shift
        y = rng.lognormal(2, 1, n_ref)
        got = ds.latency_shift(sk.from_values(x), sk.from_values(y)).rank
        xs = sk.bucket_value(sk.bucket_index(x))
        ys = sk.bucket_value(sk.bucket_index(y))
        want = sps.mannwhitneyu(xs, ys, alternative="greater", method="asymptotic", use_continuity=True)
        assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)
        assert got.observed == pytest.approx(want.statistic / (n_new * n_ref))


def test_latency_quantile_fields_come_from_the_sketches():
    """Per-quantile observed/expected are the sketches' quantiles and effect is their ratio."""
    rng = np.random.default_rng(34)
    new = sk.from_values(rng.lognormal(3, 1, 800))
    ref = sk.from_values(rng.lognormal(3, 1, 900))
    shift = ds.latency_shift(new, ref, quantiles=(0.5, 0.99))
    for q, dev in zip(shift.quantiles, shift.by_quantile):
        assert dev.observed == sk.quantile(new, q) and dev.expected == sk.quantile(ref, q)
        assert dev.effect == pytest.approx(dev.observed / dev.expected)
    assert shift.by_quantile[0].enough_data and shift.by_quantile[1].enough_data  # 800 * 0.01 >= 5


def test_count_uses_negative_binomial_or_poisson():
    """Overdispersed baselines use NB(r = mu^2 / (var - mu)); others use Poisson."""
    nb = ds.count_deviation(150, 100.0, 400.0, direction="surge")
    r = 100.0**2 / 300.0
    assert nb.p_value == pytest.approx(sps.nbinom.sf(149, r, r / (r + 100.0)), rel=1e-9)
    po = ds.count_deviation(150, 100.0, 80.0, direction="surge")
    assert po.p_value == pytest.approx(sps.poisson.sf(149, 100.0), rel=1e-9)
    both = ds.count_deviation(60, 100.0, 80.0, direction="both")
    assert both.p_value == pytest.approx(2 * sps.poisson.cdf(60, 100.0), rel=1e-9)


def test_concentration_from_variance_inverts_beta_variance():
    """A Beta(p m, (1 - p) m) rate's variance maps back to m."""
    p, m = 0.02, 5000.0
    var = sps.beta(p * m, (1 - p) * m).var()
    assert ds.concentration_from_variance(p, var) == pytest.approx(m, rel=1e-9)


# --------------------------------------------------------------------------- vectorised == scalar


def _assert_dev_equal(a: ds.Deviation, b: ds.Deviation) -> None:
    for field in ("observed", "expected", "effect", "score", "p_value", "n"):
        x, y = getattr(a, field), getattr(b, field)
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12, abs=1e-300), field
    assert a.enough_data == b.enough_data


def _assert_same(arr: ds.DeviationArray, scalars: list[ds.Deviation]) -> None:
    assert len(arr) == len(scalars)
    for i, s in enumerate(scalars):
        _assert_dev_equal(arr[i], s)


def test_array_forms_equal_scalar_forms():
    """Every measure gives the same result for a series whether computed alone or among many."""
    rng = np.random.default_rng(41)
    n = rng.integers(0, 3000, 60)
    k = rng.binomial(n, 0.03)
    p0 = rng.uniform(0, 0.05, 60)
    m = rng.integers(0, 50_000, 60)
    _assert_same(ds.error_rate_vs_expected_array(k, n, p0, m),
                 [ds.error_rate_vs_expected(*args) for args in zip(k, n, p0, m)])
    n2 = rng.integers(0, 3000, 60)
    k2 = rng.binomial(n2, 0.02)
    _assert_same(ds.error_rate_two_sample_array(k, n, k2, n2),
                 [ds.error_rate_two_sample(*args) for args in zip(k, n, k2, n2)])
    mu = rng.uniform(0, 500, 60)
    var = mu * rng.uniform(0.5, 4, 60)
    x = rng.poisson(mu)
    _assert_same(ds.count_deviation_array(x, mu, var, direction="drop"),
                 [ds.count_deviation(*args, direction="drop") for args in zip(x, mu, var)])
    bases = [rng.normal(10, 2, size) for size in rng.integers(0, 40, 60)]
    vals = rng.normal(12, 3, 60)
    med = np.array([np.median(b) if b.size else np.nan for b in bases])
    mad = np.array([np.median(np.abs(b - np.median(b))) if b.size else np.nan for b in bases])
    sizes = np.array([b.size for b in bases])
    usable = sizes > 0
    _assert_same(ds.robust_z_array(vals[usable], med[usable], mad[usable], sizes[usable]),
                 [ds.robust_z(v, b) for v, b, u in zip(vals, bases, usable) if u])


def test_grouped_latency_equals_per_series_latency():
    """latency_shift_grouped gives each series what latency_shift gives it alone, empty series included."""
    rng = np.random.default_rng(42)
    n_series = 25
    sizes_new = rng.integers(0, 300, n_series)
    sizes_ref = rng.integers(0, 300, n_series)
    vals_new = [rng.lognormal(3, 1, s) * (1 + (i % 3) / 4) for i, s in enumerate(sizes_new)]
    vals_ref = [rng.lognormal(3, 1, s) for s in sizes_ref]
    grouped = ds.latency_shift_grouped(sk.stack([sk.from_values(v) for v in vals_new]),
                                       sk.stack([sk.from_values(v) for v in vals_ref]))
    for i in range(n_series):
        alone = ds.latency_shift(sk.from_values(vals_new[i]), sk.from_values(vals_ref[i]))
        _assert_dev_equal(grouped[i].rank, alone.rank)
        for dev_g, dev_a in zip(grouped[i].by_quantile, alone.by_quantile):
            _assert_dev_equal(dev_g, dev_a)


# --------------------------------------------------------------------------- low volume


def test_min_detectable_effect_has_the_stated_power():
    """At the minimum detectable effect the test fires with the requested power (0.8) in simulation."""
    rng = np.random.default_rng(51)
    p0, baseline, n = 0.005, 20_000, 2000
    mde = ds.min_detectable_effect(n, p0, baseline, alpha=LEVEL, power=0.8)
    trials = 20_000
    k = rng.binomial(n, p0 + mde / 100.0, trials)
    hit = ds.error_rate_vs_expected_array(k, n, p0, baseline).p_value <= LEVEL
    assert hit.mean() == pytest.approx(0.8, abs=0.02)
    # Just below the MDE the power is lower: the threshold is tight.
    k_less = rng.binomial(n, p0 + 0.8 * mde / 100.0, trials)
    assert (ds.error_rate_vs_expected_array(k_less, n, p0, baseline).p_value <= LEVEL).mean() < 0.75


def test_min_detectable_effect_shrinks_with_traffic_and_is_infinite_when_hopeless():
    """More requests detect smaller regressions; a handful of requests against a noisy baseline detect none."""
    mde = ds.min_detectable_effect(np.array([1, 30, 300, 3000, 30_000]), 0.01, 50_000)
    assert math.isinf(mde[0])
    assert np.all(np.diff(mde[1:]) < 0)
    # One error in one request is detectable against a large clean baseline.
    assert ds.min_detectable_effect(1, 0.0, 100_000) < 100.0


def test_min_detectable_drop_has_the_stated_power():
    """At the minimum detectable drop the Poisson drop test fires with power 0.8; tiny volumes give +inf."""
    rng = np.random.default_rng(52)
    mu = 200.0
    drop = ds.min_detectable_drop(mu, alpha=LEVEL, power=0.8)
    x = rng.poisson(mu * (1 - drop), 20_000)
    hit = ds.count_deviation_array(x, mu, mu, direction="drop").p_value <= LEVEL
    assert hit.mean() == pytest.approx(0.8, abs=0.02)
    assert math.isinf(ds.min_detectable_drop(3.0))


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ds.error_rate_vs_expected(5, 3, 0.01, 100), "errors must be integers in"),
        (lambda: ds.error_rate_vs_expected(1, 3, 1.5, 100), "expected_rate must be a fraction"),
        (lambda: ds.error_rate_vs_expected(1, 3, 0.01, math.inf), "baseline_requests must be finite"),
        (lambda: ds.error_rate_two_sample(1, 2.5, 0, 3), "requests_new must be integers"),
        (lambda: ds.count_deviation(3, 1.0, 1.0, direction="up"), "direction must be one of"),
        (lambda: ds.count_deviation(-1, 1.0, 1.0), "observed counts must be integers"),
        (lambda: ds.robust_z(1.0, np.ones(5), direction="surge"), "direction must be one of"),
        (lambda: ds.min_detectable_effect(10, 0.01, 100, power=1.0), "alpha and power"),
    ],
)
def test_bad_inputs_are_refused_with_the_offending_value(call, message):
    """Impossible inputs raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=message):
        call()


def test_latency_requires_matching_series():
    """Comparing grouped sketches with different series counts is refused."""
    with pytest.raises(ValueError, match="same series"):
        ds.latency_shift_grouped(sk.stack([sk.empty()]), sk.stack([sk.empty(), sk.empty()]))


@pytest.mark.parametrize("case", ["all_overdispersed", "none_overdispersed", "mixed"])
def test_count_deviation_calls_one_family_when_enough_and_answers_as_both(case):
    """Skipping the distribution family no row needs changes no bit of the result."""
    rng = np.random.default_rng(11)
    mu = rng.uniform(0.0, 400.0, 64)
    var = {"all_overdispersed": mu * 3 + 2, "none_overdispersed": mu * 0.5,
           "mixed": mu * rng.choice([0.5, 3.0], 64)}[case]
    x = rng.poisson(mu * rng.uniform(0.3, 2.0, 64)).astype(float)
    mu_eff = np.maximum(mu, 0.5)
    over = var > mu_eff
    assert (case == "mixed") == (0 < over.sum() < len(over))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(over, mu_eff**2 / (var - mu_eff), 1.0)
        p = np.where(over, mu_eff / var, 0.5)
    pmf = np.where(over, sps.nbinom.logpmf(x, r, p), sps.poisson.logpmf(x, mu_eff))
    ge = np.maximum(np.where(over, sps.nbinom.logsf(x - 1, r, p), sps.poisson.logsf(x - 1, mu_eff)), pmf)
    le = np.maximum(np.where(over, sps.nbinom.logcdf(x, r, p), sps.poisson.logcdf(x, mu_eff)), pmf)
    log_p = np.minimum(np.minimum(ge, le) + math.log(2.0), 0.0)
    got = ds.count_deviation_array(x, mu, var, direction="both")
    np.testing.assert_array_equal(got.score, -log_p / math.log(10) + 0.0)
    assert (got.score > 6).any() and (got.score < 1).any()  # both tails and the bulk are compared


def test_robust_z_each_is_robust_z_value_by_value():
    rng = np.random.default_rng(7)
    base = rng.lognormal(3.0, 0.4, 40)
    values = np.concatenate((rng.lognormal(3.0, 0.4, 30), [0.0, 1e6, base[0]]))
    for direction in ("up", "down", "both"):
        each = ds.robust_z_each(values, base, direction=direction)
        one = [ds.robust_z(float(v), base, direction=direction).effect for v in values]
        assert each.tolist() == one
    flat = np.full(12, 5.0)  # MAD 0: the floors decide the scale, as in robust_z
    assert ds.robust_z_each([5.0, 6.0], flat).tolist() == [ds.robust_z(v, flat).effect for v in (5.0, 6.0)]
    assert np.isnan(ds.robust_z_each([1.0], [])).all()
