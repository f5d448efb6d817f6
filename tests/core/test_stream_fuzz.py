"""Randomised hostile streams through the whole core (`tests/hostile_streams.py`).

Each seed builds a contract-valid but odd stream with invalid lines mixed in
and replays it: nothing may crash, every invalid line goes to the dead letters
with a reason, every valid event is accounted for (decoded, then folded into a
closed window, counted late, or taken as a deploy, check or incident: no silent
loss), a second replay gives the same records, and so do a replay in small
chunks (when no event comes later than the lateness) and one over 3 partitions
(the same decisions and root causes). `benchmarks/stream_fuzz.py` runs hundreds of seeds.
"""

from __future__ import annotations

import warnings

import orjson
import pytest
from hostile_streams import check, generate, run, settled, split_run

from detector.config import load_pipeline

SEEDS = range(1, 13)  # seed 0 draws 3 hours of 8 services: 4 replays take most of a minute


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline()


def _decisions(records: list[bytes]) -> list[tuple]:
    verdicts = [orjson.loads(r) for r in records if b'"type":"verdict"' in r]
    return sorted((v["deploy_id"], v["decision"], v["root_cause"]["category"]) for v in verdicts)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_hostile_stream_is_replayed_without_loss(seed, pipeline, tmp_path):
    stream = generate(seed, budget=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # huge metric values overflow on purpose
        records, account = run(stream, tmp_path, pipeline)
        assert check(stream, account) == []
        again, _ = run(stream, tmp_path, pipeline)
        assert again == records, "a second replay of the same file gave other records"
        small, account_small = run(stream, tmp_path, pipeline, chunk_lines=97)
        assert check(stream, account_small) == []
        assert settled(stream, account_small) == settled(stream, account), "the dead letters depend on the batching"
        if stream.batching_free and account_small.dead == account.dead:
            assert small == records, "the records depend on the batching"
        wide, account_wide = run(stream, tmp_path, pipeline, partitions=3)
        assert check(stream, account_wide, partitions=3) == []
        assert _decisions(wide) == _decisions(records), "the decisions depend on the partition count"


@pytest.mark.parametrize("seed", SEEDS[::4])
def test_a_hostile_stream_cut_by_a_snapshot_gives_the_same_records(seed, pipeline):
    stream = generate(seed, budget=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        whole, cut = split_run(stream, pipeline)
    assert cut == whole


def test_the_generator_reaches_the_odd_corners():
    """Over 40 seeds the streams hold every corner the stress is meant to reach."""
    corners, invalid = set(), set()
    for seed in range(40):
        s = generate(seed, budget=1500)
        corners |= set(s.corners)
        invalid |= set(s.invalid.values())
    for want in ["gap of hours", "deploy of a service with no traffic", "deploy before any traffic",
                 "deploys right after each other", "redeploy of the same version", "redeploy of the previous version",
                 "canary weight 0", "canary weight 1", "version that never serves", "ts on a window boundary",
                 "out of order within lateness", "metric one sample", "metric constant", "metric huge", "odd log text",
                 "very long log line", "checks of unknown deploys", "endpoint seen once", "flood endpoint",
                 "service appears mid-stream", "service disappears mid-stream", "rfc3339 ts",
                 "deploys and checks in a file of their own", "unicode service"]:
        assert want in corners, want
    assert len(invalid) >= 25, sorted(invalid)
