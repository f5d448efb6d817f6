"""The seasonal watch answers many services' expectations in one vectorised step, bit for bit as one by one."""

from __future__ import annotations

import numpy as np

from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario


def _demo_batches(tmp_path, duration_s: float) -> list[list[bytes]]:
    path = tmp_path / "demo.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo"), seed=3, duration_s=duration_s), path)
    lines = path.read_bytes().splitlines()
    return [lines[i:i + 4000] for i in range(0, len(lines), 4000)]


def test_volume_expected_for_all_services_at_once_equals_one_service_at_a_time(tmp_path):
    core = Core(load_pipeline())
    watch = core.seasonal
    compared = ready = 0
    for lines in _demo_batches(tmp_path, 1500.0):
        core.process(decode_batch(lines, core.interner))
        if not core.history:
            continue
        services = sorted(watch._svc_index)
        for start in (core.history[-1].start, core.history[-1].end, core.history[-1].end + 3600.0):
            for sid in services:
                bulk = watch.expected_volume_detail(sid, [start])
                alone = watch._volume_over(sid, [start])
                np.testing.assert_array_equal(np.asarray(bulk[:2]), np.asarray(alone[:2]))
                assert bulk[2:] == alone[2:]
                compared += 1
                ready += bulk[2]
    assert compared > 100 and ready > 20  # the comparison covered ready expectations, not only NaN


def test_volume_memo_is_dropped_when_the_watch_learns(tmp_path):
    core = Core(load_pipeline())
    batches = _demo_batches(tmp_path, 1500.0)
    for lines in batches[:-1]:
        core.process(decode_batch(lines, core.interner))
    sid = next(iter(core.seasonal._svc_index))
    start = core.history[-1].end
    before = core.seasonal.expected_volume_detail(sid, [start])
    core.process(decode_batch(batches[-1], core.interner))
    after = core.seasonal.expected_volume_detail(sid, [start])
    assert before[2] and after != before  # windows learnt since moved the expectation
    assert after == core.seasonal._volume_over(sid, [start])
