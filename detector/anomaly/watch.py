"""Metric watch: the core's component that runs the metric detector over every series.

Two families of series, each with its own `MetricDetector`:

* **metric series** (service, name, labels): every closed window with
  samples, its value the mean of those samples. A series' index is the
  partition's metric series index (`series.MetricSeries`), which the core
  snapshot restores, so the detector's arrays line up after a restore.
* **service series**: each service's error rate and p95 latency per closed
  window (from `SeasonalWatch.rollup`), in windows with at least
  `tests.min_requests` requests (error rates on a square-root scale, latency
  on a log scale), and only while no deploy of the service is
  being verified: the judge owns those windows, and they are not learnt
  (a bad deploy must not become the service's normal). Volume stays with the
  seasonal watch's count model (negative binomial), which fits counts better.

An episode's onset becomes one anomaly record carrying the score (`metric`,
`error_rate` or `latency` with detail.quantile 0.95), deploy_id null. A
caller that wants every series-window's score (`detector replay --scores`)
sets `collect_scores` and drains `take_scores()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np

from detector.anomaly.detector import MetricDetector, Scored
from detector.config import Pipeline
from detector.ingest.interner import Interner
from detector.records import Anomaly
from detector.baselines.bank import BaselineBank
from detector.baselines.files import BaselineFormatError
from detector.baselines.watch import ServiceRollup
from detector.aggregate.series import MetricSeries
from detector.aggregate.windows import WindowFacts

SEASONS = ("none", "daily", "weekly")
SERVICE_SIGNALS = ("error_rate", "latency")
# Each service signal is modelled on the scale where its noise is closest to additive and normal:
# error rates on a square-root scale (variance-stabilising for counts: binomial noise at low
# rates has a long right tail), latency on a log scale (multiplicative noise). Records report
# the observed value and the expectation transformed back.
_TO_MODEL = {"error_rate": np.sqrt, "latency": np.log}
_FROM_MODEL = {"error_rate": np.square, "latency": np.exp}
_SEP = "\x1f"  # cannot occur in names on the wire
WARM = "metric_detector"  # the attachment of a warm-start baselines file that holds what the detectors learnt


class MetricWatch:
    def __init__(self, pipeline: Pipeline, interner: Interner, metrics: MetricSeries) -> None:
        self.settings = pipeline.metrics
        self.min_requests = pipeline.tests.min_requests
        self.interner = interner
        self.metrics = metrics
        self.detector = MetricDetector(pipeline.metrics)
        self.service_detector = MetricDetector(pipeline.metrics)
        self.service_keys: list[str] = []  # service series index -> "service<SEP>signal"
        self._service_index: dict[str, int] = {}
        self.collect_scores = False
        self._scores: list[dict] = []
        # warm start: family -> (series key -> row of the saved arrays, saved arrays), consumed as series appear
        self._warm: dict[str, tuple[dict[str, int], dict[str, np.ndarray]]] = {}
        self._warm_source = "warm-start baselines file"

    def observe(self, w: WindowFacts, rollup: ServiceRollup | None = None,
                verifying: Collection[int] = ()) -> list[Anomaly]:
        """Score and learn every series with data in `w`; return the episodes that open.

        `rollup` is the window's service-level series; services in `verifying`
        (interned ids with a deploy under verification) are skipped.
        """
        if not self.settings.enabled:
            return []
        out = self._metric_series(w)
        if rollup is not None and len(rollup.services):
            out.extend(self._service_series(w, rollup, verifying))
        return out

    def _metric_series(self, w: WindowFacts) -> list[Anomaly]:
        m = np.flatnonzero(w.metric_n > 0)
        if not len(m):
            return []
        y = w.metric_sum[m] / w.metric_n[m]
        if self._warm.get("metrics"):
            new = self._unseen(self.detector, m)
            if len(new):
                self._warm_start("metrics", self.detector, new, self._metric_keys(new))
        r = self.detector.step(m, np.full(len(m), w.start), y)
        out: list[Anomaly] = []
        if not (r.onset.any() or self.collect_scores):
            return out
        ms, mn, ml = self.metrics.arrays()
        look = self.interner.lookup
        for j in (range(len(m)) if self.collect_scores else np.flatnonzero(r.onset).tolist()):
            i = int(m[j])
            service, name, labels = look(int(ms[i])), look(int(mn[i])), look(int(ml[i])) or ""
            self._score_row(w, service, name, labels, float(y[j]), r, j)
            if r.onset[j]:
                out.append(self._record(w, service, "metric", float(y[j]), r, j,
                                        {"metric": name, "labels": labels, "series": f"{name}{{{labels}}}"}))
        return out

    def _service_series(self, w: WindowFacts, rollup: ServiceRollup, verifying: Collection[int]) -> list[Anomaly]:
        names, keys, values = [], [], []
        busy = set(verifying)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = rollup.errors / rollup.requests
        for j, sid in enumerate(rollup.services.tolist()):
            if sid in busy or rollup.requests[j] < self.min_requests:
                continue
            name = self.interner.lookup(int(sid))
            for signal, value in zip(SERVICE_SIGNALS, (rate[j], rollup.latency_p95_ms[j])):
                if np.isfinite(value) and value >= 0 and not (signal == "latency" and value == 0):
                    names.append((name, signal))
                    keys.append(f"{name}{_SEP}{signal}")
                    values.append(float(value))
        if not keys:
            return []
        idx = np.asarray([self._key_index(k) for k in keys], dtype=np.int64)
        if self._warm.get("services"):
            new = self._unseen(self.service_detector, idx)
            if len(new):
                self._warm_start("services", self.service_detector, new, [self.service_keys[i] for i in new])
        y = np.asarray(values)
        signals = [s for _name, s in names]
        model_y = np.asarray([_TO_MODEL[s](v) for s, v in zip(signals, values)])
        r = self.service_detector.step(idx, np.full(len(idx), w.start), model_y)
        expected = np.asarray([_FROM_MODEL[s](e) for s, e in zip(signals, r.expected.tolist())])
        r = dataclasses.replace(r, expected=expected)
        out: list[Anomaly] = []
        for j in (range(len(idx)) if self.collect_scores else np.flatnonzero(r.onset).tolist()):
            service, signal = names[j]
            self._score_row(w, service, "latency_p95" if signal == "latency" else signal, "", float(y[j]), r, j,
                            kind="service")
            if r.onset[j]:
                detail = {"series": signal}
                if signal == "latency":
                    detail["quantile"] = 0.95
                out.append(self._record(w, service, signal, float(y[j]), r, j, detail))
        return out

    def _key_index(self, key: str) -> int:
        i = self._service_index.get(key)
        if i is None:
            i = self._service_index[key] = len(self.service_keys)
            self.service_keys.append(key)
        return i

    def _record(self, w: WindowFacts, service: str, signal: str, value: float, r: Scored, j: int,
                detail: dict) -> Anomaly:
        detail.update({"z": float(r.z[j]), "seasonal": SEASONS[int(r.seasonal[j])],
                       "threshold": self.settings.score_threshold})
        return Anomaly(ts=w.end, service=service, endpoint=None, version=None, signal=signal, observed=value,
                       expected=float(r.expected[j]), score=float(r.score[j]), severity="warning",
                       window_start=w.start, window_end=w.end, deploy_id=None, detail=detail).with_id()

    def _score_row(self, w: WindowFacts, service: str, name: str, labels: str, value: float, r: Scored, j: int,
                   kind: str = "metric") -> None:
        if self.collect_scores:
            self._scores.append({"window_start": w.start, "window_end": w.end, "service": service, "kind": kind,
                                 "metric": name, "labels": labels, "value": value,
                                 "expected": float(r.expected[j]), "z": float(r.z[j]), "score": float(r.score[j]),
                                 "ready": bool(r.ready[j]), "anomaly": bool(r.open[j])})

    def _metric_keys(self, rows) -> list[str]:
        ms, mn, ml = self.metrics.arrays()
        look = self.interner.lookup
        return [_SEP.join((look(int(ms[i])), look(int(mn[i])), look(int(ml[i])) or "")) for i in rows]

    @staticmethod
    def _unseen(detector: MetricDetector, rows: np.ndarray) -> np.ndarray:
        """The series among `rows` that have not learnt a single value yet."""
        detector.ensure(int(rows.max()) + 1)
        return rows[detector.baseline.cols["n"][rows] == 0]

    def _warm_start(self, family: str, detector: MetricDetector, rows: np.ndarray, keys: list[str]) -> None:
        """New series found in the warm-start file take what they learnt there (once)."""
        index, arrays = self._warm[family]
        found = [(int(r), index.pop(k)) for r, k in zip(rows.tolist(), keys) if k in index]
        if found:
            dst, src = (np.asarray(v, dtype=np.int64) for v in zip(*found))
            detector.load_series_rows(dst, arrays, src, self._warm_source)

    def save_into(self, bank: BaselineBank) -> None:
        """Put what both detectors learnt, keyed by series names, into a warm-start baselines file."""
        header: dict = {"version": 1}
        arrays: dict[str, np.ndarray] = {}
        services = self.service_keys[:self.service_detector.cols.n]
        for family, det, keys in (("metrics", self.detector, self._metric_keys(range(self.detector.cols.n))),
                                  ("services", self.service_detector, services)):
            header[family] = list(keys)
            rows = np.arange(len(keys), dtype=np.int64)
            arrays.update({f"{family}/{k}": v for k, v in det.series_rows(rows).items()})
        bank.attachments[WARM] = (header, arrays)

    def warm_from(self, bank: BaselineBank, source: str) -> None:
        """Series of a warm-start file are judged from their first window, with what they learnt there."""
        attached = bank.attachments.pop(WARM, None)  # held here, not in every checkpoint of the bank
        if attached is None:
            return
        header, arrays = attached
        self._warm_source = source
        for family in ("metrics", "services"):
            keys = header.get(family)
            if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
                raise BaselineFormatError(f"{source}: the metric detector's {family} keys should be a list of "
                                          "distinct strings; the file is damaged: delete it to start cold")
            part = {k[len(family) + 1:]: a for k, a in arrays.items() if k.startswith(f"{family}/")}
            if any(len(a) != len(keys) for a in part.values()):
                raise BaselineFormatError(f"{source}: the metric detector's {family} arrays do not have one row "
                                          f"per key ({len(keys)}); the file is damaged: delete it to start cold")
            self._warm[family] = ({k: i for i, k in enumerate(keys)}, part)
        # every array present with the right width, checked now rather than at a series' first window
        none = np.zeros(0, dtype=np.int64)
        for family in ("metrics", "services"):
            try:
                MetricDetector(self.settings).load_series_rows(none, self._warm[family][1], none, source)
            except ValueError as e:
                raise BaselineFormatError(f"{e}; delete the file to start cold") from None

    def take_scores(self) -> list[dict]:
        """Score rows collected since the last call (one per series-window), in window order."""
        rows, self._scores = self._scores, []
        return rows

    def to_state(self) -> dict:
        return {"metrics": self.detector.to_state(), "services": self.service_detector.to_state(),
                "service_keys": list(self.service_keys)}

    def load_state(self, state: dict) -> None:
        where = "metric detector state in the core snapshot"
        keys = state["service_keys"]
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
            raise ValueError(f"{where}: service_keys should be a list of distinct strings")
        self.detector.load_state(state["metrics"], where)
        self.service_detector.load_state(state["services"], where)
        if self.detector.cols.n > len(self.metrics):
            raise ValueError(f"{where}: holds {self.detector.cols.n} metric series, the metric table "
                             f"{len(self.metrics)}")
        if self.service_detector.cols.n > len(keys):
            raise ValueError(f"{where}: holds {self.service_detector.cols.n} service series for {len(keys)} keys")
        self.service_keys = list(keys)
        self._service_index = {k: i for i, k in enumerate(keys)}
