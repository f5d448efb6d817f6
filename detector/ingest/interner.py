"""String interning: every string the core keys on becomes a small int.

Ids are local to one interner (one partition's state); outputs always carry
the strings back, so ids never leak onto the wire. The table is capped: past
`max_size` distinct strings, new bulk strings (endpoints, instances, metric
names, ...) map to the id of "other" and are counted, so hostile cardinality
cannot grow memory without bound. Key strings (services, versions) have
`max_keys` slots reserved beyond that, so a flood of endpoint paths can never
turn a new service or a new version into "other".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

OVERFLOW = "other"


class Interner:
    """Append-only string <-> int table. Id -1 means "absent"."""

    __slots__ = ("_ids", "_strings", "max_size", "max_keys", "overflow")

    def __init__(self, strings: list[str] | None = None, max_size: int = 1_000_000,
                 max_keys: int | None = None) -> None:
        self._strings: list[str] = []
        self._ids: dict[str, int] = {}
        self.max_size = max(2, max_size)
        self.max_keys = max(1, self.max_size // 10 if max_keys is None else max_keys)
        self.overflow = 0
        self.intern(OVERFLOW)
        for s in strings or ():
            self.intern(s, key=True)

    def intern(self, s: str, key: bool = False) -> int:
        i = self._ids.get(s)
        if i is None:
            if len(self._strings) >= self.max_size + (self.max_keys if key else 0):
                self.overflow += 1
                return 0
            i = len(self._strings)
            self._ids[s] = i
            self._strings.append(s)
        return i

    def intern_many(self, strings: list[str], key: bool = False) -> list[int]:
        get = self._ids.get
        out = [get(s) for s in strings]
        if None in out:
            out = [i if i is not None else self.intern(s, key) for i, s in zip(out, strings)]
        return out

    def ids_of(self, strings: Iterable[Hashable]) -> list[int | None]:
        """Id of each string already in the table, None for any other value; interns nothing."""
        return list(map(self._ids.get, strings))

    def lookup(self, i: int) -> str | None:
        return self._strings[i] if i >= 0 else None

    def get(self, s: str) -> int:
        return self._ids.get(s, -1)

    def __len__(self) -> int:
        return len(self._strings)

    def strings(self) -> list[str]:
        return list(self._strings)
