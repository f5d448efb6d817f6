"""What a verdict could exclude for latency and completed transactions (`exclusion_signals`).

The figures are checked on constructed populations against a direct
computation from the raw latencies and completion rates: at the stated size
the new version's expected events reach the evidence bar, at 0.95 of it they
do not. Then on replayed scenarios: the verdict's reasons and
`detail.detectable` carry them, and quiet traffic says no latency regression
would have been seen at all.
"""

from __future__ import annotations

import math

import numpy as np

from detector.aggregate import sketch
from detector.config import Rule
from detector.judge import exclusion_signals as xs
from detector.judge.evidence import Population
from detector.simulate.scoring import replay_scenario
from detector.stats import sequential

ALPHA = 0.001 / 11
NAMES = {1: "GET /a", 2: "GET /b", 3: "POST /c"}


def _population(latencies: dict[int, np.ndarray], txn: dict[int, int] | None = None) -> Population:
    eps = np.array(sorted(latencies), np.int32)
    values = [np.asarray(latencies[int(e)], dtype=np.float64) for e in eps]
    n = np.array([len(v) for v in values], np.int64)
    rows = np.concatenate([np.full(len(v), i) for i, v in enumerate(values)])
    lat = sketch.group_values(rows, np.concatenate(values), len(eps))
    t = np.array([(txn or {}).get(int(e), 0) for e in eps], np.int64)
    return Population(eps, n, np.zeros(len(eps), np.int64), t, lat, sketch.from_values(np.concatenate(values)),
                      int(n.sum()), 0, int(t.sum()), 90, 900.0)


def _rules(signal: str, scope: str = "endpoint", min_effect: float = 1.0, **kw) -> list[Rule]:
    return [Rule(name=f"{signal}-{scope}", signal=signal, action="ticket", scope=scope, min_effect=min_effect, **kw)]


def _before(seed: int = 5) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {1: rng.lognormal(math.log(80), 0.5, 3000), 2: rng.lognormal(math.log(200), 0.7, 400),
            3: rng.lognormal(math.log(30), 0.3, 60)}


def _direct_latency(before: np.ndarray, n: float, x: float, q: float = 0.95) -> float:
    """log10 evidence of `n` requests that are the before requests `x` times slower (expected count of
    those above the judge's threshold: the bucket of the before sample's q-quantile), from raw values."""
    s = sketch.from_values(before)
    thr = int(sketch.quantile_buckets_grouped(sketch.stack([s]), q)[0, 0])
    upper = float(sketch.bucket_bounds(np.array([thr]))[1][0])
    r = float((before > upper).sum())
    k = n * float((before * x > upper).mean())
    return float(sequential.before_log10(k, n, r, len(before)))


def test_the_latency_figure_is_the_slowdown_whose_expected_slow_requests_reach_the_bar():
    before = _before()
    new = {1: 2500, 2: 300, 3: 40}
    ex = xs.latency(new, _population(before), ALPHA, _rules("latency"), NAMES.get)
    need = math.log10(3 / ALPHA)  # e-BH's worst case over the three endpoints
    figures = {e.endpoint: e for e in ex.endpoints}
    assert set(figures) == set(NAMES.values())
    for ep, n in new.items():
        x = figures[NAMES[ep]].value
        assert x is not None and x > 1.0
        # one bucket's width (2 %) covers the sketch's within-bucket reading
        assert _direct_latency(before[ep], n, x * 1.021) >= need > _direct_latency(before[ep], n, 0.95 * x)
    # the busiest endpoint sees the smallest slowdown; the least covered is listed first and named
    values = [e.value for e in ex.endpoints]
    assert values == sorted(values, reverse=True) and values[-1] == figures["GET /a"].value
    assert ex.named() == ex.endpoints[0]
    # Service-wide: the same slowdown on every endpoint, seen once e-BH over the endpoints rejects one.
    x = ex.value

    def rejects(factor: float) -> bool:
        e = np.array([_direct_latency(before[ep], n, factor) for ep, n in new.items()])
        return bool(sequential.e_bh(e, ALPHA).any())

    assert rejects(x * 1.021) and not rejects(0.95 * x)
    assert x <= figures["GET /a"].value + 1e-9
    # a rule acting on any slowdown (min_effect 0) changes nothing: a ratio is at least 1
    assert xs.latency(new, _population(before), ALPHA, _rules("latency", min_effect=0.0), NAMES.get).value == x


def test_latency_figures_never_go_below_the_rules_effects():
    """A slowdown no rule acts on is not claimed: 1.25x on an endpoint with 5 % of the traffic or
    more, 2x on a rarer one (the shipped latency rules' effects), however many requests."""
    before = _before()
    rules = [Rule(name="mild", signal="latency", action="ticket", scope="endpoint", min_effect=1.25,
                  min_traffic_share=0.05, duration_s=300),
             Rule(name="rare", signal="latency", action="ticket", scope="endpoint", min_effect=2.0,
                  max_traffic_share=0.05, duration_s=300)]
    ex = xs.latency({1: 20000, 2: 3000, 3: 400}, _population(before), ALPHA, rules, NAMES.get)
    figures = {e.endpoint: e.value for e in ex.endpoints}
    assert figures["GET /a"] == 1.25 and figures["POST /c"] >= 2.0  # POST /c: 60 of 3460 before
    assert ex.value == 1.25
    assert "a p95 latency rise of 1.25x or more on every endpoint would have been seen" in ex.reason()
    assert "on endpoint POST /c (" in ex.reason()


def test_quiet_traffic_would_have_shown_no_latency_regression_at_all():
    """Two requests of the new version against a handful before: no slowdown however large reaches
    the bar, and the statement says so (an endpoint the service never served before says nothing)."""
    before = {1: np.array([40.0, 50, 60, 70, 80, 90]), 2: np.array([100.0, 120, 130])}
    ex = xs.latency({1: 2, 2: 1, 9: 5}, _population(before), ALPHA, _rules("latency"), {**NAMES, 9: "GET /new"}.get)
    assert ex.value is None and all(e.value is None for e in ex.endpoints)
    assert ex.reason() == "no latency regression would have been seen at all"
    assert xs.latency({}, _population(before), ALPHA, _rules("latency"), NAMES.get).value is None
    assert xs.latency({1: 5}, _population(before), ALPHA, _rules("error_rate"), NAMES.get) is None


def test_the_transactions_figure_is_the_drop_whose_expected_non_completions_reach_the_bar():
    """Non-completion rises from 1-c to 1-c(1-d); only endpoints that completed transactions count."""
    rng = np.random.default_rng(3)
    before = {1: rng.lognormal(4, 0.5, 2000), 2: rng.lognormal(4, 0.5, 500), 3: rng.lognormal(4, 0.5, 800)}
    done = {1: 1200, 2: 150}  # POST /c completes none
    pre = _population(before, done)
    new = {1: 1500, 2: 200, 3: 900}
    rules = _rules("transactions", min_effect=0.01) + _rules("transactions", "service", min_effect=0.01)
    ex = xs.transactions(new, pre, ALPHA, rules, NAMES.get)
    need = math.log10(3 / ALPHA)

    def evidence(ep: int, d: float) -> float:
        m, c = len(before[ep]), done[ep] / len(before[ep])
        return float(sequential.before_log10(new[ep] * (1 - c * (1 - d)), new[ep], m - done[ep], m))

    figures = {e.endpoint: e.value for e in ex.endpoints}
    assert set(figures) == {"GET /a", "GET /b"}
    for ep in (1, 2):
        d = figures[NAMES[ep]]
        assert evidence(ep, d + 1e-6) >= need > evidence(ep, 0.95 * d)
    # Service-wide, the same drop everywhere: the service rule on the summed counts (or e-BH) sees it.
    d = ex.value
    m = sum(len(before[e]) for e in (1, 2))
    r = m - sum(done.values())

    def service(dd: float) -> float:
        k = sum(new[e] * (1 - done[e] / len(before[e]) * (1 - dd)) for e in (1, 2))
        return float(sequential.before_log10(k, new[1] + new[2], r, m))

    def seen(dd: float) -> bool:
        per = np.array([evidence(1, dd), evidence(2, dd), 0.0])  # POST /c: no transactions, no evidence
        return service(dd) >= math.log10(1 / ALPHA) or bool(sequential.e_bh(per, ALPHA).any())

    assert seen(d + 1e-6) and not seen(0.95 * d)
    assert ex.reason().startswith(f"a drop of {math.ceil(100 * d - 1e-6):.0f}% or more in completed transactions")
    assert "(on the endpoints completing them, 65% of the new version's requests)" in ex.reason()  # 1700 of 2600
    assert ex.of("POST /c") == (False, None)
    # a drop seen only when no transaction completes at all is said so, not as "100% or more"
    assert xs.SignalExclusion("transactions", 0.998, ()).reason() == \
        "only the loss of every completed transaction would have been seen"
    # a service that completed no transactions gets no statement
    assert xs.transactions(new, _population(before), ALPHA, rules, NAMES.get) is None


def test_transactions_on_an_endpoint_no_rule_watches_would_have_shown_nothing():
    rng = np.random.default_rng(4)
    before = {1: rng.lognormal(4, 0.5, 3000), 2: rng.lognormal(4, 0.5, 60)}
    pre = _population(before, {1: 2000, 2: 40})
    rules = _rules("transactions", min_effect=0.15, min_traffic_share=0.05)
    ex = xs.transactions({1: 3000, 2: 50}, pre, ALPHA, rules, NAMES.get)
    figures = {e.endpoint: e.value for e in ex.endpoints}
    assert figures["GET /b"] is None and figures["GET /a"] >= 0.15
    assert ex.endpoints[0].endpoint == "GET /b"
    assert ex.reason().endswith("; on endpoint GET /b (2% of the new version's requests) none at all")


WEAK = """
name = "{name}"
seed = 1209
start = 2026-11-27T12:00:00Z
duration_s = 1800
verification_s = 900

[[services]]
name = "search"
version = "v1.0.0"
instances = 2

  [[services.endpoints]]
  name = "GET /search"
  rps = {rps}
  error_rate = 0.002
  latency_median_ms = 40
  latency_p99_ms = 300

  [[services.endpoints]]
  name = "POST /reindex"
  rps = {rare}
  error_rate = 0.005
  latency_median_ms = 200
  latency_p99_ms = 900

[[services]]
name = "web"
version = "v3.0.0"
instances = 2

  [[services.endpoints]]
  name = "GET /"
  rps = 5
  error_rate = 0.001
  latency_median_ms = 20
  latency_p99_ms = 100

[[deploys]]
id = "d-weak"
service = "search"
version = "v1.1.0"
at_s = 900
strategy = "blue_green"
expect = "confirmed"
"""


def _verdict(tmp_path, rps: float, rare: float) -> dict:
    path = tmp_path / f"weak_{rps}.toml"
    path.write_text(WEAK.format(name=f"weak_{str(rps).replace('.', '_')}", rps=rps, rare=rare))
    _truth, records, _ = replay_scenario(path, tmp_path)
    (verdict,) = [r for r in records if r["type"] == "verdict"]
    return verdict


def test_a_confirmation_states_the_latency_it_could_exclude(tmp_path):
    """Busy endpoint, quiet endpoint: the confirmation says which slowdown would have been seen on
    every endpoint (the mild rule's 1.25x) and on the quiet one (more), in reasons and detail."""
    verdict = _verdict(tmp_path, 20, 0.1)
    assert verdict["decision"] == "confirmed"
    detectable = verdict["detail"]["detectable"]
    assert detectable["latency_ratio"] == 1.25 and detectable["latency_quantile"] == 0.95
    assert "transactions_drop" not in detectable  # the service completes no transactions
    (latency,) = [r for r in verdict["reasons"] if "latency rise" in r]
    assert latency.startswith("a p95 latency rise of 1.25x or more on every endpoint would have been seen; "
                              "on endpoint POST /reindex (")
    (ep,) = detectable["endpoints"]
    assert ep["endpoint"] == "POST /reindex" and ep["latency_ratio"] > 1.25
    assert f"only one of {math.ceil(ep['latency_ratio'] * 100 - 1e-6) / 100:.2f}x or more" in latency
    assert "error_points" in ep and "transactions_drop" not in ep


def test_a_quiet_deploy_says_no_latency_regression_would_have_been_seen(tmp_path):
    """A request every 200 s on each endpoint (a handful in 900 s, a handful before): inconclusive,
    and no slowdown, however large, would have reached the bar on either endpoint."""
    verdict = _verdict(tmp_path, 0.005, 0.005)
    assert verdict["decision"] == "inconclusive"
    assert "no latency regression would have been seen at all" in verdict["reasons"]
    detectable = verdict["detail"]["detectable"]
    assert detectable["latency_ratio"] is None
    assert all(e["latency_ratio"] is None for e in detectable["endpoints"])
