"""Plain values of a core state snapshot: the JSON-able form of Python values and back.

Floats that JSON cannot hold, tuples, dicts with non-string keys and the few
dataclasses a snapshot may name (a fixed table: nothing else is ever
constructed from a snapshot) are tagged objects; see `detector.state`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from detector.ingest.columns import CheckEvent, DeployEvent
from detector.judge.verification import Finding
from detector.logs.findings import TemplateFinding
from detector.records import Verdict
from detector.state.frame import StateError

# dataclasses a snapshot may name; only these are ever constructed from a snapshot
_CLASSES: dict[str, type] = {c.__name__: c for c in (DeployEvent, CheckEvent, Finding, TemplateFinding, Verdict)}


def _value(v: Any) -> Any:
    """A JSON-able form of a plain value: see the tags in the module docstring."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"$f": repr(f)}
    if isinstance(v, tuple):
        return {"$t": [_value(x) for x in v]}
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _value(x) for k, x in v.items()}
        return {"$d": [[_value(k), _value(x)] for k, x in v.items()]}
    name = type(v).__name__
    if _CLASSES.get(name) is type(v):
        return {"$c": name, "v": {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    raise StateError(f"cannot snapshot a value of type {type(v).__qualname__} ({v!r:.80}); "
                     "extend detector/state/values.py")


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _unvalue(j: Any) -> Any:
    """Inverse of `_value`; ValueError on anything `_value` cannot have written."""
    if j is None or isinstance(j, (bool, int, float, str)):
        return j
    if isinstance(j, list):
        return [_unvalue(x) for x in j]
    if not isinstance(j, dict):
        raise ValueError(f"unexpected JSON value {j!r:.80}")
    tags = [k for k in j if k.startswith("$")]
    if not tags:
        return {k: _unvalue(x) for k, x in j.items()}
    if set(j) == {"$f"} and j["$f"] in _NON_FINITE:
        return _NON_FINITE[j["$f"]]
    if set(j) == {"$t"} and isinstance(j["$t"], list):
        return tuple(_unvalue(x) for x in j["$t"])
    if set(j) == {"$d"} and isinstance(j["$d"], list):
        out = {}
        for pair in j["$d"]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"dict item should be [key, value], got {pair!r:.80}")
            out[_unvalue(pair[0])] = _unvalue(pair[1])
        return out
    if set(j) == {"$c", "v"} and j["$c"] in _CLASSES and isinstance(j["v"], dict):
        cls = _CLASSES[j["$c"]]
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        # fields added later (with defaults) may be absent from an older snapshot
        required = {f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not required <= set(j["v"]) <= set(names):
            raise ValueError(f"{cls.__name__} should have fields {names}, got {sorted(j['v'])}")
        return cls(**{k: _unvalue(x) for k, x in j["v"].items()})
    raise ValueError(f"unknown tagged value {j!r:.120} (known classes: {sorted(_CLASSES)})")


def _restore_fields(obj: Any, saved: Any) -> None:
    """Set every dataclass field of `obj` from `saved`, which must name exactly those fields."""
    names = [f.name for f in dataclasses.fields(obj)]
    if not isinstance(saved, dict) or set(saved) != set(names):
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{type(obj).__name__} should have fields {names}, got {got}")
    for k in names:
        setattr(obj, k, _unvalue(saved[k]))
