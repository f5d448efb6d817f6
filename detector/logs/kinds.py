"""Kinds of log evidence: what a template says went wrong.

The judge's root-cause hint needs more than "errors went up": a missing
configuration key points at the change's configuration, a refused connection
at a dependency, a NullPointerException at the code. `classify` reads a
template's text (placeholders included) and returns one kind:

- `config`: configuration keys, missing or invalid settings, environment
  variables, properties, a config file that is not there;
- `connection`: refused/reset connections, timeouts, unavailable or
  unreachable dependencies, exhausted pools, DNS failures;
- `data`: constraint violations, (de)serialisation, schema and parse errors;
- `exception`: exceptions, stack traces, panics, assertion failures;
- `other`: none of these.

The rules are tried in that order (after a few unmistakable code faults), so
`ConfigurationException` is `config`, `ConnectTimeoutException` is
`connection` and `JsonParseException` is `data`. `KIND_CATEGORY` maps a kind
to the verdict's `root_cause.category` it suggests when the deploy's own
version emits it.
"""

from __future__ import annotations

import re

KINDS = ("config", "connection", "data", "exception", "other")

KIND_CATEGORY = {
    "config": "config",
    "connection": "data_or_infra",
    "data": "data_or_infra",
    "exception": "code",
    "other": "unknown",
}

_I = re.IGNORECASE
# Faults that are code whatever words follow (JavaScript's "Cannot read property"
# would otherwise look like configuration).
_CODE = re.compile(r"cannot read propert|undefined is not|is not a function|nil pointer|null ?pointer"
                   r"|segmentation fault|sigsegv|index out of (range|bounds)", _I)
_CONFIG_FILE = r"\.(ya?ml|json|toml|ini|conf|cfg|env|properties)\b"
_MISSING_FILE = r"(no such file|not found|cannot (open|read|load)|failed to (open|read|load))"
_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("config", re.compile(
        r"\bconfig|\bsettings?\b|\benv(ironment)?\b|env var|environment variable|\bpropert(y|ies)|missing (required )?"
        r"(key|option|parameter|argument|value|variable|secret|credential)|(invalid|illegal|unknown|unsupported|bad) "
        r"(value|option|parameter|key|flag|setting)|feature flag|not (set|configured|defined)\b"
        rf"|{_MISSING_FILE}.*{_CONFIG_FILE}|{_CONFIG_FILE}.*{_MISSING_FILE}", _I)),
    ("connection", re.compile(
        r"connect(ion)?\s*(refused|reset|closed|aborted|timed? ?out|failed|error|lost)|econn(refused|reset)"
        r"|timed? ?out|timeout|deadline exceeded|unavailable|unreachable|\bupstream\b|no route to host|broken pipe"
        r"|pool (is )?exhausted|too many connections|connection pool|could not (connect|resolve)"
        r"|name resolution|\bdns\b|unknown host|host not found|circuit (breaker )?open|socket|handshake", _I)),
    ("data", re.compile(
        r"constraint|violat|duplicate (key|entry)|integrity|foreign key|deserializ|serializ|unmarshal|marshal"
        r"|schema|pars(e|ing)|malformed|invalid (json|xml|format|input|payload|request body|encoding|character)"
        r"|unexpected (token|end of|eof|character)|decod(e|ing)|checksum|corrupt|data ?type|type mismatch", _I)),
    ("exception", re.compile(
        r"exception|traceback|stack ?trace|\bpanic|assert|\w+error\b|\berror:|unhandled|uncaught|fatal error"
        r"|\bat [\w$.]+\(|goroutine|abort", _I)),
)


def classify(template: str) -> str:
    """The kind of evidence a template's text is; one of `KINDS`."""
    if _CODE.search(template):
        return "exception"
    for kind, rx in _RULES:
        if rx.search(template):
            return kind
    return "other"
