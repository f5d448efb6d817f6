"""`TemplateRegistry.observe` on a small batch (plain Python) against the array path: same state."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

import detector.logs.registry as registry_module
from detector.ingest.interner import Interner
from detector.logs.registry import TemplateRegistry

N_TEMPLATES = 5

rows = st.tuples(st.integers(0, N_TEMPLATES - 1),
                 st.sampled_from([100.0, 100.5, 99.25, 250.0, 1e9, 1e9 + 0.125, 37.0]),
                 st.integers(-1, 3), st.integers(0, 3))


def _registry() -> TemplateRegistry:
    strings = Interner()
    for s in ("svc-a", "svc-b", "v1", "v2", "v3"):
        strings.intern(s)
    reg = TemplateRegistry(strings)
    for i in range(N_TEMPLATES):
        reg.add(i % 2, (f"template {i}", "<NUM>"))
    return reg


def _state(reg: TemplateRegistry) -> tuple:
    # the versions' dicts with their insertion order (to_state and the snapshots keep it)
    return (reg._first.tolist(), reg._last.tolist(), reg._levels.tolist(),
            [list(v.items()) for v in reg.versions], reg.to_state())


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.lists(rows, min_size=1, max_size=12), min_size=1, max_size=6))
def test_small_batches_fold_in_as_the_array_path(batches):
    small, big = _registry(), _registry()
    for batch in batches:
        tpl = np.array([r[0] for r in batch], np.int32)
        ts = np.array([r[1] for r in batch], np.float64)
        ver = np.array([r[2] for r in batch], np.int32)
        lvl = np.array([r[3] for r in batch], np.int8)
        assert len(tpl) <= registry_module._SMALL_BATCH
        small.observe(tpl, ts, ver, lvl)
        saved = registry_module._SMALL_BATCH
        registry_module._SMALL_BATCH = 0  # the array path
        try:
            big.observe(tpl, ts, ver, lvl)
        finally:
            registry_module._SMALL_BATCH = saved
        assert _state(small) == _state(big)
    for i in range(N_TEMPLATES):
        assert small.info(i) == big.info(i)


def test_small_path_is_taken_and_counts():
    reg = _registry()
    reg.observe(np.array([1, 1, 3], np.int32), np.array([5.0, 2.0, 9.0]), np.array([2, 3, -1], np.int32),
                np.array([0, 2, 1], np.int8))
    assert reg._first[1] == 2.0 and reg._last[1] == 5.0 and reg._first[3] == reg._last[3] == 9.0
    assert reg._levels[1].tolist() == [1, 0, 1, 0] and reg._levels[3].tolist() == [0, 1, 0, 0]
    assert list(reg.versions[1].items()) == [(2, 5.0), (3, 2.0)] and reg.versions[3] == {-1: 9.0}
