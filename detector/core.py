"""The batch entry point: decoded columns in, anomalies and verdicts out.

One `Core` holds the state of one input partition (all input topics are
co-partitioned by service). It is pure and synchronous: no IO, no clock.
`process(batch, source)` folds a batch in, advances the event-time watermark,
closes ready windows in order and lets the judge look at each; live runs and
replays drive it the same way, so they produce the same records.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from detector import state
from detector.ingest.columns import DecodedBatch
from detector.config import ConfigError, Pipeline
from detector.fleet.evidence import FleetEvidence
from detector.fleet.gate import FleetGate
from detector.fleet.summary import WindowSummary
from detector.fleet.view import FleetView
from detector.judge.blame import _names_shared_dependency
from detector.ingest.interner import Interner
from detector.judge.judge import Judge
from detector.logs.settings import LogSettings
from detector.logs.templates import LogTemplates
from detector.baselines import BaselineBank
from detector.records import Anomaly, Record, Verdict
from detector.anomaly.watch import MetricWatch
from detector.baselines.watch import SeasonalWatch, bank_configs
from detector.aggregate.series import MetricSeries, RequestSeries
from detector.ingest.timeguard import screen
from detector.aggregate.txnnames import TxnNames
from detector.aggregate.windows import WindowFacts, WindowStore


@dataclass
class CoreStats:
    events: int = 0
    rejected: int = 0
    windows_closed: int = 0
    anomalies: int = 0
    verdicts: int = 0
    deploys: int = 0
    extra: dict = field(default_factory=dict)


class Core:
    def __init__(self, pipeline: Pipeline, interner: Interner | None = None,
                 baselines: BaselineBank | None = None, partition: int = 0, partitions: int = 1) -> None:
        self.pipeline = pipeline
        self.interner = interner or Interner(max_size=pipeline.limits.max_interned_strings)
        self.requests = RequestSeries(self.interner, pipeline.limits)
        self.metrics = MetricSeries(self.interner, pipeline.limits)
        self.windows = WindowStore(pipeline.windows.width_s, pipeline.windows.lateness_s, self.requests, self.metrics,
                                   TxnNames(self.interner, pipeline.limits.max_txn_names_per_service))
        if baselines is None and pipeline.baselines.warm_start:
            # A new sidecar starts warm from baselines learnt on history (models/).
            # Under this pipeline's settings (a file of one profile for every day starts each day profile).
            baselines = BaselineBank.load(pipeline.baselines.warm_start, configs=bank_configs(pipeline))
        self.seasonal = SeasonalWatch(pipeline, self.interner, self.requests, self.metrics, baselines)
        self.metricwatch = MetricWatch(pipeline, self.interner, self.metrics)
        if baselines is not None:
            self.metricwatch.warm_from(baselines, pipeline.baselines.warm_start or "warm-start baselines")
        self.logs: LogTemplates | None = None
        if pipeline.logs.enabled:
            ver = pipeline.verification
            self.logs = LogTemplates(LogSettings(
                window_s=pipeline.windows.width_s,
                history_s=ver.baseline_s + ver.period_s + 10 * pipeline.windows.width_s,
                baseline_s=ver.baseline_s,
                max_templates_per_service=pipeline.logs.max_templates_per_service,
                max_message_chars=pipeline.logs.max_message_chars))
        self.judge = Judge(pipeline, self.interner, self.requests, self.metrics, seasonal=self.seasonal,
                           logs=self.logs)
        horizon_s = max([pipeline.verification.baseline_s] + [r.duration_s for r in pipeline.rules]) \
            + 2 * pipeline.windows.width_s
        self.history: deque[WindowFacts] = deque(maxlen=int(horizon_s // pipeline.windows.width_s) + 2)
        # A version silent for longer than every window held (and those still open) gives its
        # series to a new version of its service once the service is at its version cap.
        self.requests.retire_after_s = (self.history.maxlen + 2) * pipeline.windows.width_s \
            + pipeline.windows.lateness_s
        self.stats = CoreStats()
        self._pending_deploys: list = []
        self._pending_checks: list = []  # smoke check results, handed to the judge as their window closes
        # Called with each closed window after its log counts close and the seasonal watch
        # judged and learnt it: the report reads the expectations the watch judged it against
        # (`SeasonalWatch.expected`, made before the window was learnt).
        self.window_listeners: list[Callable[[WindowFacts], None]] = []
        # --- fleet view (detector.fleet): a window is judged once every partition summarised it ---
        self.partition, self.partitions = partition, partitions
        self.fleet: FleetView | None = None
        self.gate: FleetGate | None = None
        if pipeline.fleet.enabled:
            if pipeline.fleet.windows_kept < self.history.maxlen:
                raise ConfigError(f"fleet.windows_kept must be >= {self.history.maxlen} (the windows blame looks "
                                  f"back over), got {pipeline.fleet.windows_kept}")
            self.fleet = FleetView(partitions, pipeline.fleet.windows_kept)
            self.gate = FleetGate(self.fleet, partition, partitions, pipeline.windows.width_s)
            self.judge.fleet = FleetEvidence(self.fleet, pipeline.verification.infra_metrics,
                                             _names_shared_dependency)

    def process(self, batch: DecodedBatch, source: str | None = "default", now: float | None = None,
                close: bool = True, screened: bool = False) -> list[Record]:
        """Fold one decoded batch in; return the records it caused, in event-time order.

        `source` is the input (topic, file) whose event time moves the watermark;
        None for a deploys-only control stream: a deploy event that arrives after
        windows following it closed is judged from history (see Judge.catch_up).
        `now` is the wall clock of a live run (None in a replay). Events that
        the time guard refuses (far ahead of the stream or the clock) are moved
        to `batch.rejected` with their reason, for the caller's dead letters.
        `screened`: the caller already applied the time guard to the whole input's
        batch (a replay: `timeguard.screen`, which may also defer events to its next chunk).
        """
        if not screened:
            batch = self._guard_time(batch, source, now)
        self.stats.events += batch.accepted
        self.stats.rejected += len(batch.rejected)
        out: list[Record] = []
        ok = self.windows.add(batch, source)
        if self.logs is not None and len(batch.logs):
            logs = batch.logs if ok.all() else batch.logs.take(ok.nonzero()[0])
            self.logs.defer_batch(logs, self.interner)  # mined as its window closes (logs.pending)
        if batch.deploys:
            closed_until = self.history[-1].end if self.history else None
            # the head window waiting for the fleet is judged later, with the deploy registered
            judged = list(self.history)[:-1] if self.gate is not None and self.gate.head_ready else self.history
            for d in sorted(batch.deploys, key=lambda d: (d.ts, d.pos)):
                if closed_until is not None and d.ts < closed_until:
                    # Late: windows after it have closed. Judge them now, from history.
                    out.extend(self.judge.on_deploy(d))
                    out.extend(self.judge.catch_up(d, judged))
                else:
                    self._pending_deploys.append(d)
            self._pending_deploys.sort(key=lambda d: (d.ts, d.pos))
        if batch.checks:
            closed_until = self.history[-1].end if self.history else None
            for c in batch.checks:
                if closed_until is not None and c.ts < closed_until:
                    self.judge.smoke.add(c)  # late: weighs from the next closed window on
                else:
                    self._pending_checks.append(c)
            self._pending_checks.sort(key=lambda c: c.ts)
        if close:
            out.extend(self._advance(self.windows.close_ready()))
        self._count(out)
        return out

    def advance(self) -> list[Record]:
        """Close the windows the watermark allows (after `process(..., close=False)`)."""
        out = self._advance(self.windows.close_ready())
        self._count(out)
        return out

    def _guard_time(self, batch: DecodedBatch, source: str | None, now: float | None) -> DecodedBatch:
        seen = self.windows.max_ts
        progress = seen.get(source) if source is not None else (max(seen.values()) if seen else None)
        self.windows.late += screen(batch, progress, self.pipeline.limits.max_future_skew_s, now)
        return batch

    def finish(self, until: float | None = None, final: bool = True) -> list[Record]:
        """End of input (replay): close every open window (every window ending by `until` when given,
        so that all partitions of a replay close the same windows). `final=False` leaves `finalize`
        to the caller, once the partitions exchanged their last summaries."""
        closed = self.windows.close_ready(until) if until is not None else self.windows.close_all()
        out = self._advance(closed)
        self._count(out)
        if final:
            out.extend(self.finalize())
        return out

    def _advance(self, closed: list[WindowFacts]) -> list[Record]:
        self.seasonal.prepare(closed)  # their service rollups in one pass (the same as one by one)
        if self.gate is None:
            out: list[Record] = []
            for w in closed:
                self._prepare(w, out)
                out.extend(self.judge.on_window(w, self.history))
            return out
        cb = self.windows.closed_before
        self.gate.enqueue(closed, None if cb is None else cb * self.windows.width_s)
        return self.gate.run(self)

    def finalize(self) -> list[Record]:
        """End of input, once the fleet exchanged what it could: judge what still waits (naming
        the partitions missing), then hand the judge the checks and deploys no window reached."""
        out: list[Record] = []
        while self.gate is not None and self.gate.queue:
            out.extend(self.gate.run(self, force=True))
        for c in self._pending_checks:
            self.judge.smoke.add(c)
        self._pending_checks.clear()
        while self._pending_deploys:
            out.extend(self.judge.on_deploy(self._pending_deploys.pop(0)))
        self._count(out)
        return out

    def judge_ready(self, force: bool = False) -> list[Record]:
        """For the driver, after the fleet view took new summaries: judge the windows now complete
        (`force`: the head one without the partitions still missing; see `FleetGate.run`)."""
        out = self.gate.run(self, force) if self.gate is not None else []
        self._count(out)
        return out

    def take_fleet(self) -> list[WindowSummary]:
        """The summaries written since the last call, for the fleet topic (or the other cores)."""
        return self.gate.take() if self.gate is not None else []

    def _prepare(self, w: WindowFacts, out: list[Record]) -> None:
        """Everything a closed window does before the judge looks at it."""
        # A deploy is registered when the window holding it closes, so its
        # place among windows depends on event time, never on arrival.
        while self._pending_deploys and self._pending_deploys[0].ts < w.end:
            out.extend(self.judge.on_deploy(self._pending_deploys.pop(0)))
        while self._pending_checks and self._pending_checks[0].ts < w.end:
            self.judge.smoke.add(self._pending_checks.pop(0))
        self.history.append(w)
        self.stats.windows_closed += 1
        if self.logs is not None:
            self.logs.close_windows(w.end)
        held = {sid for sid, v in self.judge.verifications.items() if v.verifying}
        out.extend(self.seasonal.observe(w, held))
        for listener in self.window_listeners:
            listener(w)
        verifying = [sid for sid, v in self.judge.verifications.items() if v.verifying]
        out.extend(self.metricwatch.observe(w, self.seasonal.rollup, verifying))

    def _count(self, records: list[Record]) -> None:
        for r in records:
            if isinstance(r, Verdict):
                self.stats.verdicts += 1
            elif isinstance(r, Anomaly):
                self.stats.anomalies += 1

    @property
    def late_events(self) -> int:
        return self.windows.late

    def snapshot(self) -> bytes:
        """This partition's whole state as bytes, for a checkpoint (format: `detector.state`)."""
        return state.snapshot(self)

    @classmethod
    def restore(cls, pipeline: Pipeline, data: bytes, partition: int = 0, partitions: int = 1) -> "Core":
        """A core that continues exactly where the one that wrote `data` stopped (as partition
        `partition` of `partitions`: the fleet view's shape is the live topic's, not the checkpoint's).

        Raises `state.StateError` when `data` is truncated, corrupt, of another
        format version or written under incompatible pipeline settings.
        """
        core = state.restore(cls, pipeline, data, partition, partitions)
        if core.gate is not None:
            # This partition's part of the fleet view, from the windows the checkpoint holds
            # (other partitions' parts come back from the fleet topic).
            core.gate.republish(core, core.history)
        return core
