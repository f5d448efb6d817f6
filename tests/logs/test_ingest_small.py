"""A window of a few log lines of several services is split by service in plain Python:
the same template indices, registry and miners as the array split."""

from __future__ import annotations

import numpy as np
import pytest

import detector.logs.templates as templates_module
from detector.logs import LogSettings, LogTemplates

MESSAGES = ["user {} logged in from 10.0.{}.{}", "payment {} failed: timeout after {} ms",
            "cache miss for key order:{}", "GET /api/v1/items/{} took {} ms", "worker {} restarted"]


def _window(rng, k: int, n: int):
    ts = np.sort(k * 10.0 + rng.random(n) * 10.0)
    svc = rng.integers(0, 4, n).astype(np.int32)
    ver = rng.integers(-1, 3, n).astype(np.int32)
    level = rng.integers(0, 4, n).astype(np.int64)
    msgs = [MESSAGES[int(rng.integers(0, len(MESSAGES)))].format(*rng.integers(0, 300, 3).tolist())
            for _ in range(n)]
    return ts, svc, ver, level, msgs


def _templates() -> LogTemplates:
    lt = LogTemplates(LogSettings(window_s=10.0))
    for s in ("svc-a", "svc-b", "svc-c", "svc-d", "v1", "v2", "v3"):
        lt._strings.intern(s)
    return lt


@pytest.mark.parametrize("seed", range(4))
def test_small_windows_split_by_service_as_the_array_path(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    small, big = _templates(), _templates()
    for k in range(60):
        rows = _window(rng, k, int(rng.integers(1, templates_module._SMALL_LINES + 1)))
        got = small._ingest(*rows)
        with monkeypatch.context() as m:
            m.setattr(templates_module, "_SMALL_LINES", 0)
            want = big._ingest(*rows)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
    assert len(small) > 5
    assert small.to_bytes() == big.to_bytes()
