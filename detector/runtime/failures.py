"""How `detector run` stops short: a stop request during a broker wait, a failure the user must see."""

from __future__ import annotations

from detector.runtime.topics import BrokerUnavailable


class Stopped(Exception):
    """A stop was requested while an operation waited for the broker."""


class RunFailure(RuntimeError):
    """`detector run` cannot go on; the message is the one line the user sees."""


def short_error(e: BaseException) -> str:
    """An exception as one short line (aiokafka's messages can be long or empty)."""
    if isinstance(e, BrokerUnavailable) and e.__cause__ is not None:
        e = e.__cause__
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__
