"""What a verdict without a finding can say it excluded: power, service-wide and per endpoint.

A confirmation (or an inconclusive verdict) states the smallest error-rate rise
the new version's requests would have shown at the evidence a rule needs within
the deploy's false-alarm budget: `sequential.detectable_rise`, the new version's
requests had their rate been the rate before the deploy plus d (the expected
count, no luck either way), against the errors and requests before the deploy.

Service-wide that is every request of the new version against the service
before the deploy, at the service-wide threshold; a confirmation states no less
than the smallest `min_effect` of the error-rate rules, since no rule acts below
it. A regression confined to one
quiet endpoint is diluted there, so the same calculation runs per endpoint: the
new version's requests on it (whichever reference each window compared them
with) against that endpoint's own errors and requests before the deploy, at an
endpoint rule's threshold (the budget over e-BH's worst case, one finding among
all endpoints), and never below the smallest `min_effect` of the endpoint
error-rate rules that watch an endpoint with its share of the traffic. The
least-covered endpoints are the ones a verdict names: what it could *not*
exclude there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from detector.config import Rule
from detector.judge.evidence import Population
from detector.stats import sequential


@dataclass(frozen=True)
class EndpointPower:
    """The smallest error-rate rise one endpoint's requests of the new version would have shown."""

    endpoint: str
    requests: int  # the new version's requests on the endpoint
    share: float  # of the new version's requests
    before_errors: int  # the endpoint's errors and requests before the deploy
    before_requests: int
    points: float  # the rise (percentage points) that would have been seen
    none_seen: bool  # no rise at all would have been seen (nothing before to compare with, or too few)

    def to_dict(self) -> dict:
        return {"endpoint": self.endpoint, "requests": self.requests, "share": round(self.share, 4),
                "before_errors": self.before_errors, "before_requests": self.before_requests,
                "error_points": None if self.none_seen else round(self.points, 2)}

    def reason(self, threshold: float) -> str:
        where = (f"on endpoint {self.endpoint} ({_percent(self.share)} of the new version's requests, "
                 f"{self.requests}; {self.before_errors} error{'' if self.before_errors == 1 else 's'} in "
                 f"{self.before_requests} requests before the deploy)")
        if self.none_seen:
            return f"{where} no error-rate regression would have been seen at all"
        only = "only " if self.points > threshold else ""
        return f"{where} {only}an error-rate regression of +{self.points:.1f} points or more would have been seen"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%" if share < 0.01 else f"{100 * share:.0f}%"


def service_points(new_requests: int, pre: Population | None, alpha_rule: float) -> float:
    """The smallest service-wide error-rate rise (points) the new version's requests would have
    shown at the service-wide evidence threshold."""
    r, m = (pre.total_errors, pre.total_n) if pre is not None else (0, 0)
    return 100.0 * sequential.detectable_rise(new_requests, r, m, math.log10(1 / alpha_rule))


def service_floor(rules: Sequence[Rule]) -> float:
    """The smallest error-rate rise any error-rate rule acts on (0 when none does): a confirmation
    cannot claim to have excluded less, however many requests it saw."""
    effects = [r.min_effect for r in rules if r.signal == "error_rate" and not r.dry_run]
    return min(effects) if effects else 0.0


def _floor(share: float, rules: Sequence[Rule]) -> float | None:
    """The smallest effect an endpoint error-rate rule acts on at this share of the traffic
    (None: no such rule watches an endpoint of this share)."""
    effects = [r.min_effect for r in rules
               if r.signal == "error_rate" and r.scope == "endpoint" and not r.dry_run
               and r.min_traffic_share <= share <= r.max_traffic_share]
    return min(effects) if effects else None


def served_before(pre: Population | None) -> set[int]:
    """The endpoints with requests before the deploy. Not every row of `pre`: it has a row for each
    endpoint the service's series table held when it was cut, and a replay's batch creates the series
    of endpoints first seen later in it before its windows are judged (the count would depend on the
    batching)."""
    return set(pre.endpoints[pre.n > 0].tolist()) if pre is not None else set()


def endpoints(requests: Mapping[int, int], pre: Population | None, alpha_rule: float, rules: Sequence[Rule],
              lookup: Callable[[int], str]) -> list[EndpointPower]:
    """Every endpoint the new version served, least covered first."""
    total = sum(requests.values())
    if not total:
        return []
    need = math.log10(max(1, len(served_before(pre) | set(requests))) / alpha_rule)
    out = []
    for ep, n in requests.items():
        if n <= 0:
            continue
        at = pre.row(ep) if pre is not None else -1
        r, m = (int(pre.errors[at]), int(pre.n[at])) if at >= 0 else (0, 0)
        # The share the endpoint rules select it by: its traffic before the deploy (as they do
        # when the reference is the past), its share of the new version's requests otherwise.
        share_before = m / pre.total_n if at >= 0 and pre.total_n else n / total
        floor = _floor(share_before, rules)
        p0 = r / m if m else 0.0
        rise = 100.0 * sequential.detectable_rise(n, r, m, need)
        points = max(rise, floor if floor is not None else 0.0)
        none_seen = m == 0 or floor is None or points >= 100.0 * (1.0 - p0) - 1e-9
        out.append(EndpointPower(lookup(ep), int(n), n / total, r, m, points, none_seen))
    out.sort(key=lambda e: (not e.none_seen, -e.points, e.requests, e.endpoint))
    return out


def least_covered(powers: Sequence[EndpointPower], threshold: float, shown: int = 3) -> list[EndpointPower]:
    """The endpoints a verdict names: the least-covered one always (when the service has more
    than one), then the others where less than `threshold` points could not be excluded."""
    if len(powers) < 2:
        return []
    return [e for i, e in enumerate(powers) if i == 0 or e.none_seen or e.points > threshold][:shown]
