"""A core's closed windows wait here until the fleet view holds every partition's summary.

The gate keeps, in order, the windows a core closed and its horizons (every
window before a horizon is closed). It summarises the head window, publishes
the summary (to its own view, and to the outbox for the other partitions) and
lets the judge look at it once the view is complete for it; until then no
later window is prepared, so the judge sees the state it would see with one
partition. Forced (the wait passed `fleet.max_wait_s`, or the input ended),
the head is judged without the missing partitions and its records name them.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterable

from detector.fleet.summarize import service_totals_many, summarize
from detector.fleet.summary import WindowSummary
from detector.fleet.view import FleetView
from detector.aggregate.windows import WindowFacts

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
        """Judge the queued windows, in order, while the view holds them complete (the head
        one regardless when `force`: its records get `detail.fleet_missing`)."""
        out: list = []
        # window id -> totals computed with the windows queued with it, for this call only (a
        # version's series may be renamed by input that arrives between calls)
        ahead: dict[int, tuple] = {}
        while self.queue:
            head = self.queue[0]
            if not isinstance(head, WindowFacts):  # a horizon
                self.queue.popleft()
                if head > self._published_end:
                    self.publish(WindowSummary(self.partition, self.partitions, head - self.width_s, head, ()))
                continue
            if not self.head_ready:
                core._prepare(head, out)
                held = ahead.get(id(head))
                if held is None or held[1] != _verifying(core):  # none yet, or a verification opened or ended
                    self._totals_ahead(core, ahead)
                self.publish(self.summary(core, head, ahead))
                self.head_ready = True
            missing = self.view.missing(head.end)
            if missing and not force:
                break
            self.view.upto = head.end  # what the fleet published beyond this window stays unseen
            try:
                recs = core.judge.on_window(head, core.history)
            finally:
                self.view.upto = float("inf")
            if missing:
                for r in recs:
                    if isinstance(getattr(r, "detail", None), dict):
                        r.detail["fleet_missing"] = missing
            out.extend(recs)
            self.queue.popleft()
            self.head_ready = False
            force = False
        return out

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
