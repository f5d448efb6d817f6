"""Fetched records that a restore's seek makes stale: a partition's core gets each record once.

aiokafka makes a new assignment fetchable before it runs the rebalance
listener, so `getmany` can hand the loop records of a partition (from its
committed offsets) while `acquire` is still loading that partition's
checkpoint. `acquire` then restores the core and seeks to the checkpoint's
offsets: the records already handed out are fetched again. Processing both
copies counts those events twice (a restart after a crash then emits records
a replay does not). The rule: a batch fetched before its partition was
seeked is stale, and dropped whole, since the seek delivers its records
again. (Dropping records below the core's next offset instead would lose
events when the stale batch starts after the checkpoint's offsets, and
would ignore a recreated topic.)

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

    def fresh(self, batch: dict, mark: int) -> tuple[dict, int]:
        """`batch` (getmany's, fetched at `mark`) without its stale partitions; and how many records that dropped."""
        out, dropped = {}, 0
        for tp, msgs in batch.items():
            if self.stale(tp, mark):
                dropped += len(msgs)
            else:
                out[tp] = msgs
        return out, dropped
