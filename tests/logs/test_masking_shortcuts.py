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


@pytest.mark.parametrize("token", [
    "5=abcdefab-abcd-abcd-abcd-abcdefabcdef",  # a digit-free UUID after `=`: masked (the token has a digit)
    "abcdefab-abcd-abcd-abcd-abcdefabcdef",  # no digit nor `@`: kept as it is
    "x=ab:cd:ef:1", "x=ab:cd:ef", "id=7=8", "=5", "5=", "a==5", "ts=2026-11-26T01:02:03Z",
    "request_id=144e6379-0f3b-4051-a34e-22f6af0e5622", "(144e6379-0f3b-4051-a34e-22f6af0e5622)", "/api/v1/users/42/orders", "/api/v2/users/7", "en0,en1",
    "v1.2.3-rc4", "a1b2c3", "a1,b2;c3",
    "144E6379-0F3B-4051-A34E-22F6AF0E5622", "9bf70817f5da8535", "9BF70817F5DA853B", "1234567B", "12345678b",
    "00000001", "0000000a", "0x1f", "size=12MB,", "ips=10.0.0.1,10.0.0.2", "u=a@b.io", "dur=1.5s", "v=en0",
    "host=db-1.internal:5432", "deadbeef", "deadbee1", "1ebc", "abc12345", "12345678", "0123",
])
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
