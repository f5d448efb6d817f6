"""tuned.toml: rule thresholds and escalation chosen on the history, validated out of sample.

The decision layer is re-run from the replay's firings, not the whole core:
a candidate policy gives each rule a cap on its action (rollback, page,
ticket) and a floor on the effect a firing must show (`min_effect`, only
raised: firings below the shipped threshold were never recorded). A
deploy's verdict under a policy is the most urgent action of the firings
that pass. This is exact for which recorded firings count, and a lower
bound on what a full replay would find after a demotion (a rollback ends a
verification, so rules that would have held later are not in the record),
and conservative for a raised threshold (the effect is the one recorded
when the rule first held).

Choice: coordinate ascent over rules, each with the options keep, raise
min_effect just above its largest effect on deploys without an incident,
cap at ticket, and promote a ticket rule to page when it caught at least
`PROMOTE_MIN` incidents and fired on no deploy without one. A policy is
better when it has fewer false rollbacks/pages, then catches more
incidents, then more of them at rollback/page, then fewer false tickets.
Validation, both reported next to the shipped pipeline on the same deploys:
a time-ordered split (fitted on the earliest 2/3 of deploys, scored on the
rest), and leave one incident out: one fold per deploy with an incident,
which holds out that deploy and every k-th deploy without one (round robin in
time order, k = number of folds), so every deploy is held out exactly once;
the policy fitted on the other folds decides the held-out deploys and the
pooled held-out figures are the out-of-sample score (in sample: fitted on
every deploy, scored on every deploy). Beyond `MAX_FOLDS` deploys with an
incident, fold j holds out the j-th, (j+MAX_FOLDS)-th, ... of them (a fit
costs ~0.3 s on a month of ten services; 165 folds would take a minute).
"""

from __future__ import annotations

import dataclasses
import math
import time

from detector.config import Pipeline, Rule, to_toml
from detector.tune.outcomes import Outcome

RANK = {"none": 0, "ticket": 1, "page": 2, "rollback": 3}
NAMES = {v: k for k, v in RANK.items()}
TUNABLE_EFFECT = ("error_rate", "latency", "transactions", "volume")
PROMOTE_MIN = 3
TRAIN_SHARE = 2 / 3
MAX_FOLDS = 30


@dataclasses.dataclass(frozen=True)
class Choice:
    cap: int = 3            # most urgent action allowed
    floor: float = 0.0      # min effect a firing must show (0: the rule's own)
    promote: bool = False   # ticket -> page
    why: str = dataclasses.field(default="", compare=False)   # the evidence behind the option, for the diff


def decide(o: Outcome | None, policy: dict[str, Choice]) -> int:
    if o is None:
        return 0
    best = 0
    for f in o.firings.values():
        c = policy.get(f.rule, Choice())
        if f.effect < c.floor:
            continue
        rank = RANK.get(f.action, 0)
        if c.promote and rank == 1:
            rank = 2
        best = max(best, min(rank, c.cap))
    return best


def score(deploys: list[str], incidents: dict[str, int], outs: dict[str, Outcome], policy: dict[str, Choice]) -> dict:
    s = {"deploys": len(deploys), "incidents": sum(incidents.get(d, 0) for d in deploys), "caught": 0,
         "caught_rollback_or_page": 0, "false_rollback_or_page": 0, "false_tickets": 0}
    for d in deploys:
        rank = decide(outs.get(d), policy)
        n = incidents.get(d, 0)
        if n:
            s["caught"] += n if rank >= 1 else 0
            s["caught_rollback_or_page"] += n if rank >= 2 else 0
        elif rank >= 2:
            s["false_rollback_or_page"] += 1
        elif rank == 1:
            s["false_tickets"] += 1
    return s


def _key(s: dict) -> tuple:
    return (-s["false_rollback_or_page"], s["caught"], s["caught_rollback_or_page"], -s["false_tickets"])


def _options(rule: Rule, deploys: list[str], incidents: dict[str, int], outs: dict[str, Outcome]) -> list[Choice]:
    fired = [(d, outs[d].firings[rule.name]) for d in deploys if d in outs and rule.name in outs[d].firings]
    benign = [f for d, f in fired if not incidents.get(d)]
    caught = [f for d, f in fired if incidents.get(d)]
    opts = [Choice()]
    if benign and rule.signal in TUNABLE_EFFECT:
        top = max(f.effect for f in benign)
        opts.append(Choice(floor=_round_up(max(top * 1.05, rule.min_effect)),
                           why=f"largest effect on a deploy without an incident: {top:.3g}, on {len(benign)} such "
                               f"deploys; {len(caught)} with an incident"))
    if any(RANK.get(f.action, 0) >= 2 for _, f in fired):
        opts.append(Choice(cap=1, why=f"fired on {len(benign)} deploys without an incident, {len(caught)} with"))
    if not benign and len(caught) >= PROMOTE_MIN and all(RANK.get(f.action, 0) == 1 for _, f in fired):
        opts.append(Choice(promote=True, why=f"caught {len(caught)} incidents, never fired without one"))
    return opts


def _round_up(x: float) -> float:
    """Two significant digits, rounded up."""
    if x <= 0:
        return x
    e = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / e - 1e-9) * e


def fit(pipeline: Pipeline, deploys: list[str], incidents: dict[str, int], outs: dict[str, Outcome]
        ) -> dict[str, Choice]:
    policy = {r.name: Choice() for r in pipeline.rules}
    for _ in range(2):
        for rule in pipeline.rules:
            best, best_key = policy[rule.name], None
            for opt in _options(rule, deploys, incidents, outs):
                trial = {**policy, rule.name: opt}
                k = _key(score(deploys, incidents, outs, trial))
                if best_key is None or k > best_key:
                    best, best_key = opt, k
            policy[rule.name] = best
    return policy


def apply(pipeline: Pipeline, policy: dict[str, Choice]) -> tuple[Pipeline, list[str]]:
    """The tuned pipeline and one line per change with its reason."""
    rules, diff = [], []
    for r in pipeline.rules:
        c = policy.get(r.name, Choice())
        new = r
        if c.floor > r.min_effect:
            new = dataclasses.replace(new, min_effect=c.floor)
            diff.append(f"rules.{r.name}.min_effect: {r.min_effect:g} -> {c.floor:g}  # {c.why}")
        if c.cap < 3:
            cap = NAMES[c.cap]
            act = NAMES[min(RANK[r.action], c.cap)]
            crit = NAMES[min(RANK[r.critical_action], c.cap)] if r.critical_action else ""
            if act != r.action or crit != r.critical_action:
                new = dataclasses.replace(new, action=act, critical_action=crit)
                diff.append(f"rules.{r.name}.action: {r.action}/{r.critical_action or '-'} -> {act}/{crit or '-'}"
                            f"  # capped at {cap}: {c.why}")
        if c.promote and r.action == "ticket":
            new = dataclasses.replace(new, action="page")
            diff.append(f"rules.{r.name}.action: ticket -> page  # {c.why}")
        rules.append(new)
    tuned = dataclasses.replace(pipeline, rules=tuple(rules) if isinstance(pipeline.rules, tuple) else rules)
    return tuned, diff


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + v for k, v in b.items()}


def leave_one_incident_out(pipeline: Pipeline, deploy_order: list[str], incidents: dict[str, int],
                           outs: dict[str, Outcome], progress=None) -> dict:
    """`progress(folds done, seconds)` after each fold, when given (with a `total` attribute set here)."""
    failing = [d for d in deploy_order if incidents.get(d)]
    default = {r.name: Choice() for r in pipeline.rules}
    if len(failing) < 2:
        return {"folds": 0, "why": "needs at least two deploys with an incident"}
    benign = [d for d in deploy_order if not incidents.get(d)]
    k = min(len(failing), MAX_FOLDS)
    held_default: dict = {}
    held_tuned: dict = {}
    changed = 0
    final = fit(pipeline, deploy_order, incidents, outs)
    if progress is not None:
        progress.total = k
    t0 = time.perf_counter()
    for i in range(k):
        test = {*failing[i::k], *benign[i::k]}
        train = [d for d in deploy_order if d not in test]
        fitted = fit(pipeline, train, incidents, outs)
        changed += fitted != final
        held = [d for d in deploy_order if d in test]
        held_default = _add(held_default, score(held, incidents, outs, default))
        held_tuned = _add(held_tuned, score(held, incidents, outs, fitted))
        if progress is not None:
            progress(i + 1, time.perf_counter() - t0)
    return {"folds": k, "incidents_held_out_per_fold": round(len(failing) / k, 2), "folds_fitting_another_policy_than_all_deploys": changed,
            "in_sample": {"default": score(deploy_order, incidents, outs, default),
                          "tuned": score(deploy_order, incidents, outs, final)},
            "out_of_sample": {"default": held_default, "tuned": held_tuned}}


def tune(pipeline: Pipeline, deploy_order: list[str], incidents: dict[str, int], outs: dict[str, Outcome],
         progress=None) -> dict:
    """Fit on the earliest 2/3 of deploys and score both halves; then fit on all of them for tuned.toml."""
    cut = int(math.ceil(len(deploy_order) * TRAIN_SHARE))
    train, test = deploy_order[:cut], deploy_order[cut:]
    default = {r.name: Choice() for r in pipeline.rules}
    fitted = fit(pipeline, train, incidents, outs)
    final = fit(pipeline, deploy_order, incidents, outs)
    tuned, diff = apply(pipeline, final)
    return {
        "method": "decision layer re-run from recorded firings; time-ordered split, fitted on the earliest 2/3",
        "in_sample": {"default": score(train, incidents, outs, default),
                      "tuned": score(train, incidents, outs, fitted)},
        "out_of_sample": {"default": score(test, incidents, outs, default),
                          "tuned": score(test, incidents, outs, fitted)},
        "all": {"default": score(deploy_order, incidents, outs, default),
                "tuned": score(deploy_order, incidents, outs, final)},
        "leave_one_incident_out": leave_one_incident_out(pipeline, deploy_order, incidents, outs, progress),
        "diff": diff,
        "toml": to_toml(tuned),
    }
