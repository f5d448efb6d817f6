"""Blame's evidence of a shared cause, read from the fleet view (services of any partition).

The same tests as `judge.blame` applies within a partition: another service's
established traffic moved the same way over the same time range, or an
infrastructure metric series (listed, labelled with a shared dependency, or the
same name deviating in several services) stands far above its level before.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from detector import stats
from detector.config import Rule
from detector.fleet.view import FleetView, Totals


class FleetEvidence:
    def __init__(self, view: FleetView, infra_metrics: tuple[str, ...], names_shared: Callable[[str], bool]) -> None:
        self.view = view
        self.infra_names = frozenset(infra_metrics)
        self.names_shared = names_shared

    def others(self, rule: Rule, service: str, span: tuple[float, float], before: tuple[float, float],
               worse: Callable[[Rule, Totals, Totals], bool]) -> list[str]:
        """Services other than `service` whose established traffic moved like the deploy's."""
        out = []
        for other in self.view.services(*span):
            if other != service and worse(rule, self.view.totals(other, *span), self.view.totals(other, *before)):
                out.append(other)
        return sorted(out)

    def established(self, service: str, span: tuple[float, float], before: tuple[float, float]
                    ) -> tuple[Totals, Totals]:
        """A service's established traffic over the span and over the time before it."""
        return self.view.totals(service, *span), self.view.totals(service, *before)

    def infra_series(self, span: tuple[float, float], before: tuple[float, float], min_z: float = 4.0,
                     min_services: int = 2) -> list[tuple[str, str]]:
        """(service, text, time range) of each infrastructure series far above its level before (as
        `judge.blame.infra_series`)."""
        now_means = self._means(*span)
        before_means = self._means(*before)
        deviating = []
        for key in sorted(now_means):
            b = np.asarray([v for _, _, v in before_means.get(key, ())], dtype=float)
            if len(b) < 5:
                continue
            z = stats.robust_z(float(np.median([v for _, _, v in now_means[key]])), b, direction="up").effect
            if z >= min_z:
                z_each = stats.robust_z_each([v for _, _, v in now_means[key]], b, direction="up")
                up = [(s, e) for (s, e, _), zw in zip(now_means[key], z_each.tolist()) if zw >= min_z]
                # the median of an even count averages two windows, which can pass where neither
                # does (a tie at the threshold, or a sum that overflows): then the whole span
                up = up or [(s, e) for s, e, _ in now_means[key]]
                deviating.append((key, z, (up[0][0], up[-1][1])))
        by_name: dict[str, set[str]] = {}
        for (svc, name, _labels), _z, _on in deviating:
            by_name.setdefault(name, set()).add(svc)
        out = []
        for (svc, name, labels), z, on in deviating:
            if name in self.infra_names or self.names_shared(labels) or len(by_name[name]) >= min_services:
                shown = f"{name}{{{labels}}}" if labels else name
                out.append((svc, f"{shown} of {svc} at {z:.1f} robust z above its level before", on))
        return out

    def templates(self) -> list[tuple[str, str, float, str]]:
        """(service, kind, first seen, text) of the fleet's templates logged above INFO."""
        return [(svc, t.kind, t.first_seen_ts, t.text) for svc, t in self.view.templates()]

    def _means(self, start: float, end: float) -> dict[tuple[str, str, str], list]:
        """(service, name, labels) -> (window start, window end, mean) of each window with samples."""
        out: dict[tuple[str, str, str], list] = {}
        for w_start, w_end, s in self.view.windows(start, end):
            for m in s.metrics:
                if m.samples > 0:
                    out.setdefault((s.service, m.name, m.labels), []).append((w_start, w_end, m.total / m.samples))
        return out
