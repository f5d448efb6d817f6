"""Service rollups of many closed windows in one pass equal each window's own, bit for bit."""

from __future__ import annotations

import numpy as np

from detector.baselines.rollup import rollup_many, rollup_one
from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario


def _closed_windows(tmp_path, duration_s: float = 900.0) -> tuple[Core, list]:
    path = tmp_path / "demo.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo"), seed=11, duration_s=duration_s), path)
    lines = path.read_bytes().splitlines()
    core = Core(load_pipeline())
    windows = []
    for i in range(0, len(lines), 3000):
        core.process(decode_batch(lines[i:i + 3000], core.interner))
        windows.extend(w for w in core.history if not any(w is seen for seen in windows))
    return core, windows


def _assert_same(a, b) -> None:
    for name, x, y in zip(a._fields, a, b):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_many_windows_at_once_equal_one_at_a_time(tmp_path):
    core, windows = _closed_windows(tmp_path)
    service = core.requests.service
    assert len(windows) > 50
    txn = lat = 0
    rng = np.random.default_rng(4)
    for _ in range(30):
        a = int(rng.integers(0, len(windows) - 1))
        some = windows[a:a + int(rng.integers(2, 40))]
        for w, got in zip(some, rollup_many(some, service, 0.95)):
            _assert_same(got, rollup_one(w, service, 0.95))
            txn += int(got.txn.sum() > 0)
            lat += int(np.isfinite(got.latency_q).sum())
    # every window of the run at once, and another quantile
    for w, got in zip(windows, rollup_many(windows, service, 0.5)):
        _assert_same(got, rollup_one(w, service, 0.5))
    assert txn > 10 and lat > 100  # transactions and latency were compared, not only empty columns


def test_the_watch_answers_the_same_with_rollups_prepared_ahead(tmp_path):
    """Two cores over the same input, one preparing each batch's rollups in one pass (as
    `Core._advance` does), one computing them window by window: the same records and baselines."""
    path = tmp_path / "demo.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo"), seed=12, duration_s=1200.0), path)
    lines = path.read_bytes().splitlines()
    ahead, alone = Core(load_pipeline()), Core(load_pipeline())
    alone.seasonal.prepare = lambda windows: None  # never ahead: every window's rollup on its own
    out = {id(ahead): [], id(alone): []}
    for i in range(0, len(lines), 20_000):  # ~7 windows closed per batch
        for core in (ahead, alone):
            out[id(core)].extend(core.process(decode_batch(lines[i:i + 20_000], core.interner)))
    for core in (ahead, alone):
        out[id(core)].extend(core.finish())
    assert out[id(ahead)] == out[id(alone)]
    assert ahead.seasonal.bank.to_bytes() == alone.seasonal.bank.to_bytes()
    assert not ahead.seasonal._ahead  # every prepared rollup was used


QUIET = """
name = "quiet_single"
seed = 77
start = 2026-11-27T12:00:00Z
duration_s = 1800
verification_s = 900

[[services]]
name = "search"
version = "v1.0.0"
instances = 2

  [[services.endpoints]]
  name = "GET /search"
  rps = 0.005
  error_rate = 0.002
  latency_median_ms = 40
  latency_p99_ms = 300

[[deploys]]
id = "d-quiet"
service = "search"
version = "v1.1.0"
at_s = 600
strategy = "blue_green"
"""


def test_batches_of_windows_without_any_request_are_rolled_up(tmp_path):
    """A single quiet service (one request every few minutes): a batch can close only windows
    that hold no request at all. Its rollups and fleet totals are empty (they raised before),
    equal to one window at a time, and the whole stream replays."""
    from detector.fleet.summarize import service_totals_many
    from detector.replay import replay

    scenario = tmp_path / "quiet.toml"
    scenario.write_text(QUIET)
    path = tmp_path / "quiet.jsonl"
    simulate_to_file(load_scenario(scenario), path)
    lines = path.read_bytes().splitlines()
    assert 2 <= sum(b'"type":"request"' in ln for ln in lines) <= 40
    core = Core(load_pipeline())
    windows = []
    for i in range(0, len(lines), 50):
        core.process(decode_batch(lines[i:i + 50], core.interner))
        windows.extend(w for w in core.history if not any(w is seen for seen in windows))
    empty = [w for w in windows if len(w.count) and not (w.count > 0).any()]
    assert len(empty) >= 10
    service, version = core.requests.service, core.requests.version
    for w, got in zip(empty, rollup_many(empty, service, 0.95)):
        _assert_same(got, rollup_one(w, service, 0.95))
        assert len(got.services) == 0
    assert service_totals_many(empty, service, version, {}) == [([], {})] * len(empty)
    replay([path], load_pipeline(), lambda r: None)  # raised IndexError before
