"""A pod restart on a quiet service holds no rollback rule (issue 12: "an effect confined to a
short blip (pod restarts) never holds a rule").

Fresh sweep seed 5150, deploy `sw-34`: a benign rolling deploy of a service at ~1.6 requests/s,
one pod of the new version failing 64 % of its requests for 38 s. Its 60 s span of
`errors-everywhere` held 41 of the new version's requests, too few for three blocks of ten, so
persistence was read on the first and the last THIRD of the span's requests; a 38 s blip inside
a 60 s span reaches into both, and the deploy was rolled back (+16.6 points). Time blocks ask
the first and the last sixth of the span to show the effect; the sparse ends now ask the same
of the requests: the windows wholly within the span's first (last) sixth of requests, and
when they hold fewer than `END_MIN_REQUESTS` the next window's first (last) requests up to that
many, with only the errors that must lie among them (a window's requests are not ordered).

The scenario is `txn_drop` (a blue/green switch of payments, four instances) made quiet: 0.75
requests/s (45 a minute), its fault replaced by a restart blip failing 30-60 % of the new
version's requests for 38-40 s, at onsets every 5 s; the same errors staying roll back.
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


ONSETS = list(range(0, 95, 5))


@pytest.mark.parametrize("error_rate, duration_s, onset_s",
                         [(0.5, 38, o) for o in ONSETS] + [(0.6, 40, o) for o in ONSETS] + [(0.3, 38, 20)])
def test_a_restart_blip_up_to_40_s_on_a_quiet_service_is_no_rollback(quiet, tmp_path: Path, error_rate: float,
                                                                      duration_s: float, onset_s: float):
    """Onsets every 5 s over the first 90 s of the deploy: a 38 s blip failing half the
    requests held `errors-everywhere` at onsets 55 and 75 s, a 40 s one failing 60 % at 15, 55
    and 75 s, each through an end that took in part of a window the blip began (ended) in."""
    verdict, fired = _verdict(tmp_path, f"quiet_blip_{onset_s}", _blip(error_rate, duration_s, onset_s))
    assert verdict["decision"] not in ("rollback", "page"), verdict["reasons"]
    assert not [r for r in fired if r]


@pytest.mark.parametrize("error_rate, onset_s", [(0.3, 20), (0.3, 55), (0.5, 0), (0.5, 55), (0.6, 75)])
def test_the_same_errors_that_stay_roll_back(quiet, tmp_path: Path, error_rate: float, onset_s: float):
    verdict, fired = _verdict(tmp_path, f"quiet_stay_{onset_s}", _blip(error_rate, 1e6, onset_s))
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


def test_a_blip_from_halfway_into_the_spans_second_window_holds_nothing():
    """The quiet scenario, a 38 s blip failing half the requests from +55 s, at +100 s: the
    span's first window (+40 to +50 s) held 4 requests, none failing, so its first sixth of
    requests took one more from the second window (+50 to +60 s, the blip from +55 s), which
    pro rata lent it that window's rate (4 errors in 9) and the end showed +9 points. The part
    of a window an end takes now holds only the errors that could not lie after it:
    max(0, 4 - 8) = 0. The same errors from the span's start still hold."""
    n = [4, 9, 4, 14, 6, 7]
    assert sum(x >= rules.PART_MIN_REQUESTS for x in n) < 3  # the sparse ends decide
    assert rules.evaluate(ALL, _span([0, 4, 1, 9, 3, 3], n)) == []
    (c,) = rules.evaluate(ALL, _span([2, 4, 1, 9, 3, 3], n))
    assert c.effect > 10.0


def test_a_blip_that_ended_before_the_spans_last_window_holds_nothing():
    """The mirror at the span's end (a 45 s blip from +15 s, at +70 s): the last window held 4
    requests, none failing, the one before it 5 errors in 9."""
    n = [7, 11, 9, 4, 9, 4]
    assert rules.evaluate(ALL, _span([1, 5, 3, 1, 5, 0], n)) == []
    (c,) = rules.evaluate(ALL, _span([1, 5, 3, 1, 5, 2], n))
    assert c.effect > 10.0


def test_a_partial_window_that_fails_throughout_still_counts():
    """The least favourable order still puts errors in the part an end takes when the window
    has more errors than requests outside that part: a fault failing every request from the
    span's start holds with a first window of 2 requests."""
    n = [2, 6, 8, 8, 8, 8]
    (c,) = rules.evaluate(ALL, _span([2, 6, 8, 8, 8, 8], n))
    assert c.effect > 50.0
    first, _ = rules._request_ends(*_span([0, 6, 8, 8, 8, 8], n).tables)
    assert first[0].sum() == 3.0 and first[1].sum() == 5.0  # window 0 none, 3 of window 1's 3 requests taken


def test_a_blip_ending_early_in_the_second_last_window_lends_no_stratum_its_rate():
    """The quiet scenario, a 40 s blip failing 60 % from +15 s, at +70 s, per endpoint (rows):
    the span's last window held 4 requests, none failing; of the second-last window (the blip
    until +55 s) the busy endpoint served 7 requests, none failing, the other 2, both failing.
    Taken per stratum, that endpoint's share of the one request the last end takes from the
    window failed (2 errors, 2 requests) and the end showed +4.2 points. The window's 2 errors
    in 9 requests fit in the 8 after the part: the end takes none, and nothing holds."""
    k = np.array([[3, 3, 5, 2, 0, 0], [1, 5, 2, 0, 2, 0]], float).T
    n = np.array([[4, 4, 5, 3, 7, 3], [3, 7, 4, 1, 2, 1]], float).T
    r = np.array([[1.0] * 6, [0.0] * 6]).T
    m = np.array([[286.0] * 6, [203.0] * 6]).T
    inp = rules.Inputs(np.array([0, 1], np.int32), np.array([9.0, 9.0]), 9.0, 0.001, tables=(k, n, r, m),
                       share_of=lambda ep: 0.5)
    assert rules.evaluate(ALL, inp) == []
    _, last = rules._request_ends(k, n, r, m)
    assert last[0].sum() == 0.0 and last[1].sum() == 5.0
    k[5] = [1, 1]  # the same errors reaching the span's end hold
    (c,) = rules.evaluate(ALL, inp)
    assert c.effect > 10.0
