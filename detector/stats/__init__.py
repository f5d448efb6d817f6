"""Deviation measures: how far, and how surely, a window departs from what was expected.

This package owns the statistics the judge reads. Every measure answers with a
`Deviation` (one series) or a `DeviationArray` (many series at once, same
fields as arrays); the scalar form is the array form applied to one element,
so the two cannot disagree.

Fields, in every measure:

``observed`` / ``expected``
    The value seen and the value it is held against (a rate, a latency in ms,
    a count, a metric value).
``effect``
    Signed size in natural units: percentage points for rates, the ratio
    observed/expected for latency quantiles, the relative change for counts,
    the robust z for metric samples.
``p_value`` / ``score``
    Significance in the "worse" direction (one-sided unless a function says
    otherwise); ``score = -log10(p_value)``, computed from log p so a score
    stays finite and exact when p underflows. Higher is more anomalous.
``n`` / ``enough_data``
    How much data the measure rests on, and whether that meets the measure's
    minimum (each function documents its rule). A measure without enough data
    still reports its p-value, which is valid at any n; the judge uses the
    flag and `min_detectable_effect` to say ``inconclusive`` rather than
    ``confirmed``.

Every p-value here is valid (its false-positive rate is at most its nominal
level, up to Monte-Carlo noise in the tests) down to a single request per
window: exact discrete tails for rates and counts, exact conditional tests
for two populations and latency quantiles, a tie-corrected normal
approximation for the rank test (conservative at small n, where it cannot
reach small p), and a conservative t reference for robust z on near-normal
metrics. The
discrete tails are summed in log space in vectorised blocks (see
`_log_tail_ge`) because scipy's beta-binomial and hypergeometric tails are
either per-element Python loops or lose precision far in the tail.

Modules: `results` (result types), `rates`, `latency`, `counts`, `robust`, `power`, `tails`
(exact discrete tails), `sequential` (always-valid evidence accumulated over windows).
"""

from __future__ import annotations

from detector.stats.results import (DIRECTIONS, METRIC_DIRECTIONS, Deviation, DeviationArray, LatencyShift,
                                    LatencyShiftArray)
from detector.stats.rates import (concentration_from_variance, error_rate_two_sample, error_rate_two_sample_array,
                                  error_rate_vs_expected, error_rate_vs_expected_array)
from detector.stats.latency import latency_shift, latency_shift_grouped
from detector.stats.counts import count_deviation, count_deviation_array
from detector.stats.robust import robust_z, robust_z_array, robust_z_each
from detector.stats.power import min_detectable_drop, min_detectable_effect

__all__ = [
    "DIRECTIONS",
    "METRIC_DIRECTIONS",
    "Deviation",
    "DeviationArray",
    "LatencyShift",
    "LatencyShiftArray",
    "concentration_from_variance",
    "count_deviation",
    "count_deviation_array",
    "error_rate_two_sample",
    "error_rate_two_sample_array",
    "error_rate_vs_expected",
    "error_rate_vs_expected_array",
    "latency_shift",
    "latency_shift_grouped",
    "min_detectable_drop",
    "min_detectable_effect",
    "robust_z",
    "robust_z_array",
    "robust_z_each",
]
