"""A pod restart on a quiet service holds no rollback rule (issue 12: "an effect confined to a
short blip (pod restarts) never holds a rule").

Fresh sweep seed 5150, deploy `sw-34`: a benign rolling deploy of a service at ~1.6 requests/s,
one pod of the new version failing 64 % of its requests for 38 s. Its 60 s span of
`errors-everywhere` held 41 of the new version's requests, too few for three blocks of ten, so
persistence was read on the first and the last THIRD of the span's requests; a 38 s blip inside
a 60 s span reaches into both, and the deploy was rolled back (+16.6 points). Time blocks ask
the first and the last sixth of the span to show the effect; the sparse ends now ask the same
of the requests: the windows wholly within the span's first (last) sixth of requests, and
when they hold fewer than `END_MIN_REQUESTS` the next window pro rata up to that many.

The scenario is `txn_drop` (a blue/green switch of payments, four instances) made quiet: 0.75
requests/s (45 a minute), its fault replaced by a restart blip failing 30 % of the new version's
requests for 38 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.judge import rules
from test_moderate_rules import _scenario, _verdict
from test_sparse_endpoint import ALL

import test_moderate_rules


def _blip(error_rate: float, duration_s: float, onset_s: float) -> str:
    return f"""  [[deploys.faults]]
  kind = "pod_restart_blip"
  error_rate = {error_rate}
  duration_s = {duration_s}
  onset_s = {onset_s}
"""


@pytest.fixture
def quiet(monkeypatch):
    """`_verdict` on the scenario with its endpoints at 0.45 and 0.3 requests/s (15 and 10 shipped)."""
    def scenario(tmp_path: Path, name: str, fault: str) -> Path:
        path = _scenario(tmp_path, name, fault)
        text = path.read_text()
        assert "rps = 15\n" in text and "rps = 10\n" in text
        path.write_text(text.replace("rps = 15\n", "rps = 0.45\n").replace("rps = 10\n", "rps = 0.3\n"))
        return path

    monkeypatch.setattr(test_moderate_rules, "_scenario", scenario)


@pytest.mark.parametrize("onset_s", [10, 20, 45])
def test_a_38_s_restart_blip_on_a_quiet_service_is_no_rollback(quiet, tmp_path: Path, onset_s: float):
    verdict, fired = _verdict(tmp_path, f"quiet_blip_{onset_s}", _blip(0.3, 38, onset_s))
    assert verdict["decision"] not in ("rollback", "page"), verdict["reasons"]
    assert not [r for r in fired if r]


def test_the_same_errors_that_stay_roll_back(quiet, tmp_path: Path):
    verdict, fired = _verdict(tmp_path, "quiet_stay", _blip(0.3, 1e6, 20))
    assert verdict["decision"] == "rollback"
    assert "errors-everywhere" in fired


def _span(k: list[int], n: list[int]) -> rules.Inputs:
    """A service-wide span, window by window; the reference 1 error in 300 requests a window."""
    tables = (np.array(k, float)[:, None], np.array(n, float)[:, None], np.ones((len(n), 1)),
              np.full((len(n), 1), 300.0))
    return rules.Inputs(np.array([4], np.int32), np.array([9.0]), 9.0, 0.001, tables=tables,
                        share_of=lambda ep: 1.0)


def test_sw_34s_span_holds_nothing_and_the_same_errors_spread_over_it_hold():
    """Seed 5150 `sw-34` at +60 s, the rolling deploy's new version ramping up: its requests
    and errors per 10 s window of `errors-everywhere`'s span (the blip from +37 to +75 s).
    The first third of its requests (windows 0-3) held one error of the blip, 5 %; the first
    sixth (windows 0-2, 11 requests) none."""
    n = [1, 3, 7, 9, 11, 10]
    assert sum(x >= rules.PART_MIN_REQUESTS for x in n) < 3  # the sparse ends decide
    assert rules.evaluate(ALL, _span([0, 0, 0, 1, 3, 1], n)) == []
    (c,) = rules.evaluate(ALL, _span([0, 1, 1, 1, 1, 1], n))
    assert c.effect > 10.0


def test_a_blip_where_the_spans_first_blocks_are_too_thin_to_qualify_holds_nothing():
    """Three to five blocks with ten requests: the first and last blocks checked were the
    first and last QUALIFYING blocks, so a blip filling every qualifying block held while the
    span's first requests (thin blocks of a deploy ramping up) showed nothing. An end block
    with fewer than ten requests is read as the sparse ends are, by the span's first (last)
    sixth of requests. The same errors from the span's start still hold."""
    n = [6, 7, 12, 14, 15, 15]  # blocks 2-5 qualify; blocks 0-1 hold 13 requests, over a sixth
    assert sum(x >= rules.PART_MIN_REQUESTS for x in n) >= 3
    assert rules.evaluate(ALL, _span([0, 0, 3, 4, 4, 4], n)) == []
    (c,) = rules.evaluate(ALL, _span([1, 1, 3, 4, 4, 4], n))
    assert c.effect > 10.0
