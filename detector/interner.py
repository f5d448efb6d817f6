"""String interning: every string the core keys on becomes a small int.

Ids are local to one interner (one partition's state); outputs always carry
the strings back, so ids never leak onto the wire. The table is capped: past
`max_size` distinct strings, new strings map to the id of "other" and are
counted, so hostile cardinality cannot grow memory without bound.
"""

from __future__ import annotations

OVERFLOW = "other"


class Interner:
    """Append-only string <-> int table. Id -1 means "absent"."""

    __slots__ = ("_ids", "_strings", "max_size", "overflow")

    def __init__(self, strings: list[str] | None = None, max_size: int = 1_000_000) -> None:
        self._strings: list[str] = []
        self._ids: dict[str, int] = {}
        self.max_size = max(2, max_size)
        self.overflow = 0
        self.intern(OVERFLOW)
        for s in strings or ():
            self.intern(s)

    def intern(self, s: str) -> int:
        i = self._ids.get(s)
        if i is None:
            if len(self._strings) >= self.max_size:
                self.overflow += 1
                return 0
            i = len(self._strings)
            self._ids[s] = i
            self._strings.append(s)
        return i

    def intern_many(self, strings: list[str]) -> list[int]:
        get = self._ids.get
        out = [get(s) for s in strings]
        if None in out:
            out = [i if i is not None else self.intern(s) for i, s in zip(out, strings)]
        return out

    def lookup(self, i: int) -> str | None:
        return self._strings[i] if i >= 0 else None

    def get(self, s: str) -> int:
        return self._ids.get(s, -1)

    def __len__(self) -> int:
        return len(self._strings)

    def strings(self) -> list[str]:
        return list(self._strings)
