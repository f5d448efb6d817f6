"""structlog as one JSON object per line on stderr (orjson), with bound context.

Secrets never reach a log line: settings are logged through `redact`.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

SECRET_KEYS = ("password", "secret", "token", "routing_key", "sasl_plain_password")


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiokafka) log through the standard library: send their lines to the
    # same JSON stream instead of Python's plain-text last-resort handler.
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ToStructlog)] + [_ToStructlog()]
    root.setLevel(logging.WARNING)


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not break logging
            message = str(record.msg)
        structlog.get_logger(record.name).log(record.levelno, message)


def redact(settings: dict) -> dict:
    """A copy safe to log: values of secret-looking keys are replaced."""
    return {k: ("***" if v and any(s in k.lower() for s in SECRET_KEYS) else v) for k, v in settings.items()}
