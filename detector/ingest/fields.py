"""The contract's field rules that both decoders share: limits, level names, event time.

`contract.py` (the precise decoder, every rejection with its reason; its rules
in `columnchecks.py` and `eventchecks.py`) and `fastpath.py` (msgspec structs
for clean batches) read the same limits and the same timestamp rule, so a
batch decodes alike whichever path takes it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from detector.ingest.columns import LEVEL_ERROR, LEVEL_FATAL, LEVEL_WARN

DEFAULT_MAX_BYTES = 1_048_576
MAX_SERVICE_CHARS = 200
MAX_NAME_CHARS = 2_000
MAX_LEVEL_CHARS = 64
EVENT_TYPES = ("request", "log", "metric", "deploy", "check", "incident")

LEVELS = {
    "WARN": LEVEL_WARN,
    "WARNING": LEVEL_WARN,
    "ERROR": LEVEL_ERROR,
    "FATAL": LEVEL_FATAL,
    "CRITICAL": LEVEL_FATAL,
}

_NUM = {int, float}


class BadEvent(ValueError):
    """One event breaks the contract; the message is the dead-letter reason."""


def parse_ts(value: Any) -> float:
    """Event time in Unix seconds from a JSON number or an RFC 3339 string."""
    if type(value) in _NUM:
        ts = float(value)
        if not math.isfinite(ts):
            raise BadEvent(f"field 'ts' must be finite (got {value!r})")
        return ts
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise BadEvent(f"field 'ts' is not a number nor an RFC 3339 time (got {value[:64]!r})") from None
        if dt.tzinfo is None:
            raise BadEvent(f"field 'ts' RFC 3339 time needs a UTC offset or 'Z' (got {value[:64]!r})")
        return dt.timestamp()
    if value is None:
        raise BadEvent("missing field 'ts'")
    raise BadEvent(f"field 'ts' must be a number or an RFC 3339 string (got {_jtype(value)})")


def _jtype(v: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(v), type(v).__name__)
