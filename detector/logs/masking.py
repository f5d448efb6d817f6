"""Masking: replace the variable parts of a log message with typed placeholders.

The miner groups messages by their constant tokens; it copes with a few
variable tokens per message but not with high-cardinality text in every line.
Masking first makes "timeout after 3000 ms talking to 10.0.0.7:5432" and
"timeout after 12 ms talking to 10.0.0.9:5432" the same token list, so most
lines never reach the miner's tree at all (see the masked-message memo in
`miner.py`).

What is masked (rules v2, `MASKING_VERSION`): timestamps and dates (ISO 8601,
clock times, ctime/syslog dates such as `Sun Jul  3 10:05:25 2005`), UUIDs,
e-mail addresses, IPv4 and IPv6 addresses (with port), host:port
(`db-1.internal:5432` -> `<HOST>`), quoted single values, durations
(`3000 ms`, `1.5s`), sizes (`12MB`, `93.0 B,`, `1190 bytes (1.16 KB)` is one
`<SIZE>`), hex numbers and digests (zero-padded 8-digit fields too, so
`00000001` and `0000000a` are one field), identifiers that mix letters and
digits (`req-4821ab`), and numbers wherever no letter or digit touches them
(`/users/42/cart` -> `/users/<NUM>/cart`, `id=7`, `core.2275`, `blk_-42`,
`30546173_4261722401`). A list of values of one kind (`10.0.0.1,10.0.0.2`)
is one value. Quoted text with spaces (a request line `"GET /v2/... HTTP/1.1"`)
keeps its words: the method is a constant word of the event.

What is not masked: words. A constant word tells one event from another
("VM Started" / "VM Stopped"); whether a word is in fact a parameter (a user
name) is the miner's call, on how many different words it sees in one place.

Template texts, and so template ids, are masked text: a change of these
rules changes ids, so it bumps `MASKING_VERSION` (recorded in snapshots).

How, and why this way: one combined regex over a whole line costs ~20 us
(every alternative is tried at every position), more than the whole per-line
budget. Instead the line is split on whitespace (the tokens the miner works on
anyway), constant tokens are looked up in a bounded memo, and only tokens with
a digit or `@` go through the combined pattern, and few of those: ids,
numbers and IPv4 addresses, alone or after a plain `key=`, are recognised by
one full match (and ids kept out of the memo: they are seen once), a token
whose shape (its digits aside) was seen before is masked as that shape was,
`key=value` is masked piece by piece (each shortcut gives what the pattern
gives; why is written next to each below). Quoted values may contain
spaces, so they are replaced first, and only in lines that contain a quote
character; a number followed by a unit token (`3000 ms`, `12 MB`) and a
ctime date are merged into one placeholder afterwards (the unit merge through
a bounded memo of masked token lists: they repeat).

Multi-line messages (stack traces) are reduced to their first line; a Python
traceback, whose first line says nothing, keeps its last line (the exception).
The line is cut to `max_chars` and `max_tokens` before masking, which bounds
the work per line whatever the input.
"""

from __future__ import annotations

import re

PLACEHOLDERS = ("<TS>", "<UUID>", "<EMAIL>", "<IP>", "<HOST>", "<STR>", "<DUR>", "<SIZE>", "<HEX>", "<ID>",
                "<NUM>")

# The version of the rules below. Template texts (and so template ids) are
# masked text: a change of any rule changes them, so it bumps this version,
# which the log-template snapshot records (see templates.py).
MASKING_VERSION = 2

_H = "[0-9a-fA-F]"
# Tried in this order at each position of a token; the first that matches wins.
# A number is masked wherever no letter or digit touches it (`core.2275`,
# `blk_-42`, `30546173_4261722401`); a letter or digit next to it makes the
# token an identifier (`en0`, `v2`) that the ID rule masks only from 6 chars.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("TS", r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
           r"|(?<![\w:])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w:])"),
    ("UUID", rf"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}"),
    ("EMAIL", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("IP", rf"(?<![\w:.])(?:{_H}{{0,4}}:){{2,7}}{_H}{{1,4}}(?![\w:])"
           r"|(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"),
    # host:port as one value: a host name left in place would be a constant
    # token to the miner (and the first token of many proxy and client logs).
    ("HOST", r"(?<![\w.-])(?:[A-Za-z0-9][\w-]*(?:\.[\w-]+)+|localhost):\d{1,5}(?![\w.])"),
    ("DUR", r"(?<![\w.])\d+(?:\.\d+)?(?:ns|us|µs|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hrs?|hours?)(?!\w)"),
    ("SIZE", r"(?<![\w.])\d+(?:\.\d+)?(?:[KMGTP]i?B|[kmgt]b|bytes?|B)(?!\w)"),
    # Hex: 0x..., 8+ hex digits with a letter, or 8+ digits with a leading zero
    # (a zero-padded fixed-width field: `00000001` and `0000000a` are one field).
    ("HEX", rf"(?<![\w-])(?:0[xX]{_H}+|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F]){_H}{{8,}}|0\d{{7,}})(?![\w-])"),
    ("ID", r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{6,}(?![\w-])"),
    ("NUM", r"(?<![A-Za-z0-9])[-+]?\d+(?:\.\d+)*(?![A-Za-z0-9])"),
)
_COMBINED = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS))
_REPLACEMENT = {name: f"<{name}>" for name, _ in _PATTERNS}
# A single quote opens a value only after a non-word character and closes one
# only before a non-word character (so "don't" is not a quote). `<` and `>`
# count as word characters here: a placeholder next to a quote must not turn
# it into a value on a second pass (masking is idempotent).
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<![\w>])'[^'\n]*'(?![\w<])|`[^`\n]*`")
_HAS_VARIABLE = re.compile(r"[\d@]").search
# A list of values of one kind (`10.0.0.1,10.0.0.2`) is one value: lines with
# one address and lines with two are the same event.
_LIST = re.compile(r"(<[A-Z]+>)(?:[,;]\1)+")

# Unit tokens that turn a preceding "<NUM>" token into a duration or a size.
_DURATION_UNITS = frozenset(("ns", "us", "µs", "ms", "s", "sec", "secs", "second", "seconds", "min", "mins",
                             "minute", "minutes", "h", "hr", "hrs", "hour", "hours"))
_SIZE_UNITS = frozenset(("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "bytes", "byte"))
_UNITS = _DURATION_UNITS | _SIZE_UNITS
# A unit may end a clause: "(estimated size 93.0 B, free 317.1 KB)".
_PUNCT_UNITS = frozenset(u + p for u in _UNITS for p in ",.;:)]")
_ANY_UNIT = _UNITS | _PUNCT_UNITS
# A ctime/syslog date ("Sun Jul  3 10:05:25 2005") is one timestamp, not two
# constant words and three numbers.
_MONTHS = frozenset("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
_WEEKDAYS = frozenset("Mon Tue Wed Thu Fri Sat Sun".split())

# Memo of token -> masked token. Masking is a pure function, so the memo is
# shared by every miner; it is cleared when full, which bounds its memory under
# a flood of distinct tokens at the price of a few re-masked tokens.
_MEMO_MAX_TOKENS = 100_000
_memo: dict[str, str] = {}
# Masked token lists with a unit -> the list with units merged (`_merge_units`), cleared when
# full (the demo holds 59 such lists, the quiet history 49; at most ~48 tokens each).
_MEMO_MAX_LINES = 4_096
_units_memo: dict[tuple[str, ...], tuple[str, ...]] = {}


# Memo of token shape -> how the rules mask it. The shape is the token with
# the digits 1-9 written as 1 (0 is kept: `0x..` and zero-padded fields are
# rules of their own). No rule names a digit 1-9 (they only say `\d`,
# `[0-9a-fA-F]`, `\w`, ...), so the rules match two tokens of one shape at the
# same places with the same placeholders, and the text left between matches
# differs only in its digits (`56375827` and `12` are not one shape,
# `10.0.3.7` and `10.0.9.2` are, so are `/v1/users/42` and `/v1/users/7`). The
# memo holds the masked text when no digit 1-9 is left outside a placeholder,
# else the parts, the text holding such digits as slices of the token (see
# `_recipe`). Numbers, addresses, paths and `key=number` values vary a lot
# but take few shapes, so most tokens the token memo misses skip the regex.
_ONE_DIGIT = str.maketrans("23456789", "11111111")
_KEEPS_DIGIT = re.compile("[1-9]").search
# Random ids take as many shapes as values (digits and letters mix at random),
# so the two common ones are recognised whole. What the combined rules make of
# such a token: a UUID (`144e6379-0f3b-...`) is `<UUID>` (no TS rule matches
# at its start: its fifth character is no `-`, it has no `:`); 8 or more
# lower-case hex digits with a digit and a letter (`9bf70817f5da8535`) are
# `<HEX>` (no rule before HEX can match: they need `-`, `:`, `.`, `@`, `x` or a
# unit, and the units that hold only hex letters are upper-case `B`).
_ID = re.compile(rf"(?P<UUID>{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}})"
                 r"|(?P<HEX>(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,})").fullmatch
_shape_memo: dict[str, str | tuple[str | slice, ...]] = {}

# The values a token memo misses most (ids, numbers, addresses), alone or after a
# key of ASCII letters and `_`, in one full match: `key=` is kept, the value is one
# placeholder. What the combined rules make of each (the token holds a digit, so
# they run): the key holds no digit, `@`, `-`, `:`, `.` or `=`, so no rule
# matches in it (each needs one of those, or the ID rule a digit in the key's
# `[\w-]` run, which `=` ends), and none matches across `=` (no rule's characters
# include it), so the rules mask the value as if it stood alone after a non-word
# character:
# - UUID with a digit: no TS rule matches at its start (its fifth character is
#   no `-`, it has no `:`), so UUID does, whole;
# - lower-case hex, 8+ characters, a digit and a letter a-f: the rules before HEX
#   need `-`, `:`, `.`, `@`, `x` or a unit, and every unit holds a letter that is
#   no lower-case hex digit; HEX matches, whole;
# - a decimal number (ASCII, no leading zero but `0` itself, at most one `.`):
#   TS needs `-` or `:`, IP three dots, HOST `:`, DUR and SIZE a unit, HEX a
#   letter, `0x` or a leading zero, ID a letter; NUM matches, whole;
# - four dotted groups of 1-3 ASCII digits: the IPv4 rule, whole.
# A UUID without any digit leaves the token digit-free: kept as it is, so the
# pattern asks for one. Misses of any other kind take the general path below.
_FAST = re.compile(
    rf"(?P<key>[A-Za-z_]*=)?(?:(?=[-0-9a-fA-F]*[0-9])(?P<UUID>{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}})"
    r"|(?P<HEX>(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,})"
    r"|(?P<NUM>(?:[1-9][0-9]*|0)(?:\.[0-9]+)?)"
    r"|(?P<IP>[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}))").fullmatch


_finditer = _COMBINED.finditer


def _mask_token(token: str) -> str:
    if not _HAS_VARIABLE(token):
        masked = token
    elif (m := _FAST(token)) is not None:  # every token it matches holds a digit
        kind = m.lastgroup
        key = m.group("key")
        masked = _REPLACEMENT[kind] if key is None else key + _REPLACEMENT[kind]  # type: ignore[index]
        if kind == "UUID" or kind == "HEX":
            return masked  # ids are seen once: left out of the memo, which keeps its room for what repeats
    elif "=" in token:
        masked = "=".join([_mask_piece(p) for p in token.split("=")])
    else:
        masked = _mask_part(token)
    if len(_memo) >= _MEMO_MAX_TOKENS:
        _memo.clear()
    _memo[token] = masked
    return masked


def _mask_piece(piece: str) -> str:
    """`piece`, a part of a token between `=` signs, under the combined rules.

    No rule matches `=` and every look-around takes it as the end of the text,
    so `key=value` masks as `key`, `=`, `value`: the key is usually a memoised
    constant and the value's shape a common one. The whole token had a digit
    or `@`, a piece may not: it still goes through the rules if it holds a `-`
    or a `:` (a UUID or an IPv6 address of hex letters only), else no rule
    can match it."""
    if _HAS_VARIABLE(piece) or not ("-" in piece or ":" in piece):
        masked = _memo.get(piece)
        return _mask_token(piece) if masked is None else masked
    return _mask_part(piece)


def _mask_part(token: str) -> str:
    """The combined rules (and the list rule) applied to `token`, whatever it holds."""
    m = _ID(token)
    if m is not None:
        return _REPLACEMENT[m.lastgroup]  # type: ignore[index]
    shape = token.translate(_ONE_DIGIT)
    recipe = _shape_memo.get(shape)
    if recipe is None:
        recipe = _recipe(token)
        if len(_shape_memo) >= _MEMO_MAX_TOKENS:
            _shape_memo.clear()
        _shape_memo[shape] = recipe
        if recipe.__class__ is str:
            return recipe
    elif recipe.__class__ is str:
        return recipe
    masked = "".join([token[part] if part.__class__ is slice else part for part in recipe])
    if "," in masked or ";" in masked:
        masked = _LIST.sub(r"\1", masked)
    return masked


def _recipe(token: str) -> str | tuple[str | slice, ...]:
    """How the rules mask every token of `token`'s shape: the masked text when no digit 1-9
    is left outside a placeholder, else its parts, the text left between matches that holds
    such a digit as a slice of the token (the same places in every token of the shape)."""
    parts: list[str | slice] = []
    last = 0
    for m in _finditer(token):
        start = m.start()
        if start > last:
            text = token[last:start]
            parts.append(slice(last, start) if _KEEPS_DIGIT(text) else text)
        parts.append(_REPLACEMENT[m.lastgroup])  # type: ignore[index]
        last = m.end()
    if last < len(token):
        text = token[last:]
        parts.append(slice(last, None) if _KEEPS_DIGIT(text) else text)
    if any(part.__class__ is slice for part in parts):
        return tuple(parts)
    masked = "".join(parts)  # type: ignore[arg-type]
    if "," in masked or ";" in masked:
        masked = _LIST.sub(r"\1", masked)
    return masked


def _quoted(m: re.Match) -> str:
    """A quoted value is one placeholder; quoted text with spaces (a request
    line, a message) keeps its words, which are masked like any others."""
    text = m.group()
    return text if " " in text or "\t" in text else "<STR>"


def first_line(message: str) -> str:
    """The line of a multi-line message that names what happened."""
    head, _, rest = message.partition("\n")
    if head.startswith("Traceback (most recent call last)"):
        lines = [ln for ln in rest.splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
    return head


def mask_tokens(message: str, max_chars: int = 2000, max_tokens: int = 48) -> list[str]:
    """The masked whitespace tokens of `message`, at most `max_tokens` of them."""
    if "\n" in message:
        message = first_line(message)
    if len(message) > max_chars:
        message = message[:max_chars]
    if '"' in message or "'" in message or "`" in message:
        message = _QUOTED.sub(_quoted, message)
    tokens = message.split()
    if len(tokens) > max_tokens:
        del tokens[max_tokens:]
    get = _memo.get
    out = [get(t) or _mask_token(t) for t in tokens]
    if not _ANY_UNIT.isdisjoint(out):
        # A pure function of the masked tokens, which repeat: "timed out after <NUM> ms ..."
        shape = tuple(out)
        merged = _units_memo.get(shape)
        if merged is None:
            merged = tuple(_merge_units(out))
            if len(_units_memo) >= _MEMO_MAX_LINES:
                _units_memo.clear()
            _units_memo[shape] = merged
        out = list(merged)
    if "<TS>" in out and not _MONTHS.isdisjoint(out):
        out = _merge_dates(out)
    return out


def _merge_units(tokens: list[str]) -> list[str]:
    """`<NUM> ms` -> `<DUR>`, `<NUM> KB,` -> `<SIZE>,`; `<SIZE> (<NUM> KB)` -> `<SIZE>`."""
    out: list[str] = []
    for t in tokens:
        prev = out[-1] if out else ""
        if prev.endswith("<NUM>"):
            unit = t.rstrip(",.;:)]")
            if unit in _UNITS:
                kind = "<DUR>" if unit in _DURATION_UNITS else "<SIZE>"
                if prev == "(<NUM>" and t == unit + ")" and len(out) > 1 and out[-2] == kind:
                    out.pop()  # the same value said twice: "1190 bytes (1.16 KB)"
                else:
                    out[-1] = prev[:-5] + kind + t[len(unit):]
                continue
        out.append(t)
    return out


def _merge_dates(tokens: list[str]) -> list[str]:
    """`[weekday] month <NUM> <TS> [<NUM>]` -> `<TS>`."""
    out: list[str] = []
    year_next = False
    for t in tokens:
        if t == "<TS>" and len(out) >= 2 and out[-1] == "<NUM>" and out[-2] in _MONTHS:
            del out[-2:]
            if out and out[-1] in _WEEKDAYS:
                out.pop()
            out.append(t)
            year_next = True
            continue
        if year_next and t == "<NUM>":
            year_next = False
            continue
        year_next = False
        out.append(t)
    return out


def mask(message: str, max_chars: int = 2000, max_tokens: int = 48) -> str:
    """`message` masked and whitespace-normalised: the text templates are mined from."""
    return " ".join(mask_tokens(message, max_chars, max_tokens))
