"""Strict reading of one scenario TOML table: every key typed, bounded and used.

`_Table` remembers its path in the file and the keys read, so a wrong type,
an impossible value, a missing key or an unknown one is a `ScenarioError`
naming the file, the key, the value and what was expected. `_start_ts` reads
the scenario's start (a Unix time or an RFC 3339 time with an offset).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

from detector.simulate.spec import ScenarioError


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


class _Table:
    """One TOML table being read: remembers its path and which keys were used."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: {where or 'top level'} must be a table (got {_tname(data)})")
        self.data = data
        self.where = where
        self.source = source
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def fail(self, k: str, value: Any, expected: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {self.key(k)} must be {expected} (got {value!r})")

    def has(self, k: str) -> bool:
        return k in self.data

    def raw(self, k: str, default: Any = ...) -> Any:
        self.used.add(k)
        if k not in self.data:
            if default is ...:
                raise ScenarioError(f"{self.source}: missing required key {self.key(k)}")
            return default
        return self.data[k]

    def num(
        self,
        k: str,
        default: Any = ...,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
    ) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        bounds = " and ".join(s for s in (lo_s, hi_s) if s)
        expected = f"a number{' ' + bounds if bounds else ''}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(k, v, expected)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.fail(k, v, expected)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise self.fail(k, v, expected)
        return float(v)

    def int_(self, k: str, default: Any = ..., *, lo: int | None = None, hi: int | None = None) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        expected = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(k, v, expected)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(k, v, expected)
        return v

    def str_(self, k: str, default: Any = ..., *, choices: tuple[str, ...] | None = None) -> Any:
        v = self.raw(k, default)
        if v is default and default is not ...:
            return default
        if choices is not None:
            if v not in choices:
                raise self.fail(k, v, "one of " + ", ".join(repr(c) for c in choices))
            return v
        if not isinstance(v, str) or not v.strip():
            raise self.fail(k, v, "a non-empty string")
        if len(v) > 200:
            raise self.fail(k, v, "a string of at most 200 characters")
        return v

    def bool_(self, k: str, default: bool) -> bool:
        v = self.raw(k, default)
        if not isinstance(v, bool):
            raise self.fail(k, v, "true or false")
        return v

    def str_list(self, k: str) -> tuple[str, ...]:
        v = self.raw(k, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(k, v, "an array of non-empty strings")
        if len(set(v)) != len(v):
            raise self.fail(k, v, "an array without duplicates")
        return tuple(v)

    def tables(self, k: str, required: bool = False) -> list[_Table]:
        v = self.raw(k, ... if required else [])
        if not isinstance(v, list):
            raise self.fail(k, v, "an array of tables ([[" + self.key(k) + "]])")
        if required and not v:
            raise self.fail(k, v, "a non-empty array of tables")
        return [_Table(item, f"{self.key(k)}[{i}]", self.source) for i, item in enumerate(v)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            raise ScenarioError(
                f"{self.source}: unknown key {self.key(unknown[0])!s} (allowed here: {allowed}); "
                "check its spelling or remove it"
            )


def _start_ts(t: _Table) -> float:
    v = t.raw("start")
    if isinstance(v, bool):
        raise t.fail("start", v, "a Unix time in seconds or an RFC 3339 time with an offset")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0:
            raise t.fail("start", v, "a Unix time >= 0")
        return float(v)
    dt: Any = v
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z"))
        except ValueError:
            raise t.fail(
                "start", v, "a Unix time in seconds or an RFC 3339 time such as 2026-11-26T07:30:00Z"
            ) from None
    if isinstance(dt, datetime):
        if dt.tzinfo is None:
            raise t.fail("start", v, "an RFC 3339 time with a UTC offset or 'Z'")
        return dt.astimezone(UTC).timestamp()
    if isinstance(dt, date):
        raise t.fail("start", v, "a date with a time and an offset, e.g. 2026-11-26T07:30:00Z")
    raise t.fail("start", v, "a Unix time in seconds or an RFC 3339 time")
