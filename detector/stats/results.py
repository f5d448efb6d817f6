"""Result types every measure answers with (`Deviation`, `LatencyShift` and their array forms),
and the constants the measures share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


LN10 = math.log(10.0)


MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution is 0.6745 sigma


# Jeffreys prior for an error rate: half a pseudo-error, half a pseudo-success.
# It keeps a zero-error baseline from making a single error infinitely
# significant, and is the prior with the best frequentist coverage for a rate.
PRIOR_ERRORS = 0.5


PRIOR_OK = 0.5


DIRECTIONS = ("surge", "drop", "both")


METRIC_DIRECTIONS = ("up", "down", "both")


@dataclass(frozen=True)
class Deviation:
    """One series' deviation (see module docstring for the meaning of each field)."""

    observed: float
    expected: float
    effect: float
    score: float
    p_value: float
    n: float
    enough_data: bool


@dataclass(frozen=True)
class DeviationArray:
    """Deviations of many series: every field is a 1-D array of the same length."""

    observed: np.ndarray
    expected: np.ndarray
    effect: np.ndarray
    score: np.ndarray
    p_value: np.ndarray
    n: np.ndarray
    enough_data: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: int) -> Deviation:
        return Deviation(
            observed=float(self.observed[i]),
            expected=float(self.expected[i]),
            effect=float(self.effect[i]),
            score=float(self.score[i]),
            p_value=float(self.p_value[i]),
            n=float(self.n[i]),
            enough_data=bool(self.enough_data[i]),
        )


@dataclass(frozen=True)
class LatencyShift:
    """Latency of one series against a reference.

    ``by_quantile[i]`` compares quantile ``quantiles[i]``: observed/expected in
    ms, effect = ratio, p from an exact test on how many requests of each side
    lie above the pooled quantile. ``rank`` is the Mann-Whitney test on the
    whole distribution: observed = P(new slower) + P(tie)/2, expected 0.5,
    effect = observed - 0.5. n is the new side's request count for the
    quantiles and the smaller side's for the rank test.
    """

    quantiles: tuple[float, ...]
    by_quantile: tuple[Deviation, ...]
    rank: Deviation


@dataclass(frozen=True)
class LatencyShiftArray:
    """`LatencyShift` for many series; ``by_quantile[i]`` is a `DeviationArray`."""

    quantiles: tuple[float, ...]
    by_quantile: tuple[DeviationArray, ...]
    rank: DeviationArray

    def __len__(self) -> int:
        return len(self.rank)

    def __getitem__(self, i: int) -> LatencyShift:
        return LatencyShift(self.quantiles, tuple(d[i] for d in self.by_quantile), self.rank[i])


def _deviations(observed, expected, effect, log_p, n, enough) -> DeviationArray:
    log_p = np.minimum(np.asarray(log_p, dtype=np.float64), 0.0)
    score = -log_p / LN10 + 0.0  # + 0.0 turns -0.0 into 0.0
    return DeviationArray(
        observed=np.asarray(observed, dtype=np.float64),
        expected=np.asarray(expected, dtype=np.float64),
        effect=np.asarray(effect, dtype=np.float64),
        score=score,
        p_value=np.exp(log_p),
        n=np.asarray(n, dtype=np.float64),
        enough_data=np.asarray(enough, dtype=bool),
    )


def _one(array_fn: Callable[..., DeviationArray], *args, **kwargs) -> Deviation:
    return array_fn(*(np.atleast_1d(a) for a in args), **kwargs)[0]
