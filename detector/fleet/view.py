"""The fleet's recent windows as every sidecar sees them: bounded, partition-complete.

`FleetView` holds the summaries of the last `windows_kept` window ends, from
every partition, and each partition's horizon (the end of the newest window it
has summarised: it has closed every window before). A window is complete when
every partition's horizon reached its end; a partition that published nothing
for a window had no traffic in it. Memory: at most `windows_kept` windows x the
services of the fleet (each summary is a few counts, a sparse latency sketch
and its metric levels); over several partitions, plus the windows the fleet
published beyond the core's newest window (it closes them as empty windows when
it has none of its own: `FleetGate`), none of them dropped before it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from detector.aggregate import sketch
from detector.fleet.summary import ServiceSummary, TemplateNote, WindowSummary


@dataclass(frozen=True)
class Totals:
    """A service's established traffic over a time range: what blame's comparison reads."""

    total_n: int
    total_errors: int
    total_txn: int
    whole: sketch.Sketch


class FleetView:
    def __init__(self, partitions: int, windows_kept: int) -> None:
        if partitions < 1 or windows_kept < 1:
            raise ValueError("a fleet view needs at least one partition and one window")
        self.partitions = partitions
        self.windows_kept = windows_kept
        self._windows: dict[float, dict[int, WindowSummary]] = {}  # window end -> partition -> summary
        self.horizon: dict[int, float] = {}  # partition -> newest window end summarised
        # The newest window end readers see: while the judge looks at a window, the end of that
        # window. Partitions that went on (live: another sidecar ahead, or the retained topic
        # after a restart) must not change what it decides; a replay never holds them.
        self.upto = float("inf")
        # Windows ending after this stay whatever their number (the gate sets it to `windows_kept`
        # windows before its core's newest window: what it still reads or closes). Infinite: the
        # newest `windows_kept` windows stay (one partition: no window is ahead of the core).
        self.floor = float("inf")

    def add(self, s: WindowSummary) -> bool:
        """Take one summary (idempotent: the same one twice is one). False when it is for
        another partition count or older than the windows kept."""
        if s.partitions != self.partitions:
            return False
        if s.end > self.horizon.get(s.partition, float("-inf")):
            self.horizon[s.partition] = s.end
        ends = self._windows
        if len(ends) >= self.windows_kept and s.end not in ends and s.end < min(ends) and s.end <= self.floor:
            return False
        if s.services:
            ends.setdefault(s.end, {})[s.partition] = s
        else:
            ends.setdefault(s.end, {})
        while len(ends) > self.windows_kept and min(ends) <= self.floor:
            del ends[min(ends)]
        return True

    def next_window(self, after: float, upto: float) -> float | None:
        """The end of the first window in (after, upto] some partition had events in, or None."""
        ends = [e for e, parts in self._windows.items() if after < e <= upto and parts]
        return min(ends) if ends else None

    def missing(self, end: float) -> list[int]:
        """Partitions that have not yet summarised the window ending at `end`."""
        return [p for p in range(self.partitions) if self.horizon.get(p, float("-inf")) < end]

    def complete(self, end: float) -> bool:
        return not self.missing(end)

    def summaries(self, start: float, end: float) -> Iterator[ServiceSummary]:
        """Every service summary of windows inside [start, end), oldest window first."""
        for _start, _end, s in self.windows(start, end):
            yield s

    def windows(self, start: float, end: float) -> Iterator[tuple[float, float, ServiceSummary]]:
        """(window start, window end, service summary) of windows inside [start, end), oldest first."""
        end = min(end, self.upto)
        for e in sorted(self._windows):
            if e <= end and e > start:
                parts = self._windows[e]
                for p in sorted(parts):
                    for s in parts[p].services:
                        yield parts[p].start, parts[p].end, s

    def totals(self, service: str, start: float, end: float) -> Totals:
        n = err = txn = 0
        lat = []
        for s in self.summaries(start, end):
            if s.service == service:
                n, err, txn = n + s.requests, err + s.errors, txn + s.txn
                lat.append(s.latency())
        return Totals(n, err, txn, sketch.merge(*lat))

    def services(self, start: float, end: float) -> list[str]:
        """Services with established traffic in [start, end)."""
        return sorted({s.service for s in self.summaries(start, end) if s.requests})

    def templates(self) -> list[tuple[str, TemplateNote]]:
        """(service, template) of every template note held, in window order."""
        return [(s.service, t) for s in self.summaries(float("-inf"), float("inf")) for t in s.templates]

    def size(self) -> tuple[int, int]:
        """(windows held, service summaries held)."""
        return len(self._windows), sum(len(p.services) for w in self._windows.values() for p in w.values())
