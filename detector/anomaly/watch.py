"""Metric watch: the core's component that runs the metric detector over every metric series.

Each closed window, every metric series with samples in it (its value: the
mean of those samples) is scored and learnt by `MetricDetector`. A series'
index is the partition's metric series index (`series.MetricSeries`), which
the core snapshot restores, so the detector's arrays line up after a restore.
An episode's onset becomes one `metric` anomaly record carrying the score; a
caller that wants every series-window's score (`detector replay --scores`)
sets `collect_scores` and drains `take_scores()`.
"""

from __future__ import annotations

import numpy as np

from detector.anomaly.detector import MetricDetector
from detector.config import Pipeline
from detector.interner import Interner
from detector.records import Anomaly
from detector.series import MetricSeries
from detector.windows import WindowFacts

SEASONS = ("none", "daily", "weekly")


class MetricWatch:
    def __init__(self, pipeline: Pipeline, interner: Interner, metrics: MetricSeries) -> None:
        self.settings = pipeline.metrics
        self.interner = interner
        self.metrics = metrics
        self.detector = MetricDetector(pipeline.metrics)
        self.collect_scores = False
        self._scores: list[dict] = []

    def observe(self, w: WindowFacts) -> list[Anomaly]:
        """Score and learn every metric series with samples in `w`; return the episodes that open."""
        if not self.settings.enabled:
            return []
        m = np.flatnonzero(w.metric_n > 0)
        if not len(m):
            return []
        y = w.metric_sum[m] / w.metric_n[m]
        r = self.detector.step(m, np.full(len(m), w.start), y)
        out: list[Anomaly] = []
        emit = np.flatnonzero(r.onset)
        if not (len(emit) or self.collect_scores):
            return out
        ms, mn, ml = self.metrics.arrays()
        look = self.interner.lookup
        rows = range(len(m)) if self.collect_scores else emit.tolist()
        for j in rows:
            i = int(m[j])
            service, name, labels = look(int(ms[i])), look(int(mn[i])), look(int(ml[i])) or ""
            score = float(r.score[j])
            if self.collect_scores:
                self._scores.append({"window_start": w.start, "window_end": w.end, "service": service,
                                     "metric": name, "labels": labels, "value": float(y[j]),
                                     "expected": float(r.expected[j]), "z": float(r.z[j]), "score": score,
                                     "ready": bool(r.ready[j]), "anomaly": bool(r.open[j])})
            if r.onset[j]:
                out.append(Anomaly(
                    ts=w.end, service=service, endpoint=None, version=None, signal="metric",
                    observed=float(y[j]), expected=float(r.expected[j]), score=score,
                    severity="warning", window_start=w.start, window_end=w.end, deploy_id=None,
                    detail={"metric": name, "labels": labels, "series": f"{name}{{{labels}}}", "z": float(r.z[j]),
                            "seasonal": SEASONS[int(r.seasonal[j])],
                            "threshold": self.settings.score_threshold}).with_id())
        return out

    def take_scores(self) -> list[dict]:
        """Score rows collected since the last call (one per series-window), in window order."""
        rows, self._scores = self._scores, []
        return rows

    def to_state(self) -> dict:
        return self.detector.to_state()

    def load_state(self, state: dict) -> None:
        self.detector.load_state(state, "metric detector state in the core snapshot")
        if self.detector.cols.n > len(self.metrics):
            raise ValueError(f"metric detector holds {self.detector.cols.n} series, the metric table "
                             f"{len(self.metrics)}")
