"""The judging side of a core state snapshot: the judge's verifications and the fleet gate.

A verification refers to its populations by index into the snapshot's
population row table; the fleet gate's waiting windows are a row table of
closed windows, and its head may be the history's newest window itself.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.aggregate.windows import WindowFacts
from detector.ingest.columns import DeployEvent
from detector.judge.evidence import Population
from detector.judge.verification import Finding, Verification
from detector.logs.findings import TemplateFinding
from detector.records import Verdict
from detector.state.frame import _Reader, _Writer
from detector.state.rows import (_check_facts, _fact_fields, _fact_from_row, _pop_fields, _pop_from_row,
                                 _read_rows, _Rows)
from detector.state.values import _unvalue, _value

if TYPE_CHECKING:
    from detector.core import Core

def _gate_state(w: _Writer, gate: Any) -> dict:
    """The fleet gate: closed windows still waiting for the fleet (their facts exist nowhere
    else), the horizons queued between them, and what was already published."""
    facts = _Rows(w, _fact_fields())
    order = []
    for item in gate.queue:
        if isinstance(item, WindowFacts):
            facts.add(item)
            order.append(None)
        else:
            order.append(float(item))
    return {"order": order, "facts": facts.write(), "head_ready": gate.head_ready,
            "published_end": None if not np.isfinite(gate._published_end) else gate._published_end,
            "templates_sent": sorted(gate._templates_sent)}


def _restore_gate(r: _Reader, saved: dict, core: Core) -> None:
    facts = [_fact_from_row(row, start, end) for row, (start, end) in _read_rows(r, saved["facts"], _fact_fields())]
    _check_facts(facts, len(core.requests), len(core.metrics))
    order = saved["order"]
    if sum(1 for o in order if o is None) != len(facts):
        raise ValueError("gate queue order does not match its windows")
    head_ready = bool(saved["head_ready"])
    if head_ready and not (facts and order[0] is None and core.history and core.history[-1].end == facts[0].end):
        raise ValueError("the gate's prepared window is not the newest of the history")
    it = iter(facts)
    queue = [next(it) if o is None else float(o) for o in order]
    if head_ready:
        queue[0] = core.history[-1]  # the prepared head is the history's newest window, one object
    gate = core.gate
    gate.queue.clear()
    gate.queue.extend(queue)
    gate.head_ready = head_ready
    gate._templates_sent = set(saved["templates_sent"])
    if saved["published_end"] is not None:
        gate._published_end = float(saved["published_end"])


_VERIFICATION_SPECIAL = ("pre", "slices")


def _verification_state(v: Verification, pops: _Rows) -> dict:
    out = {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v) if f.name not in _VERIFICATION_SPECIAL}
    out["pre"] = None if v.pre is None else pops.add(v.pre)
    out["slices"] = [[_value(start), [[kind, pops.add(p)] for kind, p in by_kind.items()]]
                     for start, by_kind in v.slices.items()]
    return out


def _verification_from(saved: dict, pops: list[Population]) -> Verification:
    fields = dataclasses.fields(Verification)
    names = [f.name for f in fields]
    # fields added later with defaults (the ticket hold, the watch) may be absent from an older snapshot
    required = {f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not required <= set(saved) <= set(names):
        raise ValueError(f"Verification should have fields {names}, got {sorted(saved)}")

    def pop(ref: Any) -> Population:
        if type(ref) is not int or not 0 <= ref < len(pops):
            raise ValueError(f"population reference {ref!r} is not one of the {len(pops)} stored populations")
        return pops[ref]

    kwargs = {k: _unvalue(saved[k]) for k in names if k in saved and k not in _VERIFICATION_SPECIAL}
    kwargs["pre"] = None if saved["pre"] is None else pop(saved["pre"])
    kwargs["slices"] = {_unvalue(start): {kind: pop(ref) for kind, ref in by_kind}
                        for start, by_kind in saved["slices"]}
    v = Verification(**kwargs)
    if not isinstance(v.deploy, DeployEvent) or not (v.verdict is None or isinstance(v.verdict, Verdict)) \
            or not all(isinstance(f, Finding) for f in v.findings.values()) \
            or not all(isinstance(f, TemplateFinding) for f in [*v.log_findings, *v.log_reported.values()]):
        raise ValueError(f"verification of deploy {getattr(v.deploy, 'deploy_id', v.deploy)!r} holds objects "
                         "of the wrong kind")
    return v


def _restore_judge(r: _Reader, saved: dict, core: Any) -> None:
    pops = [_pop_from_row(parts, scalars) for parts, scalars in _read_rows(r, saved["populations"], _pop_fields())]
    verifications, grace = {}, {}
    # "grace" (verdicts whose root cause may still be completed) is absent from older snapshots.
    for held, items in ((verifications, saved["verifications"]), (grace, saved.get("grace", []))):
        for sid, v in items:
            if type(sid) is not int or not 0 <= sid < len(core.interner):
                raise ValueError(f"verification key {sid!r} is not an interned service id")
            held[sid] = _verification_from(v, pops)
    done = saved["done"]
    if not (isinstance(done, list) and all(isinstance(d, str) for d in done)):
        raise ValueError("judged deploy ids should be a list of strings")
    judge = core.judge
    judge.verifications = verifications
    judge.grace = grace
    judge.done.clear()
    judge.done.extend(done)
    if "smoke" in saved:  # absent from snapshots written before smoke checks existed: no runs kept
        judge.smoke.load_state(saved["smoke"])
