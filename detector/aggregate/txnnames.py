"""Transaction names per service, capped (`limits.max_txn_names_per_service`).

A window keeps one count per (request series, transaction name), so the
distinct names of a service set how many rows every window holds. Past the
cap a new name of a service is counted under `other`: the completed
transaction is still counted for its series (nothing is lost, the judge reads
per-series totals), only its name is. Folded names are not remembered, so a
flood of distinct names costs time on each sighting, never memory.

The cap is per service as the request series table sees it (a service past
`limits.max_services` is already `other` there), so the table holds at most
(max_services + 1) x max_txn_names_per_service names.

`folded` counts the transactions counted under `other`; `capped` lists, in
the order it happened, the services that met the cap, so a driver can say so
once per service (the core logs nothing).
"""

from __future__ import annotations

import numpy as np

from detector.aggregate.series import OTHER
from detector.ingest.interner import Interner

_SHIFT = 21  # interned ids stay below 2**21 (windows.py packs txn codes the same way)
_NAME = (1 << _SHIFT) - 1


class TxnNames:
    """(service, txn name) -> the txn name id a window counts it under."""

    def __init__(self, interner: Interner, cap: int) -> None:
        self.cap = int(cap)
        self.other = interner.intern(OTHER)
        self.names: dict[int, set[int]] = {}  # service id -> admitted txn name ids
        self.folded = 0
        self.capped: list[int] = []  # service ids, in the order they met the cap
        self._admitted = np.empty(0, np.int64)  # sorted (service << 21 | name) codes of `names`

    def map(self, service: np.ndarray, txn: np.ndarray) -> np.ndarray:
        """The txn name id per row: `txn` itself while the service is under the cap (or the
        name is already admitted), `other` for a new name past it; -1 (no txn) stays -1."""
        has = txn >= 0
        if not has.any():
            return txn
        codes = (service[has].astype(np.int64) << _SHIFT) | txn[has].astype(np.int64)
        uniq, inv = np.unique(codes, return_inverse=True)
        # admitted names and `other` pass as they are; only the rest meet the cap, one by one
        keep = _member(uniq, self._admitted) | ((uniq & _NAME) == self.other)
        admitted = []
        for i in np.flatnonzero(~keep).tolist():
            code = int(uniq[i])
            svc, name = code >> _SHIFT, code & _NAME
            seen = self.names.setdefault(svc, set())
            if len(seen) < self.cap:
                seen.add(name)
                keep[i] = True
                admitted.append(code)
            elif svc not in self.capped:
                self.capped.append(svc)
        if admitted:
            self._admitted = np.union1d(self._admitted, np.array(admitted, dtype=np.int64))
        if keep.all():
            return txn
        out = txn.copy()
        rows = np.flatnonzero(has)
        dropped = ~keep[inv]
        out[rows[dropped]] = self.other
        self.folded += int(dropped.sum())
        return out

    def to_state(self) -> dict:
        return {"names": [[svc, sorted(names)] for svc, names in sorted(self.names.items())],
                "folded": self.folded, "capped": list(self.capped)}

    def load_state(self, state: dict, n_strings: int) -> None:
        names, folded, capped = state["names"], state["folded"], state["capped"]
        if type(folded) is not int or folded < 0:
            raise ValueError(f"folded should be an int >= 0, got {folded!r}")
        ok = isinstance(names, list) and all(
            isinstance(row, list) and len(row) == 2 and type(row[0]) is int and isinstance(row[1], list)
            and all(type(n) is int and 0 <= n < n_strings for n in row[1]) for row in names)
        if not ok:
            raise ValueError("txn names should be [service id, [txn name ids]] rows of interned strings")
        if not (isinstance(capped, list) and all(type(s) is int for s in capped)):
            raise ValueError(f"capped should be a list of service ids, got {capped!r}")
        self.names = {svc: set(ids) for svc, ids in names}
        self.folded, self.capped = folded, list(capped)
        self._admitted = _codes(self.names)


def _member(codes: np.ndarray, sorted_codes: np.ndarray) -> np.ndarray:
    if not len(sorted_codes):
        return np.zeros(len(codes), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
    return sorted_codes[at] == codes


def _codes(names: dict[int, set[int]]) -> np.ndarray:
    return np.sort(np.fromiter(((svc << _SHIFT) | n for svc, ids in names.items() for n in ids), np.int64))
