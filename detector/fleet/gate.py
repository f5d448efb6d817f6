"""A core's closed windows wait here until the fleet view holds every partition's summary.

The gate keeps, in order, the windows a core closed and its horizons (every
window before a horizon is closed). It summarises the head window, publishes
the summary (to its own view, and to the outbox for the other partitions) and
lets the judge look at it once the view is complete for it; until then no
later window is prepared, so the judge sees the state it would see with one
partition. Before a window (or at a horizon) the partition says it summarised
everything before it, and once every partition said so, it closes as an empty
window of its own (no requests, logs or metrics) every earlier window some
partition had events in: with one partition, every window any service had
events in is closed and judged for every service. Forced (the wait passed
`fleet.max_wait_s`, or the input ended), the head is judged without the
missing partitions and its records name them.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterable

from detector.fleet.summarize import service_totals_many, summarize
from detector.fleet.summary import WindowSummary
from detector.fleet.view import FleetView
from detector.aggregate.windows import WindowFacts, empty_window

if TYPE_CHECKING:
    from detector.core import Core
    from detector.records import Record


class FleetGate:
    def __init__(self, view: FleetView, partition: int, partitions: int, width_s: float) -> None:
        self.view = view
        self.partition, self.partitions, self.width_s = partition, partitions, width_s
        self.queue: deque = deque()  # closed windows (WindowFacts) and horizon ends (float), in order
        self.head_ready = False  # the head window is prepared and summarised, and waits for the fleet
        self.outbox: list[WindowSummary] = []  # summaries for the other partitions, in order
        self._published_end = float("-inf")
        self._templates_sent: set[str] = set()  # bounded by the log template caps

    def enqueue(self, closed: Iterable[WindowFacts], horizon: float | None) -> None:
        self.queue.extend(closed)
        if horizon is not None:
            self.queue.append(horizon)

    def run(self, core: "Core", force: bool = False) -> list["Record"]:
        """Judge the queued windows, in order, while the view holds them complete. `force`: the
        head regardless (its records get `detail.fleet_missing`); a head window not prepared yet
        is only prepared and published (after the fleet's windows before it this partition knows of)."""
        out: list = []
        # window id -> totals computed with the windows queued with it, for this call only (a
        # version's series may be renamed by input that arrives between calls)
        ahead: dict[int, tuple] = {}
        while self.queue:
            head = self.queue[0]
            if not isinstance(head, WindowFacts):  # a horizon: every window before it is closed
                if head > self._published_end:
                    self.publish(WindowSummary(self.partition, self.partitions, head - self.width_s, head, ()))
                if not self._fleet_windows(core, head, force, out):
                    break
                self.queue.popleft()
                force = False
                continue
            if not self.head_ready:
                if self.partitions > 1 and head.start > self._published_end:
                    # none of this partition's windows before this one is left to summarise
                    self.publish(WindowSummary(self.partition, self.partitions, head.start - self.width_s,
                                               head.start, ()))
                if not self._fleet_windows(core, head.start, force, out):
                    break
                core._prepare(head, out)
                self._moved(core)
                held = ahead.get(id(head))
                if held is None or held[1] != _verifying(core):  # none yet, or a verification opened or ended
                    self._totals_ahead(core, ahead)
                self.publish(self.summary(core, head, ahead))
                self.head_ready = True
                if force:  # judged (forced again if need be) once the fleet heard of it: a local
                    break  # partition that follows this one closes it too, and is not missing
            missing = self.view.missing(head.end)
            if missing and not force:
                break
            self._judge(core, head, missing, out)
            self.queue.popleft()
            self.head_ready = False
            force = False
        return out

    def _judge(self, core: "Core", w: WindowFacts, missing: list[int], out: list) -> None:
        self.view.upto = w.end  # what the fleet published beyond this window stays unseen
        try:
            recs = core.judge.on_window(w, core.history)
        finally:
            self.view.upto = float("inf")
        if missing:
            for r in recs:
                if isinstance(getattr(r, "detail", None), dict):
                    r.detail["fleet_missing"] = missing
        out.extend(recs)

    def _fleet_windows(self, core: "Core", until: float, force: bool, out: list) -> bool:
        """Close, prepare and judge as empty windows of this partition the fleet's windows before
        `until` that it has not closed (some partition had events in them), in order, as far as
        every partition has summarised. True once all before `until` are known (when `force`:
        those the partitions that summarised them published; the others count as absent)."""
        if self.partitions == 1:  # the fleet's windows are this partition's own
            return True
        while True:
            last = core.history[-1].end if core.history else float("-inf")
            known = min(self.view.horizon.get(p, float("-inf")) for p in range(self.partitions))
            reach = until if force else min(until, known)
            e = self.view.next_window(last, reach)
            if e is None:
                return force or known >= until
            w = empty_window(e - self.width_s, e, len(core.requests), len(core.metrics))
            core._prepare(w, out)
            self._moved(core)
            self._judge(core, w, self.view.missing(e), out)

    def _moved(self, core: "Core") -> None:
        """The view keeps every window from the look-back before this partition's newest one on."""
        if self.partitions > 1 and core.history:
            self.view.floor = core.history[-1].end - self.view.windows_kept * self.width_s

    def summary(self, core: "Core", w: WindowFacts, ahead: dict | None = None) -> WindowSummary:
        # a core that is the whole fleet publishes nothing: what only the wire carries is not computed
        return summarize(core, w, self.partition, self.partitions, self._templates_sent, wire=self.partitions > 1,
                         ahead=ahead)

    def _totals_ahead(self, core: "Core", ahead: dict) -> None:
        """The queued windows' service totals in one pass (`service_totals_many`), with the
        versions under verification now; `summarize` uses a window's only while those stay."""
        windows = [w for w in self.queue if isinstance(w, WindowFacts)]
        if len(windows) < 2:
            return
        verifying = _verifying(core)
        rs = core.requests
        for w, (services, totals) in zip(windows, service_totals_many(windows, rs.service, rs.version, verifying)):
            ahead[id(w)] = (w, verifying, services, totals)

    def republish(self, core: "Core", windows: Iterable[WindowFacts]) -> None:
        """After a restore: this partition's part of the view again, from the windows the
        checkpoint holds (not for the outbox: the fleet topic has them). The templates already
        published stay as the checkpoint recorded them, when it did."""
        sent: set[str] = set()
        self._moved(core)
        for w in windows:
            self.publish(summarize(core, w, self.partition, self.partitions, sent, wire=False))
        self.outbox.clear()
        if not self._templates_sent:
            self._templates_sent = sent

    def publish(self, s: WindowSummary) -> None:
        self._published_end = max(self._published_end, s.end)
        self.view.add(s)
        if self.partitions > 1:  # a core that is the whole fleet has no one to tell
            self.outbox.append(s)

    def take(self) -> list[WindowSummary]:
        out, self.outbox = self.outbox, []
        return out


def _verifying(core: "Core") -> dict[int, tuple[int, ...]]:
    """The versions a fleet summary leaves out: each open verification's new version, by service."""
    return {o.service: (o.version,) for o in core.judge.verifications.values() if o.open}
