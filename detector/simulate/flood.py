"""Cardinality flood: the hostile traffic a crawler, a fuzzer or a bug in a client sends.

Turns a stream of contract events into one where, from `start_ts` on, every
request of the chosen services has a never-seen endpoint path and every log
line of theirs is random text: what happens when a route template is lost
(`/item/93b0c1...` instead of `/item/{id}`) or a service logs payloads. The
detector must fold such keys into `other`, keep its memory bounded, and still
see what genuinely changed in the other services.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

import orjson

_WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar".split()


def flood(lines: Iterable[bytes], start_ts: float, services: set[str] | None = None,
          seed: int = 1) -> Iterator[bytes]:
    """The same events, with request endpoints and log messages of `services` (all when None)
    made unique from `start_ts` on. Lines that are not events pass through unchanged."""
    rng = random.Random(seed)
    for line in lines:
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield line
            continue
        if (type(d) is not dict or not isinstance(d.get("ts"), (int, float)) or d["ts"] < start_ts
                or (services is not None and d.get("service") not in services)):
            yield line
            continue
        if d.get("type") == "request":
            d["endpoint"] = f"GET /item/{rng.getrandbits(64):016x}/{rng.choice(_WORDS)}"
        elif d.get("type") == "log":
            n = rng.randint(3, 12)
            d["message"] = " ".join(rng.choice(_WORDS) + str(rng.getrandbits(12)) if rng.random() < 0.3
                                    else "".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                                 for _ in range(rng.randint(2, 9))) for _ in range(n))
        else:
            yield line
            continue
        yield orjson.dumps(d)
