"""Transaction names are capped per service (limits.max_txn_names_per_service): past the cap a new
name counts under `other`, no transaction is lost, and the cap survives a state snapshot."""

from __future__ import annotations

import dataclasses

import orjson

from detector.aggregate.series import MetricSeries, RequestSeries
from detector.aggregate.txnnames import TxnNames
from detector.aggregate.windows import WindowStore
from detector.config import Limits, load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.ingest.interner import Interner

T0 = 1764140400.0
CAP = 8


def _requests(n_names: int, per_name: int = 3, service: str = "shop", t0: float = T0) -> list[dict]:
    """`per_name` requests of each of `n_names` distinct transaction names, names in turn (n0, n1, ...)."""
    out = []
    for rep in range(per_name):
        for i in range(n_names):
            out.append({"type": "request", "ts": t0 + (rep * n_names + i) * 0.01, "service": service,
                        "endpoint": "POST /buy", "status": 200, "latency_ms": 12.0, "version": "v1",
                        "txn": f"n{i}"})
    return out


def _store(cap: int = CAP) -> tuple[WindowStore, Interner]:
    it = Interner()
    limits = Limits(max_txn_names_per_service=cap)
    requests = RequestSeries(it, limits)
    return WindowStore(10, 5, requests, MetricSeries(it, limits), TxnNames(it, cap)), it


def _feed(store: WindowStore, it: Interner, events: list[dict], batch: int = 37) -> list:
    closed = []
    for i in range(0, len(events), batch):
        store.add(decode_batch([orjson.dumps(e) for e in events[i:i + batch]], it))
        closed.extend(store.close_ready())
    return closed + store.close_all()


def _names_counted(closed, it: Interner) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in closed:
        for name, n in zip(w.txn_name.tolist(), w.txn_count.tolist()):
            out[it.lookup(name)] = out.get(it.lookup(name), 0) + n
    return out


def test_names_past_the_cap_count_under_other_and_none_is_lost():
    """200 distinct names of one service: the first CAP keep their names, every later one is `other`,
    and the windows still hold every completed transaction."""
    store, it = _store()
    events = _requests(200)
    counted = _names_counted(_feed(store, it, events), it)
    assert sum(counted.values()) == len(events)
    assert set(counted) == {f"n{i}" for i in range(CAP)} | {"other"}
    assert counted["other"] == 3 * (200 - CAP)
    assert store.txn_names.folded == 3 * (200 - CAP)
    assert [it.lookup(s) for s in store.txn_names.capped] == ["shop"]  # said once, not once per name
    assert len(store.txn_names.names[it.get("shop")]) == CAP  # folded names are not remembered


def test_the_cap_is_per_service():
    """A second service below the cap keeps all its names while the first one is folding."""
    store, it = _store()
    events = sorted(_requests(40) + _requests(CAP, service="cart"), key=lambda e: e["ts"])
    counted = _names_counted(_feed(store, it, events), it)
    assert [it.lookup(s) for s in store.txn_names.capped] == ["shop"]
    assert store.txn_names.folded == 3 * (40 - CAP)
    assert counted["other"] == 3 * (40 - CAP)
    assert len(store.txn_names.names[it.get("cart")]) == CAP


def test_without_the_cap_every_name_is_kept():
    """The default cap (64) leaves 50 names alone: the cap is what folds them, not the windows."""
    store, it = _store(cap=Limits().max_txn_names_per_service)
    counted = _names_counted(_feed(store, it, _requests(50)), it)
    assert "other" not in counted and len(counted) == 50 and store.txn_names.folded == 0


def test_the_pipeline_key_sets_the_cap_and_a_restored_core_keeps_it():
    """limits.max_txn_names_per_service reaches the core; after snapshot and restore a new name is still
    folded (the admitted names are part of the state) and the windows match an uninterrupted core."""
    base = load_pipeline()
    pipeline = dataclasses.replace(base, limits=dataclasses.replace(base.limits, max_txn_names_per_service=CAP))
    first, later = _requests(30), _requests(30, t0=T0 + 60)

    def run(restore: bool):
        core = Core(pipeline)
        facts = []
        core.window_listeners.append(facts.append)
        core.process(decode_batch([orjson.dumps(e) for e in first], core.interner))
        if restore:
            core = Core.restore(pipeline, core.snapshot())
            core.window_listeners.append(facts.append)
        core.process(decode_batch([orjson.dumps(e) for e in later], core.interner))
        core.finish()
        return core, facts

    whole, facts_whole = run(False)
    restored, facts_restored = run(True)
    assert whole.windows.txn_names.cap == CAP
    assert whole.windows.txn_names.folded == 2 * 3 * (30 - CAP)
    assert restored.windows.txn_names.to_state() == whole.windows.txn_names.to_state()
    assert _names_counted(facts_restored, restored.interner) == _names_counted(facts_whole, whole.interner)
    assert _names_counted(facts_whole, whole.interner)["other"] == 2 * 3 * (30 - CAP)
