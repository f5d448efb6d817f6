"""How the sidecar stops (a mixin of `Sidecar`): final checkpoint and commit, then the clients closed.

All within kafka.shutdown_timeout_s; a second stop signal skips the final
checkpoint (the next owner re-reads from the last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from detector.runtime.failures import RunFailure, short_error


class Shutdown:
    """`_shutdown` and its steps; the state they act on lives on `Sidecar`."""

    async def _shutdown(self) -> None:
        """Final checkpoint and commit within kafka.shutdown_timeout_s (none when hurried), then close."""
        deadline = time.monotonic() + self.k.shutdown_timeout_s
        self._closing = True
        final = "not needed"
        if self.prober is not None:
            # the prober first: no new check results while the last checkpoint is written
            await self._close("smoke prober stop", self.prober.stop(min(2.0, self.k.shutdown_timeout_s)), 2.5)
            await self._close("checks producer stop", self._check_producer and self._check_producer.stop, 1.0)
            self.log.info("smoke prober stopped", **vars(self.prober.stats))
        if self.consumer is not None and self.parts:
            self.log.info("stopping: final checkpoint and commit", partitions=sorted(self.parts),
                          within_s=self.k.shutdown_timeout_s)
            final = "written"
            step = asyncio.ensure_future(self._final_checkpoint())
            hurry = asyncio.ensure_future(self.hurry.wait())
            try:
                await asyncio.wait({step, hurry}, timeout=max(0.5, deadline - time.monotonic() - 1.0),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                hurry.cancel()
                if not step.done():
                    step.cancel()
                    final = "skipped (stopped again)" if self.hurry.is_set() else "timed out"
                with contextlib.suppress(BaseException):
                    await step
            if step.done() and not step.cancelled() and step.exception() is not None:
                final = f"failed: {short_error(step.exception())}"
            if final != "written":
                # Nothing is lost: the next owner restores the last checkpoint and re-reads from its offsets.
                self.log.warning("final checkpoint not written; the next owner re-reads from the last one",
                                 outcome=final)
        elif self.consumer is None:
            self.log.info("stopping")
        # Closing says goodbye to the broker (leave the group, flush); pointless to wait for when it
        # does not answer or the user asked twice.
        sinks_s = 0.5 if self.hurry.is_set() else max(1.0, min(2.0, deadline - time.monotonic()))
        close_s = 0.5 if not self.probe.reachable else sinks_s
        if self._fleet_task is not None:
            self._fleet_task.cancel()
            await self._close("fleet reader", asyncio.wait({self._fleet_task}), close_s)
        await asyncio.gather(*(self._close(what, op, t) for what, op, t in
                               (("fleet consumer stop", self.fleet and self.fleet.stop, close_s),
                                ("consumer stop", self.consumer and self.consumer.stop, close_s),
                                ("producer stop", self.out.producer and self.out.producer.stop, close_s),
                                ("sinks", self.sinks.close(sinks_s), sinks_s + 0.5))))
        self.summary.update(final_checkpoint=final, uptime_s=round(time.monotonic() - self._t_start, 1))
        self.log.info("stopped", **self.summary, sinks=self.sinks.stats(),
                      **({"fleet": self.fleet.stats} if self.fleet is not None else {}))

    def done_line(self) -> str:
        """What this run did, in one line for the terminal."""
        s = self.summary
        return (f"stopped after {s.get('uptime_s', 0):.0f} s: {s['events']:,} events read ({s['rejected']:,} to "
                f"the dead-letter topic), {s['anomalies']:,} anomalies and {s['verdicts']:,} verdicts produced, "
                f"{s['checkpoints']:,} checkpoints; final checkpoint {s.get('final_checkpoint', 'not needed')}")

    async def _final_checkpoint(self) -> None:
        async with self._lock:
            postponed = [p for p in sorted(self.parts) if not await self._checkpoint(p)]
            await self._publish_actions()
            await self.out.drain()
        if postponed:
            raise RunFailure(f"sinks still delivering the records of partitions {postponed}")

    async def _close(self, what: str, op, timeout_s: float) -> None:
        if op is None:
            return
        try:
            await asyncio.wait_for(op() if callable(op) else op, timeout_s)
        except BaseException as e:  # a dead broker must not keep the process from exiting
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self.log.warning("close timed out", operation=what, error=short_error(e))
