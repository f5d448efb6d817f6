"""Which fetched records a partition's core has not seen yet, around a restore's seek.

aiokafka makes a new assignment fetchable before it runs the rebalance
listener, so `getmany` can hand the loop records of a partition (from its
committed offsets) while `acquire` is still loading that partition's
checkpoint. `acquire` then restores the core and seeks to the checkpoint's
offsets: the records already handed out are fetched again. Processing both
copies counts those events twice (a restart after a crash then emits records
a replay does not). This module owns the two rules that keep a core's input
exactly once:

* a batch fetched before its partition was seeked is stale: the seek
  delivers its records again, so the stale copy is dropped whole;
* a record below the partition's next offset is already in the core (the
  checkpoint or an earlier batch holds it) and is dropped.

>>> from aiokafka import TopicPartition
>>> fence = SeekFence()
>>> fetched = fence.mark()           # right after getmany returned
>>> fence.seeked(TopicPartition("logs", 0))
>>> fence.stale(TopicPartition("logs", 0), fetched)
True
>>> fence.stale(TopicPartition("logs", 0), fence.mark())
False
"""

from __future__ import annotations

from aiokafka import TopicPartition


class SeekFence:
    def __init__(self) -> None:
        self._seeks = 0  # seeks so far: a batch's mark says how many happened before it was fetched
        self._seeked_at: dict[TopicPartition, int] = {}  # partition -> number of its latest seek

    def mark(self) -> int:
        """Call in the same step as `getmany` returns (no await between): the batch's fetch mark."""
        return self._seeks

    def seeked(self, tp: TopicPartition) -> None:
        """Call with every seek of an input partition: what was fetched before it comes again."""
        self._seeks += 1
        self._seeked_at[tp] = self._seeks

    def stale(self, tp: TopicPartition, mark: int) -> bool:
        """Whether `tp` was seeked after the batch with fetch mark `mark` was fetched."""
        return self._seeked_at.get(tp, 0) > mark

    def fresh(self, batch: dict, mark: int, next_offset) -> tuple[dict, int]:
        """`batch` (getmany's) without stale partitions and records already seen (`next_offset(tp)`:
        the offset the core expects next, None when it holds nothing of `tp`); and how many were dropped."""
        out, dropped = {}, 0
        for tp, msgs in batch.items():
            keep = [] if self.stale(tp, mark) else unseen(msgs, next_offset(tp))
            dropped += len(msgs) - len(keep)
            if keep:
                out[tp] = keep
        return out, dropped


def unseen(msgs: list, next_offset: int | None) -> list:
    """`msgs` (in offset order) without those below `next_offset`, which the core already holds."""
    if next_offset is None or not msgs or msgs[0].offset >= next_offset:
        return msgs
    return [m for m in msgs if m.offset >= next_offset]
