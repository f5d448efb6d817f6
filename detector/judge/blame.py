"""Blame: is a deviation the deploy's fault, or shared with what it did not change?

A deviation that also shows in the stable version over the same windows, in
other services at the same time, or in infrastructure metric samples
(listed names, labels naming a shared dependency, or a metric deviating in
several services at once) is not the deploy's: the anomaly goes out without a
deploy id and the verdict cannot be a rollback for it.

"Also shows" is a difference in differences (`stats.did`): a reference that
moved does not clear the deploy when the new version moved significantly
more than it over the same windows (by at least half the rule's effect); a
reference that moved as much does.

Under `verification.infra_blame = "size"` (not the default: it gained a benign
ticket where the populations' "before" differ in what they cover; see
docs/figures-history.md), infrastructure evidence must account for the size
of the change: a deviating series explains an error-rate or transaction
finding unless the new version moved significantly more (the same
difference in differences) than every
population the cause hit that has the traffic to tell (the service's stable
version, the established traffic of the other services whose infrastructure
series deviate), over the windows of the span while the series were up. With
no such population, for latency findings, and under `infra_blame = "any"`,
it explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from detector import stats
from detector.config import Rule
from detector.stats.did import latency_did, rate_did
from detector.judge.evidence import Population
from detector.judge.rules import latency_deviation
from detector.aggregate.windows import WindowFacts


@dataclass(frozen=True)
class Context:
    """What the blame checks may look at, prepared by the judge."""

    span: Sequence[WindowFacts]
    before: Sequence[WindowFacts]
    population: Callable[..., Population]  # (windows, service, versions=None, exclude_versions=()) -> Population
    services: Sequence[int]  # services of this partition with traffic in the span
    lookup: Callable[[int], str]  # interned id -> string
    metric_service: np.ndarray
    metric_name: np.ndarray
    infra_metric_ids: frozenset[int]
    new_versions: dict  # service -> versions under verification (not "established" traffic)
    metric_labels: np.ndarray | None = None  # interned "k=v,k=v" labels per metric series, -1 none
    min_requests: int = 30  # tests.min_requests
    significance: float = 0.001  # tests.significance
    # Fleet view (detector.fleet): when set, other services and infrastructure metrics are
    # read from it, for services of every partition, over these time ranges [start, end).
    fleet: object | None = None  # detector.fleet.evidence.FleetEvidence
    span_range: tuple[float, float] = (0.0, 0.0)
    before_range: tuple[float, float] = (0.0, 0.0)
    infra_blame: str = "any"  # verification.infra_blame: "any" (any deviating series) or "size" (it must account for it)


def _worse(rule: Rule, now: Population, before: Population, min_requests: int, significance: float) -> bool:
    """The same signal, on a population the deploy did not change, moved the same way
    (each side with `tests.min_requests`, at p < `tests.significance`)."""
    if now.total_n < min_requests or before.total_n < min_requests:
        return False
    need = -math.log10(significance)
    if rule.signal == "error_rate":
        dev = stats.error_rate_two_sample(now.total_errors, now.total_n, before.total_errors, before.total_n)
        return dev.effect >= max(rule.min_effect / 2, 0.5) and dev.score >= need
    if rule.signal == "latency":
        dev = latency_deviation(now.whole, before.whole, rule.quantile)
        return dev.effect >= 1 + max(rule.min_effect - 1, 0.2) / 2 and dev.score >= need
    if rule.signal == "transactions":
        dev = stats.error_rate_two_sample(before.total_txn, before.total_n, now.total_txn, now.total_n)
        return dev.score >= need and dev.observed > 0 and 1 - dev.expected / dev.observed >= rule.min_effect / 2
    return False


def moved_more(rule: Rule, new: Population, new_before: Population, ref: Population, ref_before: Population,
               significance: float) -> bool:
    """The new version moved more than the reference over the same windows: by at least half the
    rule's effect, at p < `significance` (difference in differences, `stats.did`)."""
    need = -math.log10(significance)
    if rule.signal == "error_rate":
        dev = rate_did(new.total_errors, new.total_n, new_before.total_errors, new_before.total_n,
                       ref.total_errors, ref.total_n, ref_before.total_errors, ref_before.total_n)
        return dev.effect >= max(rule.min_effect / 2, 0.5) and dev.score >= need
    if rule.signal == "latency":
        ratio, dev = latency_did(new.whole, new_before.whole, ref.whole, ref_before.whole, rule.quantile)
        return math.isfinite(ratio) and ratio >= 1 + max(rule.min_effect - 1, 0.2) / 2 and dev.score >= need
    if rule.signal == "transactions":  # requests without a completed transaction: rises when they drop
        dev = rate_did(new.total_n - new.total_txn, new.total_n, new_before.total_n - new_before.total_txn,
                       new_before.total_n, ref.total_n - ref.total_txn, ref.total_n,
                       ref_before.total_n - ref_before.total_txn, ref_before.total_n)
        rel = [p.total_txn / p.total_n if p.total_n else float("nan") for p in (new, new_before, ref, ref_before)]
        keep = (rel[0] / rel[1]) / (rel[2] / rel[3]) if min(rel[1], rel[2], rel[3]) > 0 else float("nan")
        return dev.score >= need and math.isfinite(keep) and 1 - keep >= rule.min_effect / 2
    return False


def shared_with(rule: Rule, service: int, new_version: int, reference: str, ctx: Context,
                endpoint: int = -1) -> tuple[str, ...]:
    """Reasons the deviation is shared (empty: it is the deploy's). `endpoint` (>= 0) is the finding's
    endpoint: the new version and the stable version are compared there."""
    reasons: list[str] = []
    if rule.signal not in ("error_rate", "latency", "transactions"):
        return ()
    if reference == "stable":
        # The new version was compared with the stable version over the same
        # windows: a shared cause (database, network, load) hits both alike
        # and cancels out, so what remains is the deploy's.
        return ()
    eps = None if endpoint < 0 else np.array([endpoint], dtype=np.int32)
    new = ctx.population(ctx.span, service, versions=(new_version,), endpoints=eps)
    new_before = ctx.population(ctx.before, service, exclude_versions=(new_version,), endpoints=eps)
    stable_now = ctx.population(ctx.span, service, exclude_versions=(new_version,), endpoints=eps)
    if stable_now.total_n < ctx.min_requests:  # the stable version is gone from that endpoint: the service's
        stable_now = ctx.population(ctx.span, service, exclude_versions=(new_version,))
        stable_before = ctx.population(ctx.before, service, exclude_versions=(new_version,))
    else:
        stable_before = new_before
    new_service = ctx.population(ctx.span, service, versions=(new_version,))
    new_service_before = ctx.population(ctx.before, service, exclude_versions=(new_version,))

    def as_much(ref: Population, ref_before: Population) -> bool:
        """The reference moved, and the new version did not move significantly more."""
        if not _worse(rule, ref, ref_before, ctx.min_requests, ctx.significance):
            return False
        local = ref_before is new_before
        return not moved_more(rule, new if local else new_service, new_before if local else new_service_before,
                              ref, ref_before, ctx.significance)

    def infra_explains(hit: Sequence, cause: tuple[float, float],
                       established: Callable[[object, tuple[float, float]], tuple[Population, Population]]) -> bool:
        """Deviating infrastructure can account for the change: unless `infra_blame` is "any", the new
        version did not move significantly more than every population the cause hit (`hit`: other
        services, read by `established`; and the service's stable version) that has
        `tests.min_requests` on each side, over the windows of the span while the cause was on
        (`cause`, a time range); with no such population, it can."""
        if ctx.infra_blame == "any" or rule.signal == "latency":
            # Latency's difference in differences compares shares above each side's own quantile:
            # a shared slowdown moves a narrow population's share more than a broad one's, so it
            # cannot tell whether the cause accounts for the change in other services' terms.
            return True
        on = _within(ctx.span, cause)
        if not on:
            return True
        c_new = ctx.population(on, service, versions=(new_version,), endpoints=eps)
        c_new_service = ctx.population(on, service, versions=(new_version,))
        local = stable_before is new_before
        c_stable = ctx.population(on, service, exclude_versions=(new_version,), endpoints=eps if local else None)
        refs = [(c_stable, stable_before, local)]
        refs += [(*established(other, (on[0].start, on[-1].end)), False) for other in hit]
        refs = [r for r in refs if r[0].total_n >= ctx.min_requests and r[1].total_n >= ctx.min_requests]
        return not refs or not all(
            moved_more(rule, c_new if loc else c_new_service, new_before if loc else new_service_before,
                       now, before, ctx.significance) for now, before, loc in refs)

    if as_much(stable_now, stable_before):
        reasons.append(f"the stable version shows the same {rule.signal} change in the same windows")
    if ctx.fleet is not None:
        return tuple(reasons) + _shared_in_fleet(rule, service, ctx, as_much, infra_explains)
    others = []
    for other in ctx.services:
        if other == service:
            continue
        # Only other services' established versions speak for a shared cause:
        # a version under its own verification may be failing on its own.
        skip = tuple(ctx.new_versions.get(other, ()))
        if as_much(ctx.population(ctx.span, other, exclude_versions=skip),
                   ctx.population(ctx.before, other, exclude_versions=skip)):
            others.append(ctx.lookup(other))
    if others:
        reasons.append(f"other services show the same {rule.signal} change at the same time: {', '.join(sorted(others))}")
    infra = infra_series(ctx)

    def established(other: int, cause: tuple[float, float]) -> tuple[Population, Population]:
        skip = tuple(ctx.new_versions.get(other, ()))
        return (ctx.population(_within(ctx.span, cause), other, exclude_versions=skip),
                ctx.population(ctx.before, other, exclude_versions=skip))

    if infra and infra_explains(sorted({s for s, _, _ in infra if s != service}), _cause(infra), established):
        reasons.append("infrastructure metrics deviate: " + ", ".join(text for _, text, _ in infra))
    return tuple(reasons)


def _within(windows: Sequence[WindowFacts], cause: tuple[float, float]) -> list[WindowFacts]:
    """The windows that lie inside the time range `cause`."""
    return [w for w in windows if w.start >= cause[0] - 1e-9 and w.end <= cause[1] + 1e-9]


def _cause(infra: Sequence[tuple[object, str, tuple[float, float]]]) -> tuple[float, float]:
    """The time range of the span over which the deviating series were up."""
    return min(c[0] for _, _, c in infra), max(c[1] for _, _, c in infra)


def _shared_in_fleet(rule: Rule, service: int, ctx: Context,
                     as_much: Callable[[Population, Population], bool],
                     infra_explains: Callable[..., bool]) -> tuple[str, ...]:
    """Other services and infrastructure metrics of the whole fleet (see detector.fleet.evidence)."""
    reasons = []
    name = ctx.lookup(service)
    others = ctx.fleet.others(rule, name, ctx.span_range, ctx.before_range,  # type: ignore[union-attr]
                              lambda r, now, before: as_much(now, before))
    if others:
        reasons.append(f"other services show the same {rule.signal} change at the same time: {', '.join(others)}")
    infra = ctx.fleet.infra_series(ctx.span_range, ctx.before_range)  # type: ignore[union-attr]
    if infra and infra_explains(sorted({s for s, _, _ in infra if s != name}), _cause(infra),
                                lambda other, cause: ctx.fleet.established(  # type: ignore[union-attr]
                                    other, cause, ctx.before_range)):
        reasons.append("infrastructure metrics deviate: " + ", ".join(text for _, text, _ in infra))
    return tuple(reasons)


SHARED_LABELS = ("db", "database", "cluster", "queue", "broker", "cache", "datastore", "shard")


def _names_shared_dependency(labels: str) -> bool:
    """Labels ("k=v,k=v") that name a shared dependency: db=..., cluster=..., queue=..."""
    return any(kv.split("=", 1)[0].strip().lower() in SHARED_LABELS for kv in labels.split(",") if kv)


def infra_series(ctx: Context, min_z: float = 4.0, min_services: int = 2
                 ) -> list[tuple[int, str, tuple[float, float]]]:
    """(service id, text, time range) of each infrastructure metric series whose level in the span is
    far from before (robust z of its median window; the time range runs from the first window of the
    span at that z to the last).

    A series counts when its name is listed (`verification.infra_metrics`), when
    its labels name a shared dependency (db, cluster, queue, ...), or when the
    same metric name deviates in at least `min_services` services at once:
    real systems name their database latency anything, but a dependency shared
    by several services shows in all of them.
    """
    if not ctx.span or not ctx.before or not len(ctx.metric_name):
        return []
    deviating: list[tuple[int, float, tuple[float, float]]] = []
    for m in range(len(ctx.metric_name)):
        before = _window_means(ctx.before, m)
        sampled = [w for w in ctx.span if m < len(w.metric_n) and w.metric_n[m] > 0]
        now = _window_means(sampled, m)
        if len(before) < 5 or len(now) == 0:
            continue
        z = stats.robust_z(float(np.median(now)), before, direction="up").effect
        if z >= min_z:
            z_each = stats.robust_z_each(now, before, direction="up")
            # no window may pass where the median does (it averages two; see fleet.evidence)
            up = [w for w, zw in zip(sampled, z_each.tolist()) if zw >= min_z] or sampled
            deviating.append((m, z, (up[0].start, up[-1].end)))
    by_name: dict[int, set[int]] = {}
    for m, _z, _on in deviating:
        by_name.setdefault(int(ctx.metric_name[m]), set()).add(int(ctx.metric_service[m]))
    out = []
    for m, z, on in deviating:
        name = int(ctx.metric_name[m])
        labels = ctx.lookup(int(ctx.metric_labels[m])) if ctx.metric_labels is not None \
            and int(ctx.metric_labels[m]) >= 0 else ""
        if name in ctx.infra_metric_ids or _names_shared_dependency(labels) or len(by_name[name]) >= min_services:
            service = ctx.lookup(int(ctx.metric_service[m]))
            shown = f"{ctx.lookup(name)}{{{labels}}}" if labels else ctx.lookup(name)
            out.append((int(ctx.metric_service[m]),
                        f"{shown} of {service} at {z:.1f} robust z above its level before", on))
    return out


def _window_means(windows: Sequence[WindowFacts], m: int) -> np.ndarray:
    vals = [w.metric_sum[m] / w.metric_n[m] for w in windows if m < len(w.metric_n) and w.metric_n[m] > 0]
    return np.asarray(vals, dtype=float)
