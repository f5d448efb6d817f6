"""The masking shortcuts (token shapes, `key=value` pieces, whole ids) give what the rules give.

`masking._mask_token` skips the combined regex where it can; `_rules` below is
the plain definition (the combined regex over the whole token, the list rule,
tokens without a digit or `@` unchanged). Tokens are drawn so that shapes
repeat (the same characters with other digits or hex letters), so the memos
answer most of them; each case is checked with cold and with warm memos.
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from detector.logs import masking


def _rules(token: str) -> str:
    if not masking._HAS_VARIABLE(token):
        return token
    masked = masking._COMBINED.sub(lambda m: masking._REPLACEMENT[m.lastgroup], token)
    if "," in masked or ";" in masked:
        masked = masking._LIST.sub(r"\1", masked)
    return masked


def _cold() -> None:
    masking._memo.clear()
    masking._shape_memo.clear()
    masking._units_memo.clear()


def _variants(rng: random.Random, base: str, n: int) -> list[str]:
    """`base` with its digits 1-9 and hex letters redrawn: the same shapes, other values."""
    out = []
    for _ in range(n):
        out.append("".join(rng.choice("123456789") if c in "123456789"
                           else rng.choice("abcdef") if c in "abcdef" else c for c in base))
    return out


ALPHABET = "0123456789012345abcdefxXABCDEFTZsmhnbkKMGBiµ٣.:-_,;@/=+()[]"


def test_random_tokens_of_repeated_shapes_mask_as_the_rules_say():
    _cold()
    rng = random.Random(17)
    checked = hits = 0
    for _ in range(20_000):
        base = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 18)))
        for token in _variants(rng, base, 4):
            shape_known = token.translate(masking._ONE_DIGIT) in masking._shape_memo
            assert masking._mask_token(token) == _rules(token), token
            checked += 1
            hits += shape_known
    assert hits > checked // 10  # the shape memo did answer


# Edge tokens of the one-match path (`masking._FAST`): numbers, addresses and ids after any key.
ONE_MATCH_EDGES = [
    "0", "00", "01", "0.5", "00.5", "1.", ".5", "1.2.3", "1.2.3.4", "999.999.999.999", "1.2.3.4.5", "1234.1.1.1",
    "=7", "k==7", "k=0x1f", "k=1e5", "k=12345678", "k=012345678", "k=deadbeef", "k=deadbee1", "k=DEADBEE1",
    "k=1234567", "k=144e6379-0f3b-4051-a34e-22f6af0e5622", "k=144e6379-0f3b-4051-a34e-22f6af0e5622x",
    "é=5", "k=\u0663", "k=1\u0663",
]


@pytest.mark.parametrize("token", [
    "5=abcdefab-abcd-abcd-abcd-abcdefabcdef",  # a digit-free UUID after `=`: masked (the token has a digit)
    "abcdefab-abcd-abcd-abcd-abcdefabcdef",  # no digit nor `@`: kept as it is
    "x=ab:cd:ef:1", "x=ab:cd:ef", "id=7=8", "=5", "5=", "a==5", "ts=2026-11-26T01:02:03Z",
    "request_id=144e6379-0f3b-4051-a34e-22f6af0e5622", "(144e6379-0f3b-4051-a34e-22f6af0e5622)", "/api/v1/users/42/orders", "/api/v2/users/7", "en0,en1",
    "v1.2.3-rc4", "a1b2c3", "a1,b2;c3",
    "144E6379-0F3B-4051-A34E-22F6AF0E5622", "9bf70817f5da8535", "9BF70817F5DA853B", "1234567B", "12345678b",
    "00000001", "0000000a", "0x1f", "size=12MB,", "ips=10.0.0.1,10.0.0.2", "u=a@b.io", "dur=1.5s", "v=en0",
    "host=db-1.internal:5432", "deadbeef", "deadbee1", "1ebc", "abc12345", "12345678", "0123",
] + ONE_MATCH_EDGES)
def test_edge_tokens_mask_as_the_rules_say(token):
    for _ in range(2):  # cold, then from the memos
        _cold()
        assert masking._mask_token(token) == _rules(token)
        assert masking._mask_token(token) == _rules(token)


def test_ids_and_key_values_of_a_log_stream_mask_as_the_rules_say():
    _cold()
    rng = random.Random(3)
    for _ in range(5_000):
        tokens = [
            f"request_id={uuid.UUID(int=rng.getrandbits(128))}",
            f"session={rng.getrandbits(64):016x}", f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(36):09X}B",
            f"total={rng.randint(0, 999)}.{rng.randint(0, 99)}", f"offset={rng.getrandbits(30)}",
            f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}:{rng.randint(1, 65535)}",
            f"{rng.getrandbits(20):x}", f"k={rng.getrandbits(28):07x}", f"x{rng.getrandbits(24)}",
        ]
        for token in tokens:
            assert masking._mask_token(token) == _rules(token), token


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=16), min_size=1, max_size=8))
def test_any_token_masks_as_the_rules_say(tokens):
    for token in tokens + tokens:  # the second time through the memos
        assert masking._mask_token(token) == _rules(token)


# --- the one-match path for ids, numbers and addresses (`masking._FAST`) ---

KEYS = ["", "=", "k=", "request_id=", "a_b=", "K=", "k1=", "k-1=", "k.x=", "k:x=", "a=b=", "k@=", "ab:cd:ef="]
VALUES = [
    lambda r: str(uuid.UUID(int=r.getrandbits(128))),
    lambda r: str(uuid.UUID(int=r.getrandbits(128))).upper(),
    lambda r: "abcdefab-abcd-abcd-abcd-abcdefabcdef",  # no digit
    lambda r: "".join(r.choice("0123456789abcdef") for _ in range(r.randint(1, 40))),
    lambda r: "".join(r.choice("0123456789ABCDEFabcdef") for _ in range(r.randint(6, 20))),
    lambda r: str(r.randint(0, 10 ** r.randint(1, 20))),
    lambda r: "0" * r.randint(1, 3) + str(r.randint(0, 10 ** r.randint(1, 12))),
    lambda r: f"{r.randint(0, 10 ** r.randint(1, 6))}.{r.randint(0, 999)}",
    lambda r: ".".join(str(r.randint(0, 1200)) for _ in range(r.randint(2, 6))),
    lambda r: ".".join(str(r.randint(0, 255)) for _ in range(4)) + r.choice(["", ":80", ",", ".", "x", "ms"]),
    lambda r: r.choice(["-", "+", "", "0x", "x"]) + str(r.randint(0, 99999)) + r.choice(["", "s", "ms", "KB", "a"]),
    lambda r: r.choice(["\u0663", "\u00b2", "1\u0663", "1.\u0663"]),  # digits that are not ASCII 0-9
]


def test_ids_numbers_and_addresses_after_any_key_mask_as_the_rules_say():
    _cold()
    rng = random.Random(29)
    fast = 0
    for _ in range(30_000):
        token = rng.choice(KEYS) + rng.choice(VALUES)(rng)
        fast += masking._FAST(token) is not None
        assert masking._mask_token(token) == _rules(token), token
    assert fast > 5_000  # the one-match path did answer (about a fifth of the tokens)


def test_ids_stay_out_of_the_token_memo():
    _cold()
    rng = random.Random(5)
    for _ in range(1_000):
        masking._mask_token(f"request_id={uuid.UUID(int=rng.getrandbits(128))}")
        masking._mask_token(f"session={rng.getrandbits(64) | 1 << 60:016x}")
    assert len(masking._memo) < 10


# --- whole lines: units merged through a memo of masked token lists ---

def _plain_line(message: str, max_chars: int = 2000, max_tokens: int = 48) -> list[str]:
    """`mask_tokens` without memos: every token through the rules, units and dates merged each time."""
    if "\n" in message:
        message = masking.first_line(message)
    message = message[:max_chars]
    if '"' in message or "'" in message or "`" in message:
        message = masking._QUOTED.sub(masking._quoted, message)
    out = [_rules(t) for t in message.split()[:max_tokens]]
    out = masking._merge_units(out)
    if "<TS>" in out:
        out = masking._merge_dates(out)
    return out


def test_lines_with_units_mask_as_the_plain_steps_say():
    _cold()
    rng = random.Random(11)
    words = ["took", "after", "free", "size", "(", "B,", "ms", "KB)", "(1.5", "bytes", "s", "ms,", "MB", "at",
             "Jul", "3", "10:05:25", "2005", "Sun", "x=5", "ok"]
    lines = [" ".join(rng.choice(words) if rng.random() < 0.7 else str(rng.randint(0, 3000))
                      for _ in range(rng.randint(1, 12))) for _ in range(3_000)]
    for line in lines + lines:  # the second time through the memos
        assert masking.mask_tokens(line) == _plain_line(line), line
    assert masking._units_memo  # the memo did hold lines


def test_a_caller_changing_the_returned_tokens_changes_no_memo():
    _cold()
    line = "timed out after 3000 ms (pool=a, attempt 1)"
    first = masking.mask_tokens(line)
    first[0] = "changed"
    assert masking.mask_tokens(line) == _plain_line(line)


def test_the_unit_memo_stays_bounded_and_right_across_clears(monkeypatch):
    _cold()
    monkeypatch.setattr(masking, "_MEMO_MAX_LINES", 16)
    def word(i: int) -> str:  # a distinct word per line, so each line is another masked list
        return "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in str(i))

    lines = [f"call {word(i)} took {i % 7} ms of {i} MB" for i in range(500)]
    for line in lines + lines:
        assert masking.mask_tokens(line) == _plain_line(line)
        assert len(masking._units_memo) <= 16
