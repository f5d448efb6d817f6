"""The status page's window rows, bit for bit the rows of their definition.

The `Recorder` takes most seasonal expectations from what the seasonal watch
judged the window against, and sums and merges the (service, version) and
service-total groups in one pass. The reference here is the definition,
computed the plain way: per window, before the watch learns it, each group's
sums and latency sketch merged on its own, and the bank asked for the volume,
error rate (at the window's request count) and p95 expectations of every
service it knows. Every column must be equal, NaN for NaN, on the demo, on a
quiet multi-service stream (with deploys under verification, a service new
mid-stream and windows without latency for a service), and across a core
snapshot and restore (the recorder keeps no state of its own in a checkpoint:
a new one is attached to the restored core, as the sidecar does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from detector.aggregate import sketch
from detector.baselines import latency_signal
from detector.baselines.watch import SEP
from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.report.summaries import ALL, QUANTILES, Recorder, Summaries, _slot
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario

CHUNK = 4096


def _reference_rows(core: Core, s: Summaries, w) -> None:
    """The rows of window `w` by their definition (as the recorder computed them before it read
    the watch's expectations); called before the seasonal watch learns `w`."""
    k = len(w.count)
    if not k or not (w.count > 0).any():
        return
    rs = core.requests
    svc, ver = rs.service[:k].astype(np.int64), rs.version[:k].astype(np.int64)
    active = w.count > 0
    key_ver = np.where(ver >= 0, (svc << 22) | (ver + 1), -1)
    key_all = svc << 22
    keys = np.unique(np.concatenate([key_ver[active & (ver >= 0)], key_all[active]]))
    n_g = len(keys)
    g_ver, g_all = _slot(keys, key_ver), _slot(keys, key_all)
    txn = np.zeros(k)
    if len(w.txn_series):
        ok = w.txn_series < k
        txn = np.bincount(w.txn_series[ok], weights=w.txn_count[ok], minlength=k)
    cols = {"requests": np.zeros(n_g), "errors": np.zeros(n_g), "txns": np.zeros(n_g)}
    for g in (g_ver, g_all):
        ok = g >= 0
        cols["requests"] += np.bincount(g[ok], weights=w.count[ok], minlength=n_g)
        cols["errors"] += np.bincount(g[ok], weights=w.errors[ok], minlength=n_g)
        cols["txns"] += np.bincount(g[ok], weights=txn[ok], minlength=n_g)
    n_lat = w.lat.n_series
    q_ver = sketch.quantiles_grouped(sketch.merge_grouped(w.lat, g_ver[:n_lat], n_g), QUANTILES)
    q_all = sketch.quantiles_grouped(sketch.merge_grouped(w.lat, g_all[:n_lat], n_g), QUANTILES)
    is_all = (keys & ((1 << 22) - 1)) == 0
    q = np.where(is_all[:, None], q_all, q_ver)
    lookup = core.interner.lookup
    all_id = s.name_id(ALL)
    svc_ids = np.array([s.name_id(lookup(x)) for x in (keys >> 22).tolist()], np.int64)
    ver_ids = np.array([all_id if x == 0 else s.name_id(lookup(x - 1)) for x in (keys & ((1 << 22) - 1)).tolist()],
                       np.int64)
    s.add_rows({"start": np.full(n_g, w.start), "service": svc_ids, "version": ver_ids, **cols,
                "p50": q[:, 0], "p95": q[:, 1], "p99": q[:, 2]})
    bank = core.seasonal.bank
    idx = bank.lookup([f"svc{SEP}{lookup(int(x))}" for x in (keys[is_all] >> 22).tolist()])
    known = idx >= 0
    if not known.any():
        return
    idx, sids, n = idx[known], svc_ids[is_all][known], cols["requests"][is_all][known]
    at = np.full(len(idx), w.start)
    vol = bank["volume"].expect(idx, at)
    err = bank["error_rate"].expect(idx, at, weights=np.maximum(n, 1))
    p95 = bank[latency_signal(core.seasonal.quantile)].expect(idx, at)
    s.add_seasonal({"start": at, "service": sids, "ready": vol.ready.astype(np.int8), "vol_mean": vol.mean,
                    "vol_std": vol.std, "err_mean": np.where(err.ready, err.mean, np.nan), "err_std": err.std,
                    "p95_mean": np.where(p95.ready, p95.mean, np.nan), "p95_std": p95.std})


def _watch(core: Core, reference: Summaries, drop_latency: str | None, stats: dict) -> None:
    """Compute the reference rows of each window just before the seasonal watch learns it;
    with `drop_latency`, that service's latency is taken out of every third window first."""
    observe = core.seasonal.observe

    def hooked(w, held=frozenset()):
        if drop_latency is not None and int(w.start // 10) % 3 == 0:
            _drop_latency(core, w, drop_latency)
            stats["dropped"] += 1
        stats["held"] += bool(held)
        _reference_rows(core, reference, w)
        return observe(w, held)

    core.seasonal.observe = hooked


def _drop_latency(core: Core, w, service: str) -> None:
    sid = core.interner.get(service)
    lat = w.lat
    mine = core.requests.service[:lat.n_series] == sid
    keep = ~np.repeat(mine, np.diff(lat.indptr))
    sizes = np.where(mine, 0, np.diff(lat.indptr))
    w.lat = sketch.GroupedSketch(np.concatenate(([0], np.cumsum(sizes))).astype(np.int64), lat.buckets[keep],
                                 lat.counts[keep])
    core.seasonal._ahead.pop(id(w), None)  # its rollup, made ahead from the latency dropped here


def _feed(core: Core, lines: list[bytes]) -> None:
    for i in range(0, len(lines), CHUNK):
        core.process(decode_batch(lines[i:i + CHUNK], core.interner, core.pipeline.limits.max_message_bytes))


def _assert_same(got: Summaries, want: Summaries) -> None:
    assert got.names == want.names
    for a, b in ((got.columns(), want.columns()), (got.seasonal_columns(), want.seasonal_columns())):
        assert a.keys() == b.keys()
        for f in a:
            assert a[f].dtype == b[f].dtype, f
            assert a[f].shape == b[f].shape, f
            assert a[f].tobytes() == b[f].tobytes(), f


def _events(tmp: Path, name: str, **overrides) -> list[bytes]:
    path = tmp / f"{name}.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo"), **overrides), path)
    return path.read_bytes().splitlines()


def _new_service(lines: list[bytes], from_ts: float) -> list[bytes]:
    """A service that first appears mid-stream, merged in event-time order."""
    extra = [orjson.dumps({"type": "request", "ts": from_ts + 0.5 * i, "service": "latecomer", "version": "v1",
                           "endpoint": "GET /x", "status": 500 if i % 50 == 0 else 200, "latency_ms": 10 + i % 9})
             for i in range(4000)]
    ts = [orjson.loads(x)["ts"] for x in lines]
    out, j = [], 0
    for t, line in zip(ts, lines):
        while j < len(extra) and from_ts + 0.5 * j <= t:
            out.append(extra[j])
            j += 1
        out.append(line)
    return out + extra[j:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> list[bytes]:
    return _events(tmp_path_factory.mktemp("rows"), "demo", duration_s=1200.0)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory) -> list[bytes]:
    lines = _events(tmp_path_factory.mktemp("rows"), "quiet", duration_s=2 * 3600.0, rate_scale=0.03)
    return _new_service(lines, orjson.loads(lines[0])["ts"] + 1800.0)


def _run(lines: list[bytes], drop_latency: str | None = None, restore_at: float | None = None):
    pipeline = load_pipeline()
    core = Core(pipeline)
    got, want = Summaries(pipeline.windows.width_s), Summaries(pipeline.windows.width_s)
    stats = {"dropped": 0, "held": 0}
    Recorder.attach(core, got)
    _watch(core, want, drop_latency, stats)
    if restore_at is None:
        _feed(core, lines)
    else:
        cut = int(restore_at * len(lines))
        _feed(core, lines[:cut])
        core = Core.restore(pipeline, core.snapshot())
        Recorder.attach(core, got)  # a new recorder on the same summaries, as the status page re-attaches
        _watch(core, want, drop_latency, stats)
        _feed(core, lines[cut:])
    core.finish()
    return got, want, stats


def test_demo_rows_are_their_definition(demo) -> None:
    got, want, stats = _run(demo)
    assert stats["held"] > 0  # deploys under verification: error rates the watch judged at the typical weight
    seasonal = want.seasonal_columns()
    assert (seasonal["ready"] > 0).sum() > 100 and len(want.columns()["start"]) > 500
    _assert_same(got, want)


def test_quiet_rows_are_their_definition_with_a_new_service_and_windows_without_latency(quiet) -> None:
    got, want, stats = _run(quiet, drop_latency="payments")
    assert stats["held"] > 0 and stats["dropped"] > 100
    seasonal = want.seasonal_columns()
    late = want.find("latecomer")
    assert late >= 0 and (seasonal["service"] == late).sum() > 0
    # windows of payments without latency: the p95 expectation is there all the same
    dropped = (seasonal["service"] == want.find("payments")) & ((seasonal["start"] // 10) % 3 == 0)
    assert np.isfinite(seasonal["p95_mean"][dropped]).sum() > 200
    _assert_same(got, want)


def test_rows_across_a_snapshot_and_restore_are_those_of_an_uninterrupted_core(quiet) -> None:
    got, want, _ = _run(quiet, restore_at=0.55)
    _assert_same(got, want)
    whole, _, _ = _run(quiet)
    _assert_same(got, whole)


def test_a_recorder_refuses_a_window_the_watch_has_not_judged(demo) -> None:
    pipeline = load_pipeline()
    core = Core(pipeline)
    rec = Recorder.attach(core, Summaries(pipeline.windows.width_s))
    _feed(core, demo[:100_000])
    with pytest.raises(RuntimeError, match="has not judged this window"):
        rec.observe(core.history[0])
