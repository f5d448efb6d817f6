"""Contextual novelty: how unlike the series' own past the order of its recent values is.

The idea behind CAD OSE and ARTime on NAB (written from their description,
not their code): quantise each value into a few levels, describe the recent
sequence by its contexts (the last `ORDER` levels and the one that followed
them), remember how often the series has shown each context, and score how
novel the current value is in its context:

    novelty_t = mean over k = 1 .. ORDER of (1 - n(h_k, q_t) / n(h_k))

with q_t the value's level, h_k the k levels before it and n the counts of
the series' history (a context h_k never seen counts as fully novel). A
change of shape with no outstanding value (a wave that runs backwards) is a
run of transitions the series has rarely made, which a level and spread
model does not see. A new rhythm of known transitions (the usual spikes,
twice as dense) is learnt within a few repeats and is not seen: counts learn
at once (both pinned in tests/anomaly/test_context.py).

Levels split the range of the values the series has shown so far (CAD OSE
uses the whole file's range, known in advance; a stream does not know it).

`ContextTest` turns the novelty into a calibrated p-value like the
detector's other tests: the exponentially weighted mean of the novelty
(half-life `context_half_life_samples`: the density of novel transitions),
standardised by its own long-run mean and spread, with its own learnt tail
(`calibration.TailCalibration`); only a density above the usual counts.

Counts are dense per series (levels ** (k + 1) cells for order k: 4,672
counts for 8 levels, 37 KB), so one step of K series is a few fancy-indexing
operations.

>>> import numpy as np
>>> ctx = ContextNovelty(levels=4)
>>> wave = [0.0, 1.0, 2.0, 3.0] * 50
>>> nov = [float(ctx.step(np.array([0]), np.array([v]))[0]) for v in wave]
>>> nov[-1] < 0.05  # a repeated wave is learnt
True
>>> float(ctx.step(np.array([0]), np.array([3.0]))[0]) > 0.95  # 3 after 3: a transition never made
True
"""

from __future__ import annotations

import numpy as np

from detector.anomaly.calibration import HALF_LIFE, TailCalibration
from detector.anomaly.columns import SeriesColumns

ORDER = 3  # contexts: the 1, 2 and 3 levels before the value (CAD OSE's semi-contexts reach 7)
MIN_SD = 1e-3  # the novelty density's long-run spread never below this (a series that never surprises)


class ContextNovelty:
    def __init__(self, levels: int, order: int = ORDER) -> None:
        self.levels = levels
        self.order = order
        spec = {"lo": (0, np.inf), "hi": (0, -np.inf), "hist": (order, -1.0)}
        for k in range(1, order + 1):
            spec[f"count{k}"] = (levels ** (k + 1), 0.0)
        self.cols = SeriesColumns(spec)

    def quantise(self, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Level 0 .. levels - 1 of y in the range of the series' previous values."""
        lo, hi = self.cols["lo"][idx], self.cols["hi"][idx]
        span = hi - lo
        x = np.where(span > 0, (y - lo) / np.where(span > 0, span, 1.0), 0.5)
        return np.clip(np.floor(x * self.levels), 0, self.levels - 1).astype(np.int64)

    def step(self, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Novelty in [0, 1] of each series' value given its recent levels (0 for a first value), then learn it."""
        c, levels = self.cols, self.levels
        q = self.quantise(idx, y)
        hist = c["hist"][idx].astype(np.int64)  # column 0: the level just before, 1: the one before that, ...
        rows = np.arange(len(idx))
        novelty = np.zeros(len(idx))
        orders = np.zeros(len(idx))
        h = np.zeros(len(idx), dtype=np.int64)
        for k in range(1, self.order + 1):
            prev = hist[:, k - 1]
            ok = prev >= 0
            h = h + np.where(ok, prev, 0) * levels ** (k - 1)  # the k levels before, as one code
            table = c[f"count{k}"]
            base = h * levels
            cells = table[idx[:, None], base[:, None] + np.arange(levels)]
            total = cells.sum(axis=1)
            known = np.where(total > 0, cells[rows, q] / np.where(total > 0, total, 1.0), 0.0)
            novelty += np.where(ok, 1.0 - known, 0.0)
            orders += ok
            table[idx[ok], (base + q)[ok]] += 1.0  # one cell per series: idx holds each series once
        c["hist"][idx] = np.concatenate([q[:, None], hist[:, :-1]], axis=1)
        c["lo"][idx] = np.minimum(c["lo"][idx], y)
        c["hi"][idx] = np.maximum(c["hi"][idx], y)
        return np.where(orders > 0, novelty / np.maximum(orders, 1.0), 0.0)


class ContextTest:
    """The density of novel transitions as a calibrated one-sided test: `log10_p` of each series' value."""

    def __init__(self, levels: int, half_life_samples: float) -> None:
        self.novelty = ContextNovelty(levels)
        self.tail = TailCalibration()
        self.gamma = 1.0 - 0.5 ** (1.0 / half_life_samples)
        self.long = 1.0 - 0.5 ** (1.0 / HALF_LIFE)
        self.cols = SeriesColumns({"nbar": (0, 0.0), "mean": (0, 0.0), "var": (0, 0.0), "n": (0, 0.0)})

    def parts(self) -> dict[str, SeriesColumns]:
        return {"context": self.novelty.cols, "context_tail": self.tail.cols, "context_density": self.cols}

    def step(self, idx: np.ndarray, y: np.ndarray, ready: np.ndarray) -> np.ndarray:
        """log10 p (<= 0) of each series' current density of novel transitions; learnt from every value,
        the tail only from values past warm-up (`ready`)."""
        c = self.cols
        nbar = (1 - self.gamma) * c["nbar"][idx] + self.gamma * self.novelty.step(idx, y)
        mean, var, n = c["mean"][idx], c["var"][idx], c["n"][idx]
        u = np.maximum((nbar - mean) / np.maximum(np.sqrt(var), MIN_SD), 0.0)
        log10_p = self.tail.log10_p(idx, u)
        self.tail.learn(idx, u, ready.astype(np.float64))
        g = np.maximum(self.long, 1.0 / (n + 1.0))
        d = nbar - mean
        c["mean"][idx] = mean + g * d
        c["var"][idx] = (1 - g) * (var + g * d * d)
        c["n"][idx] = n + 1
        c["nbar"][idx] = nbar
        return log10_p
