"""Seasonal watch: service-level series learnt from every closed window.

Owns a partition's `BaselineBank` (volume, error rate, latency quantiles,
completed transactions per service). Each
closed window is tested against the expectation made before it was seen and
then learnt. A sustained departure of volume from what is expected for this time of day
becomes an anomaly without a deploy (a surge is `info`, a drop a `warning`);
the judge asks it what volume to expect while a deploy is verified. Metric
series belong to the metric watch (`detector.anomaly`), which also takes
this window's service-level series from `rollup`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detector import stats

from detector.baselines.bank import BaselineBank, latency_signal
from detector.baselines.fused import update_signals
from detector.baselines.rollup import Rollup, rollup_many, rollup_one
from detector.baselines.settings import BaselineConfig, Expectation
from detector.config import Pipeline
from detector.ingest.interner import Interner
from detector.records import Anomaly
from detector.aggregate.series import MetricSeries, RequestSeries
from detector.aggregate.windows import WindowFacts

SEP = "\x1f"  # cannot occur in names on the wire


@dataclass(frozen=True)
class ServiceRollup:
    """One closed window's service-level series, for the metric watch (interned service ids, sorted)."""

    services: np.ndarray
    requests: np.ndarray
    errors: np.ndarray
    latency_p95_ms: np.ndarray  # nan where no latency was recorded


@dataclass(frozen=True)
class WindowExpectations:
    """What one closed window's service series were judged against: the expectations made
    before the window was learnt, as `observe` computed them (derived, not part of the state).
    Rows are the window's services (`ServiceRollup.services`)."""

    window: WindowFacts
    services: np.ndarray  # interned service ids, sorted
    index: np.ndarray  # bank index of each
    known: np.ndarray  # bool: in the bank before this window (a service new in it had no expectation)
    learnt: np.ndarray  # bool: learnt (not held by a deploy under verification, not inside a departure)
    volume: Expectation
    error_rate: Expectation  # at the window's requests where learnt; rows not learnt: at the typical weight
    has_latency: np.ndarray  # bool: the window recorded latency for the service
    latency: Expectation | None  # of the rows with latency (None when no row has any)


@dataclass
class _Episode:
    run: int = 0
    open: bool = False


def bank_configs(pipeline: Pipeline, quantile: float = 0.95) -> dict[str, BaselineConfig]:
    """The baseline settings of every signal the watch learns, from the pipeline's [baselines]."""
    b = pipeline.baselines
    bank = BaselineBank.for_signals(
        (quantile,), slot_s=b.slot_s, window_s=pipeline.windows.width_s,
        level_half_life_s=b.level_half_life_s, min_history_s=b.min_history_s,
        seasonal_min_days=b.seasonal_min_days, timezone=b.timezone, day_profiles=b.day_profiles)
    return {name: base.config for name, base in bank.baselines.items()}


class SeasonalWatch:
    def __init__(self, pipeline: Pipeline, interner: Interner, requests: RequestSeries, metrics: MetricSeries,
                 bank: BaselineBank | None = None, min_score: float = 6.0, sustain_windows: int = 3) -> None:
        self.p = pipeline
        self.interner = interner
        self.requests = requests
        self.metrics = metrics
        self.quantile = 0.95
        self.bank = bank or BaselineBank(bank_configs(pipeline, self.quantile))
        self.min_score = min_score
        self.sustain = sustain_windows
        self._episodes: dict[tuple[str, str], _Episode] = {}
        # memo (derived data, rebuilt after a restore): interned id -> bank index
        self._svc_index: dict[int, int] = {}
        # memo (derived, dropped whenever the bank learns): the volume expected at one window
        # start for every known service, from one vectorised `expect` (see `_volume_at`)
        self._volume_memo: tuple[float, dict[int, int], object, np.ndarray] | None = None
        self.rollup: ServiceRollup | None = None  # the last window's, derived (not part of the state)
        self.expected: WindowExpectations | None = None  # the last window's, derived (not part of the state)
        self._ahead: dict[int, tuple[WindowFacts, Rollup]] = {}  # window id -> its rollup (`prepare`)

    def to_state(self) -> dict:
        """Learnt state for a core snapshot: the bank as bytes and the departure episodes."""
        return {"bank": self.bank.to_bytes(),
                "episodes": [[kind, key, ep.run, ep.open] for (kind, key), ep in self._episodes.items()]}

    def load_state(self, state: dict) -> None:
        """Inverse of `to_state`; a damaged bank raises `baselines.BaselineFormatError`."""
        episodes = {}
        for kind, key, run, is_open in state["episodes"]:
            if not (isinstance(kind, str) and isinstance(key, str) and type(run) is int and type(is_open) is bool):
                raise ValueError(f"seasonal episode should be [str, str, int, bool], got {[kind, key, run, is_open]!r}")
            episodes[(kind, key)] = _Episode(run, is_open)
        # Under this pipeline's settings: a snapshot of one profile for every day continues as
        # each day profile's start; another timezone or slot width is refused, naming the setting.
        configs = {name: b.config for name, b in self.bank.baselines.items()}
        self.bank = BaselineBank.from_bytes(state["bank"], source="seasonal baselines in the core snapshot",
                                            configs=configs)
        self._episodes = episodes
        self._svc_index = {}
        self._volume_memo = None

    def _service_keys(self, services: np.ndarray) -> np.ndarray:
        """Bank index of each service (interned id), memoised: names are built once per service."""
        cache = self._svc_index
        missing = [s for s in services.tolist() if s not in cache]
        if missing:
            idx = self.bank.series_index([f"svc{SEP}{self.interner.lookup(s)}" for s in missing])
            cache.update(zip(missing, idx.tolist()))
        return np.asarray([cache[s] for s in services.tolist()], dtype=np.int64)

    def prepare(self, windows: Sequence[WindowFacts]) -> None:
        """Compute the service rollups of windows closed together in one pass (`rollup_many`),
        for their `observe` calls to come (derived data: not part of the state)."""
        if len(windows) < 2:
            return
        if len(self._ahead) > 4 * len(windows):  # windows prepared but never observed: let them go
            self._ahead.clear()
        for w, r in zip(windows, rollup_many(windows, self.requests.service, self.quantile)):
            self._ahead[id(w)] = (w, r)  # holding the window keeps its id from being reused

    def observe(self, w: WindowFacts, held: frozenset[int] | set[int] = frozenset()) -> list[Anomaly]:
        """Test this window against expectations, learn it, return sustained departures.

        Services in `held` (interned ids: a deploy of theirs is under verification) and
        services inside a volume departure are tested but not learnt (weight 0): an
        incident or a bad release must not become the new normal of the baseline it is
        judged against."""
        out: list[Anomaly] = []
        self.rollup = self.expected = None
        self._volume_memo = None  # the bank learns below
        ahead = self._ahead.pop(id(w), None)
        r = ahead[1] if ahead is not None and ahead[0] is w else \
            rollup_one(w, self.requests.service, self.quantile)
        services, n, err, txn, p95 = r
        if len(services):
            self.rollup = ServiceRollup(services, n, err, p95)
            n_keys = self.bank.n_keys  # before this window's new services are registered
            idx = self._service_keys(services)
            learn = self._learning(services, held)
            signals = [self.bank["volume"], self.bank["error_rate"], self.bank["transactions"]]
            rows = [(idx, w.start, n, learn), (idx, w.start, err / np.maximum(n, 1), n * learn),
                    (idx, w.start, txn, learn)]
            has_lat = np.isfinite(p95)
            if has_lat.any():
                signals.append(self.bank[latency_signal(self.quantile)])
                rows.append((idx[has_lat], w.start, p95[has_lat], learn[has_lat]))
            exp = update_signals(signals, rows)  # one vectorised step (fused.py), as these updates in turn
            vol = exp[0]
            self.expected = WindowExpectations(w, services, idx, idx < n_keys, learn > 0, vol, exp[1], has_lat,
                                               exp[3] if len(exp) > 3 else None)
            out.extend(self._volume_anomalies(w, services, n, vol))
        return out

    def _learning(self, services: np.ndarray, held) -> np.ndarray:
        """Weight per service: 0 while held (deploy under verification) or inside a volume departure."""
        learn = np.ones(len(services))
        if not held and not self._episodes:
            return learn
        for i, s in enumerate(services.tolist()):
            ep = self._episodes.get(("volume", self.interner.lookup(s)))
            if s in held or (ep is not None and ep.open):
                learn[i] = 0.0
        return learn

    def _volume_anomalies(self, w: WindowFacts, services: np.ndarray, n: np.ndarray, exp) -> list[Anomaly]:
        out = []
        ready = exp.ready
        if not ready.any():
            return out
        var = np.where(np.isfinite(exp.std), exp.std ** 2, np.inf)
        dev = stats.count_deviation_array(n, np.where(ready, exp.mean, 1.0), np.where(ready, var, 1.0),
                                          direction="both")
        for i in range(len(services)):
            name = self.interner.lookup(int(services[i]))
            hit = bool(ready[i]) and float(dev.score[i]) >= self.min_score
            ev = self._episode(("volume", name), hit)
            if ev:
                surge = n[i] > exp.mean[i]
                out.append(Anomaly(
                    ts=w.end, service=name, endpoint=None, version=None, signal="volume", observed=float(n[i]),
                    expected=float(exp.mean[i]), score=float(dev.score[i]), severity="info" if surge else "warning",
                    window_start=w.start, window_end=w.end, deploy_id=None,
                    detail={"direction": "surge" if surge else "drop", "seasonal": bool(exp.seasonal[i]),
                            "expected_std": float(exp.std[i]), "sustained_windows": self.sustain}).with_id())
        return out

    def _episode(self, key: tuple[str, str], hit: bool) -> bool:
        """True once per episode: when a departure has held for `sustain` windows."""
        ep = self._episodes.get(key)
        if ep is None:
            if not hit:
                return False
            ep = self._episodes[key] = _Episode()
        if hit:
            ep.run += 1
            if ep.run >= self.sustain and not ep.open:
                ep.open = True
                return True
            return False
        ep.run = 0
        ep.open = False
        return False

    def expected_volume(self, service: int, starts: list[float]) -> tuple[float, float, bool]:
        """Expected requests of `service` over windows starting at `starts`: mean, variance, ready."""
        mean, var, ready, _seasonal = self.expected_volume_detail(service, starts)
        return mean, var, ready

    def expected_volume_detail(self, service: int, starts: list[float]) -> tuple[float, float, bool, bool]:
        """As `expected_volume`, plus whether the time-of-day profile (not only recent level) was used."""
        if len(starts) == 1 and service in self._svc_index:
            return self._volume_at(service, float(starts[0]))
        return self._volume_over(service, starts)

    def _volume_over(self, service: int, starts: list[float]) -> tuple[float, float, bool, bool]:
        """`expected_volume_detail` asked of the bank for this service alone."""
        idx = self._service_keys(np.array([service]))
        exp = self.bank["volume"].expect(np.repeat(idx, len(starts)), np.asarray(starts))
        if not exp.ready.all():
            return float("nan"), float("nan"), False, False
        return float(exp.mean.sum()), float(_span_variance(exp.std, exp.mean_std).sum()), True, \
            bool(exp.seasonal.all())

    def _volume_at(self, service: int, start: float) -> tuple[float, float, bool, bool]:
        """`expected_volume_detail` of one window start, answered for every known service at once.

        The fleet summary asks each service of each closed window in turn; one `expect` over all
        services of the partition costs about what one service's did. Rows of `expect` are
        independent (element-wise arithmetic), so each answer is bit for bit the one-service answer.
        """
        memo = self._volume_memo
        if memo is None or memo[0] != start or service not in memo[1]:
            rows = {sid: i for i, sid in enumerate(self._svc_index)}
            idx = np.fromiter(self._svc_index.values(), np.int64, len(rows))
            exp = self.bank["volume"].expect(idx, np.full(len(idx), start))
            memo = self._volume_memo = (start, rows, exp, None)
        _start, rows, exp, _ = memo
        i = rows[service]
        if not exp.ready[i]:
            return float("nan"), float("nan"), False, False
        var = _span_variance(exp.std[i:i + 1], exp.mean_std[i:i + 1])
        return float(exp.mean[i:i + 1].sum()), float(var.sum()), True, bool(exp.seasonal[i])


def _span_variance(std: np.ndarray, mean_std: np.ndarray) -> np.ndarray:
    """The variance of a sum over windows, as one element (an array of one).

    The windows' noise is independent; the uncertainty of the expectation (level,
    profile) is shared by all of them: the variance of the sum adds the first and the
    square of the summed second.
    """
    noise = np.maximum(std ** 2 - mean_std ** 2, 0.0)
    return np.array([noise.sum() + mean_std.sum() ** 2])
