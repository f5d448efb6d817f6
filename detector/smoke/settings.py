"""`[[smoke]]` entries and the `[prober]` section of a pipeline file, validated once.

A smoke check is one HTTP request the prober sends after each deploy of its
service: `delay_s` after the deploy started, then every `interval_s`, `runs`
times. It passes when the answer has `expect_status` and, if set, contains
`expect_body`; a timeout, a refused connection or another status is a failure
with its reason. The check aims at the new version when `url` or a header
value holds `{version}` (e.g. `X-Version = "{version}"` or
`https://{version}.payments.internal/healthz`); then, when the deploy names
its previous version and `stable = true`, each run also probes the stable
version, so the judge can tell a broken deploy from a broken check or a
broken environment. `{service}` and `{deploy_id}` are replaced too.

Header values may name environment variables as `${NAME}` (read when
`detector run` starts, never logged, never published).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PLACEHOLDERS = ("version", "service", "deploy_id")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SmokeSettingError(ValueError):
    """One key of a `[[smoke]]` entry is wrong: (key, value, what was expected)."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(key, value, expected)
        self.key, self.value, self.expected = key, value, expected


@dataclass(frozen=True)
class Prober:
    """Bounds of the built-in prober (`detector run`)."""

    max_in_flight: int = 8  # HTTP requests at once, over every check
    max_scheduled: int = 1_000  # runs waiting for their time; past it new deploys' runs are refused and logged
    max_queued_results: int = 10_000  # results waiting to be published; past it the oldest are dropped and counted

    def check(self) -> None:
        for key in ("max_in_flight", "max_scheduled", "max_queued_results"):
            if getattr(self, key) < 1:
                raise SmokeSettingError(f"prober.{key}", getattr(self, key), "an integer >= 1")


@dataclass(frozen=True)
class SmokeCheck:
    service: str
    name: str
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()  # sorted (name, value); values may hold {version} and ${ENV}
    body: str = ""
    expect_status: int = 200
    expect_body: str = ""  # text the answer must contain ("" = any)
    timeout_s: float = 5.0
    delay_s: float = 30.0  # after the deploy's start
    interval_s: float = 15.0
    runs: int = 4
    stable: bool = True  # aimed checks also probe the deploy's previous version

    @property
    def aimed(self) -> bool:
        """Whether the check can be pointed at one version ({version} in the URL or a header)."""
        return "{version}" in self.url or any("{version}" in v for _, v in self.headers)

    def __repr__(self) -> str:  # header values may be secrets: never shown
        return (f"SmokeCheck(service={self.service!r}, name={self.name!r}, method={self.method!r}, "
                f"url={self.url!r}, headers={[k for k, _ in self.headers]!r})")


_KEYS = {"service": str, "name": str, "url": str, "method": str, "headers": dict, "body": str,
         "expect_status": int, "expect_body": str, "timeout_s": float, "delay_s": float, "interval_s": float,
         "runs": int, "stable": bool}
_REQUIRED = ("service", "name", "url")


def _typed(key: str, tp: type, value: Any) -> Any:
    if tp is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SmokeSettingError(key, value, "a number")
        return float(value)
    if type(value) is not tp:
        expected = {str: "a string", int: "an integer", bool: "true or false",
                    dict: "a table of header name to string value"}[tp]
        raise SmokeSettingError(key, value, expected)
    return value


def _template(key: str, text: str, shown: str | None = None) -> None:
    for name in _PLACEHOLDER.findall(text):
        if name not in PLACEHOLDERS:
            raise SmokeSettingError(key, text if shown is None else shown, f"placeholders among {{{'}, {'.join(PLACEHOLDERS)}}} "
                                               f"(found {{{name}}})")


def parse_check(raw: Any, where: str) -> SmokeCheck:
    if type(raw) is not dict:
        raise SmokeSettingError(where, raw, "a table ([[smoke]])")
    kwargs: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{where}.{k}"
        if k not in _KEYS:
            raise SmokeSettingError(key, v, f"no such key; known keys here: {', '.join(sorted(_KEYS))}")
        kwargs[k] = _typed(key, _KEYS[k], v)
    for k in _REQUIRED:
        if k not in kwargs:
            raise SmokeSettingError(f"{where}.{k}", None, "a value (this key is required)")
        if not kwargs[k].strip():
            raise SmokeSettingError(f"{where}.{k}", kwargs[k], "a non-empty string")
    headers = kwargs.pop("headers", {})
    for name, value in headers.items():
        if type(value) is not str:
            raise SmokeSettingError(f"{where}.headers.{name}", value, "a string")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise SmokeSettingError(f"{where}.headers", name, "HTTP header names (letters, digits, - and _)")
        _template(f"{where}.headers.{name}", _ENV.sub("", value), "(a header value, not shown)")
    check = SmokeCheck(headers=tuple(sorted(headers.items())), **kwargs)
    if not check.url.startswith(("http://", "https://")):
        raise SmokeSettingError(f"{where}.url", check.url, "an http:// or https:// URL")
    _template(f"{where}.url", check.url)
    if check.method not in METHODS:
        raise SmokeSettingError(f"{where}.method", check.method, f"one of {', '.join(METHODS)}")
    if not 100 <= check.expect_status <= 599:
        raise SmokeSettingError(f"{where}.expect_status", check.expect_status, "an HTTP status (100-599)")
    if check.timeout_s <= 0:
        raise SmokeSettingError(f"{where}.timeout_s", check.timeout_s, "a number of seconds > 0")
    if check.delay_s < 0:
        raise SmokeSettingError(f"{where}.delay_s", check.delay_s, "a number of seconds >= 0")
    if check.interval_s <= 0:
        raise SmokeSettingError(f"{where}.interval_s", check.interval_s, "a number of seconds > 0")
    if not 1 <= check.runs <= 1000:
        raise SmokeSettingError(f"{where}.runs", check.runs, "an integer from 1 to 1000")
    return check


def parse_checks(raw: Any) -> tuple[SmokeCheck, ...]:
    if type(raw) is not list:
        raise SmokeSettingError("smoke", raw, "an array of tables ([[smoke]])")
    checks = tuple(parse_check(r, f"smoke[{i}]") for i, r in enumerate(raw))
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(checks):
        if (c.service, c.name) in seen:
            raise SmokeSettingError(f"smoke[{i}].name", c.name, f"a name not used by another check of {c.service!r}")
        seen.add((c.service, c.name))
    return checks


def resolve_env(checks: tuple[SmokeCheck, ...], environ: dict[str, str]) -> tuple[SmokeCheck, ...]:
    """Header values with every `${NAME}` read from `environ` (at `detector run` start)."""
    import dataclasses

    out = []
    for i, c in enumerate(checks):
        headers = []
        for name, value in c.headers:
            for var in _ENV.findall(value):
                if var not in environ:
                    raise SmokeSettingError(f"smoke[{i}].headers.{name}", f"${{{var}}}",
                                            f"an environment variable that is set (set {var} before starting)")
            headers.append((name, _ENV.sub(lambda m: environ[m.group(1)], value)))
        out.append(dataclasses.replace(c, headers=tuple(headers)))
    return tuple(out)
