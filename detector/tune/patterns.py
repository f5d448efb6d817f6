"""Incident rates by deploy attribute, tested against the rest and corrected for how many were looked at.

Every value of every dimension (weekday, hour band, change kind, author,
reviewer, label, service, and author with change kind) with at least one deploy and at least one outside
it gets its incident rate with a 95 % Wilson interval and a two-sided Fisher
exact test against all other deploys. Holm's correction over every value
tested keeps the chance of calling any false pattern at most `alpha`. The
values that survive are `patterns`; the others are listed as not enough
evidence, with the number of deploys at the same rate that would have made
them significant at the strictest Holm level (alpha / number tested).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from detector.ingest.columns import DeployEvent
from detector.tune.stats import fisher, holm, needed, wilson

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HOUR_BANDS = ((0, 6, "00-06"), (6, 12, "06-12"), (12, 18, "12-18"), (18, 24, "18-24"))


def dimensions(tz: ZoneInfo) -> dict[str, Callable[[DeployEvent], Iterable[str]]]:
    def local(d: DeployEvent) -> datetime:
        return datetime.fromtimestamp(d.ts, tz)

    def band(d: DeployEvent) -> list[str]:
        h = local(d).hour
        return [name for lo, hi, name in HOUR_BANDS if lo <= h < hi]

    return {
        "weekday": lambda d: [WEEKDAYS[local(d).weekday()]],
        "hour_band": band,
        "change_kind": lambda d: [d.change_kind or "unknown"],
        "author": lambda d: [d.author] if d.author else [],
        "reviewer": lambda d: list(d.reviewers),
        "label": lambda d: [f"{k}={v}" for k, v in d.labels],
        "service": lambda d: [d.service],
        "author_change_kind": lambda d: [f"{d.author}/{d.change_kind or 'unknown'}"] if d.author else [],
    }


def find_patterns(deploys: list[DeployEvent], failed: set[str], tz: ZoneInfo, alpha: float = 0.05,
                  with_needed: bool = True) -> dict:
    """`failed`: the deploy ids followed by an incident. `with_needed` False skips the counts that
    would be needed (the slow part), for callers that only want the patterns."""
    total, total_k = len(deploys), sum(1 for d in deploys if d.deploy_id in failed)
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for d in deploys:
        for dim, values in dimensions(tz).items():
            for v in set(values(d)):
                g = groups[(dim, v)]
                g[0] += 1
                g[1] += d.deploy_id in failed
    rows = []
    for (dim, value), (n, k) in sorted(groups.items()):
        # deploys outside the group: for reviewer/label a deploy may lack the attribute entirely
        n_rest, k_rest = total - n, total_k - k
        if n_rest <= 0:
            continue
        lo, hi = wilson(k, n)
        rows.append({"dimension": dim, "value": value, "deploys": n, "incidents": k, "rate": k / n,
                     "ci95": [round(lo, 4), round(hi, 4)], "rest_rate": k_rest / n_rest,
                     "p": fisher(k, n, k_rest, n_rest), "_rest": (k_rest, n_rest)})
    adjusted = holm([r["p"] for r in rows])
    strictest = alpha / max(len(rows), 1)
    found, weak = [], []
    for r, p_adj in zip(rows, adjusted):
        k_rest, n_rest = r.pop("_rest")
        r["p_holm"] = p_adj
        if p_adj < alpha:
            found.append(r)
        else:
            r["verdict"] = "not enough evidence"
            r["deploys_needed"] = (needed(r["incidents"], r["deploys"], k_rest, n_rest, strictest)
                                   if with_needed else None)
            weak.append(r)
    found.sort(key=lambda r: r["p"])
    return {"deploys": total, "incidents": total_k, "tested": len(rows), "alpha": alpha,
            "correction": "holm", "test": "fisher exact, two-sided, group against all other deploys",
            "interval": "wilson 95%", "timezone": str(tz), "patterns": found, "not_enough_evidence": weak}
