"""Baselines do not learn incidents: windows of a service under verification pull nothing."""

from __future__ import annotations

import numpy as np
import orjson

from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch

T0 = 1_764_140_400.0


def _events(with_deploy: bool) -> list[list[bytes]]:
    """85 minutes of a steady service at 5 req/s; at 1 h a deploy (or none) and 10x traffic after it."""
    rng = np.random.default_rng(1)
    batches = []
    for minute in range(85):  # the verification (30 min) is still open at the end
        rate = 5 if minute < 60 else 50
        lines = []
        for t in np.sort(T0 + minute * 60 + rng.uniform(0, 60, rng.poisson(rate * 60))):
            lines.append(orjson.dumps({"type": "request", "ts": float(t), "service": "a", "endpoint": "GET /",
                                       "status": 200, "latency_ms": 20.0, "version": "v2" if minute >= 60 else "v1"}))
        if minute == 60 and with_deploy:
            lines.insert(0, orjson.dumps({"type": "deploy", "ts": T0 + 3600, "service": "a", "deploy_id": "d-1",
                                          "version": "v2", "previous_version": "v1"}))
        batches.append(lines)
    return batches


def _expected_volume_after(with_deploy: bool) -> tuple[float, bool]:
    core = Core(load_pipeline())
    for lines in _events(with_deploy):
        core.process(decode_batch(lines, core.interner))
    held = any(v.open for v in core.judge.verifications.values())
    mean, _var, ready = core.seasonal.expected_volume(core.interner.get("a"), [T0 + 85 * 60])
    assert ready
    return mean, held


def test_windows_under_verification_are_not_learnt():
    learnt, _ = _expected_volume_after(with_deploy=False)
    held_mean, held = _expected_volume_after(with_deploy=True)
    assert held  # the deploy is still under verification at the end
    per_window_before = 5 * 10
    assert learnt > 4 * per_window_before  # without a deploy the level follows the new traffic
    assert held_mean < 1.5 * per_window_before  # under verification it stays where it was
