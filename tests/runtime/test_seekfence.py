"""The seek fence: a batch fetched before its partition's seek is dropped (the seek reads it again)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from detector.runtime.seekfence import SeekFence

LOGS0, LOGS1 = TopicPartition("logs", 0), TopicPartition("logs", 1)


@dataclass
class Msg:
    offset: int


def _msgs(lo: int, hi: int) -> list[Msg]:
    return [Msg(o) for o in range(lo, hi)]


def test_a_batch_fetched_before_a_seek_of_its_partition_is_stale_and_others_are_not():
    """Only the seeked partition's copy fetched before the seek is dropped; one fetched after it is kept."""
    fence = SeekFence()
    before = fence.mark()
    fence.seeked(LOGS0)
    after = fence.mark()
    batch = {LOGS0: _msgs(10, 20), LOGS1: _msgs(5, 8)}
    kept, dropped = fence.fresh(batch, before)
    assert kept == {LOGS1: batch[LOGS1]} and dropped == 10
    kept, dropped = fence.fresh(batch, after)
    assert kept == batch and dropped == 0


def test_a_seek_after_a_seek_still_makes_the_older_batches_stale():
    """Two restores of one partition: a batch fetched between them is stale too."""
    fence = SeekFence()
    fence.seeked(LOGS0)
    between = fence.mark()
    fence.seeked(LOGS1)
    assert not fence.stale(LOGS0, between) and fence.stale(LOGS1, between)
    fence.seeked(LOGS0)
    assert fence.stale(LOGS0, between)
